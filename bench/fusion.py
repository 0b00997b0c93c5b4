"""Compare ways of fusing the dense and keyword rankings on the dev sets.

Lore normalises each list's scores (min-max over its candidates) and adds them
(`rag.retrieval.retriever.score_fusion`). The alternatives are reciprocal rank fusion (RRF) and
other weights for the two lists. This script
takes the same candidates for every question (the 20 nearest chunks by embedding and
the 20 best by BM25) and ranks them each way, so the figures differ only by the fusion.

    LORE_DATA_DIR=/tmp/eval/data python bench/fusion.py \\
        ../shared/eval/xquad/questions.jsonl --collection eval-xquad-docs --sample 400

The collection must already hold the documents (`lore eval` ingests them).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from rag.config import Settings
from rag.container import Lore
from rag.evaluation import Question, hit_rank, load_questions
from rag.retrieval.retriever import score_fusion
from rag.types import Chunk, Passage

CANDIDATES = 20


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = 60) -> list[str]:
    """Ids ranked by the sum of 1 / (k + rank) over the rankings (Cormack et al., 2009)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda item: -scores[item])


def min_max(scores: dict[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = (high - low) or 1.0
    return {key: (value - low) / span for key, value in scores.items()}


def weighted(dense: dict[str, float], keyword: dict[str, float], alpha: float) -> list[str]:
    """Ids ranked by alpha * normalised cosine + (1 - alpha) * normalised BM25."""
    d, k = min_max(dense), min_max(keyword)
    total = {i: alpha * d.get(i, 0.0) + (1 - alpha) * k.get(i, 0.0) for i in {*d, *k}}
    return sorted(total, key=lambda i: -total[i])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", type=Path)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--sample", type=int, default=None)
    args = parser.parse_args(argv)

    lore = Lore(Settings())
    questions = [q for q in load_questions(args.questions, sample=args.sample) if q.doc]
    methods: dict[str, Callable[[dict[str, float], dict[str, float]], list[str]]] = {
        "min-max sum (Lore)": lambda d, k: score_fusion([d, k]),
        "rrf (k=60)": lambda d, k: reciprocal_rank_fusion([list(d), list(k)]),
        "dense only": lambda d, k: list(d),
        "keyword only": lambda d, k: list(k),
    }
    for alpha in (0.3, 0.7):
        methods[f"min-max, alpha {alpha}"] = lambda d, k, a=alpha: weighted(d, k, a)

    ranks: dict[str, dict[str, list[int]]] = {m: {} for m in methods}
    for question in questions:
        dense, keyword, chunks = candidates(lore, question, args.collection)
        for name, fuse in methods.items():
            passages = [Passage(chunks[i], 0.0) for i in fuse(dense, keyword)[:10]]
            rank = hit_rank(passages, question, need_answer=True)
            ranks[name].setdefault(question.lang, []).append(rank)

    print(f"{len(questions)} questions, {CANDIDATES} candidates a side")
    print(f"{'fusion':<22} {'lang':<4} {'hit@1':>6} {'hit@5':>6} {'mrr@10':>7}")
    for name, by_lang in ranks.items():
        for lang, found in sorted(by_lang.items()):
            n = len(found)
            hit1 = sum(r == 1 for r in found) / n
            hit5 = sum(0 < r <= 5 for r in found) / n
            mrr = sum(1 / r for r in found if r) / n
            print(f"{name:<22} {lang:<4} {hit1:6.3f} {hit5:6.3f} {mrr:7.3f}")


def candidates(
    lore: Lore, question: Question, collection: str
) -> tuple[dict[str, float], dict[str, float], dict[str, Chunk]]:
    """Dense (cosine) and keyword (BM25) candidates, best first, and their chunks by id."""
    vector = lore.embedder.embed_query(question.question)
    dense_hits = lore.store.query(collection, vector, CANDIDATES)
    keyword_hits = lore.keywords.search(collection, question.question, CANDIDATES)
    chunks = {p.chunk.id: p.chunk for p in dense_hits}
    missing = [h.chunk_id for h in keyword_hits if h.chunk_id not in chunks]
    chunks.update((c.id, c) for c, _ in lore.store.chunks_with_vectors(collection, missing))
    dense = {p.chunk.id: p.score for p in dense_hits}
    keyword = {h.chunk_id: h.score for h in keyword_hits if h.chunk_id in chunks}
    return dense, keyword, chunks


if __name__ == "__main__":
    main()
