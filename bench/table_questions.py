"""Questions over tables: does the row and column holding the answer reach the model?

Ingests `bench/eval/tables/docs` into its own collection (kept in step with the
folder), then for each question of one half (`calibrate` or `report`) retrieves,
answers, and says where a wrong answer went wrong:

- `gate`: the evidence score was under `min_evidence`, so no passage was shown;
- `miss`: no passage shown to the model held the gold value;
- `declined`: the model was shown the gold value and declined;
- `wrong cell`: the model was shown the gold value and answered something else.

It prints answer-contains-gold (`rag.evaluation.contains_gold`), retrieval answer
hit@5 and the false refusal rate, per half and language:

    LORE_DATA_DIR=$(mktemp -d) LORE_MODELS_DIR=~/.local/share/lore/models \\
        .venv/bin/python bench/table_questions.py --half calibrate [--show]

`lore eval bench/eval/tables/questions.jsonl --docs bench/eval/tables/docs --half H
--answers` gives the same contains-gold figure (with an oracle run besides).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from ingest.batch import BatchOptions, run_batch
from rag.config import Settings
from rag.container import Lore
from rag.evaluation import HALVES, Question, contains_gold, hit_rank, load_questions

HERE = Path(__file__).resolve().parent / "eval" / "tables"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=HERE / "questions.jsonl")
    parser.add_argument("--docs", type=Path, default=HERE / "docs")
    parser.add_argument("--half", choices=[*HALVES, "both"], default="calibrate")
    parser.add_argument("--collection", default="eval-tables")
    parser.add_argument("--show", action="store_true", help="print every question's outcome")
    parser.add_argument("--json", type=Path, help="write every question's outcome here")
    args = parser.parse_args(argv)

    lore = Lore(Settings())
    ingested = run_batch(lore, [args.docs], args.collection, BatchOptions(sync=True, workers=1))
    print(f"{ingested.files} documents, {ingested.chunks} new chunks in '{args.collection}'")
    halves = list(HALVES) if args.half == "both" else [args.half]
    rows = []
    started = time.perf_counter()
    for half in halves:
        for question in load_questions(args.questions, half=half):
            rows.append({"half": half, **outcome(lore, question, args.collection)})
            if args.show:
                row = rows[-1]
                print(f"{row['id']} {row['verdict']:>10} | {row['question']} -> {row['answer']!r}")
    print(f"{len(rows)} questions in {time.perf_counter() - started:.0f} s")
    print(f"{'half':<10} {'lang':<4} {'n':>3} {'contains gold':>14} {'hit@5':>6} "
          f"{'false refusal':>14}  failures")  # fmt: skip
    for half in halves:
        for lang in ("en", "zh", "all"):
            group = [r for r in rows if r["half"] == half and lang in (r["lang"], "all")]
            if not group:
                continue
            n = len(group)
            failures: dict[str, int] = {}
            for r in group:
                if r["verdict"] != "right":
                    failures[r["verdict"]] = failures.get(r["verdict"], 0) + 1
            print(
                f"{half:<10} {lang:<4} {n:>3} {sum(r['right'] for r in group) / n:>14.3f} "
                f"{sum(0 < r['hit_rank'] <= 5 for r in group) / n:>6.3f} "
                f"{sum(r['declined'] for r in group) / n:>14.3f}  "
                + ", ".join(f"{k} {v}" for k, v in sorted(failures.items()))
            )
    if args.json:
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")


def outcome(lore: Lore, question: Question, collection: str) -> dict[str, object]:
    """One question: the answer, where the gold value was found, and the verdict."""
    retriever = lore.retriever
    passages = retriever.search(question.question, collection, 5)
    support = retriever.retrieve(question.question, collection, lore.settings.top_k).evidence
    answer = lore.answerer.ask(question.question, collection)
    right = not answer.declined and contains_gold(answer.text, question.gold())
    shown = any(contains_gold(s.text, question.answers) for s in answer.sources)
    gated = support.total < retriever.min_evidence
    if right:
        verdict = "right"
    elif answer.declined and gated:
        verdict = "gate"
    elif not shown:
        verdict = "miss"
    else:
        verdict = "declined" if answer.declined else "wrong cell"
    return {
        "id": question.id,
        "lang": question.lang,
        "question": question.question,
        "answer": answer.text,
        "right": right,
        "declined": answer.declined,
        "verdict": verdict,
        "hit_rank": hit_rank(passages, question, need_answer=True),
        "evidence": round(support.total, 3),
        "sources": [s.text for s in answer.sources],
    }


if __name__ == "__main__":
    main()
