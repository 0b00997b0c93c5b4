"""Finding the passages that answer a question: dense, keyword, or both fused."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Literal

import numpy as np

from rag.components.embeddings import Embedder, Reranker
from rag.components.keyword import KeywordStore
from rag.components.store import VectorStore
from rag.errors import LoreError
from rag.retrieval.evidence import Evidence, evidence
from rag.retrieval.filters import Filters
from rag.retrieval.language import language_of, other_language
from rag.retrieval.manifest import DocumentManifest
from rag.retrieval.translation import Translator
from rag.types import Chunk, Passage

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "keyword"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "keyword")


def score_fusion(scored: Sequence[dict[str, float]]) -> list[str]:
    """Ids from several {id: score} lists, best first by the sum of normalised scores.

    Each list's scores are rescaled to 0..1 (min-max over its own candidates), so that
    cosine similarities and BM25 scores can be added; an id missing from a list gets 0
    there. Measured against reciprocal rank fusion in bench/fusion.py: better on both
    Chinese sets, a little worse on English (docs/benchmarks.md).
    """
    total: dict[str, float] = {}
    for scores in scored:
        if not scores:
            continue
        low, high = min(scores.values()), max(scores.values())
        spread = (high - low) or 1.0
        for item, score in scores.items():
            total[item] = total.get(item, 0.0) + (score - low) / spread
    return sorted(total, key=lambda item: -total[item])


def _shingles(text: str) -> set[str]:
    squashed = "".join(text.lower().split())
    return {squashed[i : i + 3] for i in range(max(len(squashed) - 2, 1))}


def drop_near_duplicates(passages: Sequence[Passage], threshold: float = 0.9) -> list[Passage]:
    """Passages minus those whose text is nearly the same as a better-ranked one's.

    Near means a Jaccard similarity of character 3-grams at or above `threshold`:
    two versions of a file, or the same paragraph pasted into two documents.
    """
    kept: list[tuple[Passage, set[str]]] = []
    for passage in passages:
        grams = _shingles(passage.chunk.text)
        if all(len(grams & g) < threshold * len(grams | g) for _, g in kept):
            kept.append((passage, grams))
    return [p for p, _ in kept]


@dataclass(frozen=True)
class _Scope:
    """The documents a filtered search may use (None: all) and the ids the indexes are given."""

    allowed: set[str] | None = None
    pushed_down: set[str] | None = None


@dataclass(frozen=True)
class Retrieved:
    """What `Retriever.retrieve` found, and how firmly it supports an answer.

    `passages` are those to answer from (none when the evidence is too weak);
    `nearest` are the best passages found whatever the evidence, for a declined answer
    to show what came closest.
    """

    passages: list[Passage]
    evidence: Evidence
    nearest: list[Passage] = field(default_factory=list)
    # The question as searched: a translation into the documents' language, if one was made.
    query: str = ""


@dataclass
class _Found:
    passages: list[Passage]
    query: str


class Retriever:
    """Finds the passages for a question, best first, among visible documents only.

    `mode` "hybrid" (the default) fuses the nearest chunks by embedding with the best
    chunks by BM25; "dense" and "keyword" use one of them alone. Every passage carries
    its cosine similarity to the question, whichever list found it, and `min_score` is
    the similarity under which a passage is treated as unrelated: an answer built on no
    passage is declined rather than invented.

    `filters` limit the search to some documents before the best `k` are taken, so a
    narrow filter still yields `k` passages when that many exist. With a `reranker`, the
    best `RERANK_CANDIDATES` passages are reordered by its score before the cut to `k`.

    With a `translator`, a question whose nearest passages are mostly in the other
    language (English and Chinese) is searched for in translation as well.
    """

    # Over-fetch when some hits belong to documents that are not visible (being written,
    # replaced or deleted); those are rare, so a few rounds always suffice.
    _MAX_FETCH = 2000
    # Each list contributes this many candidates (at least) to the fusion.
    CANDIDATES = 20
    # A filter that lets through less than this share of a collection's documents is
    # handed to both indexes, which then rank only those documents. A broader one is
    # applied to the hits instead, over-fetching as for invisible documents: a quarter of
    # the hits or more pass it, so a few rounds suffice, and a long id list slows Chroma
    # (docs/benchmarks.md has the measurements).
    PUSH_DOWN_SHARE = 0.25
    # How many passages the reranker reorders.
    RERANK_CANDIDATES = 20

    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        manifest: DocumentManifest,
        keywords: KeywordStore | None = None,
        *,
        min_score: float = 0.0,
        min_score_translated: float | None = None,
        min_evidence: float = 0.0,
        min_evidence_translated: float = 0.0,
        mode: Mode = "hybrid",
        reranker: Reranker | None = None,
        translator: Translator | None = None,
    ):
        self._embedder = embedder
        self._store = store
        self._manifest = manifest
        self._keywords = keywords
        self._reranker = reranker
        self._translator = translator
        # The keyword search runs here while the question is embedded: neither needs the
        # other, and each waits in C (SQLite or PostgreSQL; the embedder's runtime) with
        # the GIL released, so on two cores a hybrid search takes about the longer of the
        # two rather than their sum (docs/benchmarks.md, issue 18).
        self._side = ThreadPoolExecutor(4, thread_name_prefix="keyword-search")
        self.min_score = min_score
        # A translation is less close to its passages than a question asked in their
        # language, so a question searched for in translation has its own threshold.
        self.min_score_translated = (
            min_score if min_score_translated is None else min_score_translated
        )
        self.min_evidence = min_evidence
        self.min_evidence_translated = min_evidence_translated
        self.mode: Mode = mode if keywords is not None else "dense"

    def search(
        self,
        question: str,
        collection: str,
        k: int,
        *,
        mode: Mode | None = None,
        filters: Filters | None = None,
    ) -> list[Passage]:
        """The `k` best visible passages that pass `filters`, best first, whatever their score."""
        return self._search(question, collection, k, mode=mode, filters=filters).passages

    def _search(
        self,
        question: str,
        collection: str,
        k: int,
        *,
        mode: Mode | None = None,
        filters: Filters | None = None,
    ) -> _Found:
        mode = mode or self.mode
        allowed = self._manifest.matching(collection, filters) if filters else None
        narrow = allowed is not None and (
            len(allowed) < self.PUSH_DOWN_SHARE * self._manifest.visible_count(collection)
        )
        scope = _Scope(allowed, allowed if narrow else None)
        # Without a reranker `pool` is `k`: the reranker needs a wider choice than `k`.
        pool = max(k, self.RERANK_CANDIDATES) if self._reranker else k
        wanted = max(pool, self.CANDIDATES) if mode == "hybrid" else pool
        early: Future[dict[str, float]] | None = None
        if mode != "dense" and self._keywords is not None:
            early = self._side.submit(
                self._keyword, self._keywords, question, collection, wanted, scope
            )
        vector = self._embedder.embed_query(question)
        found = _Found([], question)
        if mode == "keyword" and early is not None:
            keyword = early.result()
            found.passages = self._with_scores(list(keyword)[:pool], vector, collection, {})
        else:
            dense = self._dense(vector, collection, wanted, scope)
            translated = self._translation(question, dense)
            if translated and early is not None:
                early.cancel()  # the keywords of the translation are searched instead
            if translated:
                found.query = translated
                found.passages = self._cross_language(
                    question, translated, dense, collection, wanted, scope, mode
                )
            elif mode == "dense" or early is None:
                found.passages = dense
            else:
                keyword = early.result()
                fused = score_fusion([{p.chunk.id: p.score for p in dense}, keyword])
                known = {p.chunk.id: p for p in dense}
                found.passages = self._with_scores(fused[: 2 * pool], vector, collection, known)
            found.passages = drop_near_duplicates(found.passages)[:pool]
        if self._reranker is not None:
            found.passages = self._rerank(self._reranker, question, found.passages)
        found.passages = found.passages[:k]
        return found

    # A question is searched for in translation too when its nearest passage and at
    # least this share of the next ones (by embedding) are in the other language. In a
    # corpus of both languages, a question usually finds its own language's passages
    # first, and isn't translated.
    FOREIGN_SHARE = 0.5
    FOREIGN_SAMPLE = 5

    def _translation(self, question: str, dense: Sequence[Passage]) -> str:
        """The question in its passages' language, when they are in the other one; else ""."""
        if self._translator is None or not dense:
            return ""
        asked = language_of(question)
        foreign = [language_of(p.chunk.text) != asked for p in dense[: self.FOREIGN_SAMPLE]]
        if not foreign[0] or sum(foreign) < self.FOREIGN_SHARE * len(foreign):
            return ""
        try:
            translated = self._translator.translate(question, other_language(asked))
        except (LoreError, RuntimeError, OSError) as exc:
            # Translation only sharpens the search; without the chat model it goes on.
            log.warning("could not translate the question, searching without: %s", exc)
            return ""
        log.info("searching %r also as %r", question[:80], translated[:80])
        return translated

    def _cross_language(
        self,
        question: str,
        translated: str,
        dense: list[Passage],
        collection: str,
        wanted: int,
        scope: _Scope,
        mode: Mode,
    ) -> list[Passage]:
        """Passages for a question whose documents are in the other language.

        The translation is searched like a question in the documents' language (by
        embedding, and by keywords in hybrid mode), and fused with the original
        question's own nearest passages, which guard against a poor translation. Each
        passage is scored by its cosine to the translation, on the same scale as a
        question asked in the documents' language.
        """
        vector = self._embedder.embed_query(translated)
        near = self._dense(vector, collection, wanted, scope)
        lists = [{p.chunk.id: p.score for p in dense}, {p.chunk.id: p.score for p in near}]
        if mode == "hybrid" and self._keywords is not None:
            lists.append(self._keyword(self._keywords, translated, collection, wanted, scope))
        fused = score_fusion(lists)
        known = {p.chunk.id: p for p in near}
        return self._with_scores(fused[: 2 * wanted], vector, collection, known)

    def retrieve(
        self, question: str, collection: str, k: int, *, filters: Filters | None = None
    ) -> Retrieved:
        """The passages to answer from: the best above `min_score`, best first; possibly none.

        None at all when their evidence score (rag/retrieval/evidence.py) is under `min_evidence`:
        the documents don't answer the question, and an answer would be a guess. When
        the question was searched for in translation, the evidence is weighed on the
        translation, which shares the documents' words.
        """
        found = self._search(question, collection, k, filters=filters)
        passages = found.passages
        # Words are weighed by their rarity in this collection alone.
        rarity = partial(self._keywords.rarity, collection) if self._keywords is not None else None
        support = evidence(found.query, passages, rarity)
        translated = found.query != question
        # A translation shares fewer of the passage's words than a question asked in
        # their language, so its evidence is weighed against its own threshold.
        threshold = self.min_evidence_translated if translated else self.min_evidence
        if support.total < threshold:
            log.info("declining %r: %s", question[:80], support)
            return Retrieved([], support, passages, found.query)
        floor = self.min_score_translated if translated else self.min_score
        kept = [p for p in passages if p.score >= floor]
        return Retrieved(kept, support, passages, found.query)

    @staticmethod
    def _rerank(reranker: Reranker, question: str, passages: list[Passage]) -> list[Passage]:
        """`passages` by the reranker's score, best first; each keeps its cosine `score`."""
        if not passages:
            return []
        scores = reranker.score(question, [p.chunk.embedding_text() for p in passages])
        if len(scores) != len(passages):
            raise RuntimeError("the reranker must give one score per passage")
        best_first = sorted(range(len(passages)), key=lambda i: -scores[i])
        return [replace(passages[i], rerank_score=scores[i]) for i in best_first]

    def _visible_prefix(
        self,
        fetch_hits: Callable[[int], list[tuple[str, str]]],
        collection: str,
        k: int,
        scope: _Scope,
    ) -> list[str]:
        """The first `k` hits (chunk id, doc id) of visible documents in scope, over-fetching."""
        fetch = k
        while True:
            hits = fetch_hits(fetch)
            visible = self._manifest.visible(collection, {doc for _, doc in hits})
            if scope.allowed is not None:
                visible &= scope.allowed
            kept = [chunk for chunk, doc in hits if doc in visible]
            if len(kept) >= k or len(hits) < fetch or fetch >= self._MAX_FETCH:
                return kept[:k]
            fetch = min(fetch * 4, self._MAX_FETCH)

    def _dense(self, vector: list[float], collection: str, k: int, scope: _Scope) -> list[Passage]:
        found: dict[str, Passage] = {}

        def fetch(n: int) -> list[tuple[str, str]]:
            hits = self._store.query(collection, vector, n, scope.pushed_down)
            found.update((p.chunk.id, p) for p in hits)
            return [(p.chunk.id, p.chunk.doc_id) for p in hits]

        return [found[i] for i in self._visible_prefix(fetch, collection, k, scope)]

    def _keyword(
        self, keywords: KeywordStore, question: str, collection: str, k: int, scope: _Scope
    ) -> dict[str, float]:
        """The best `k` chunks by BM25 as {chunk id: score}, best first."""
        scores: dict[str, float] = {}

        def fetch(n: int) -> list[tuple[str, str]]:
            hits = keywords.search(collection, question, n, scope.pushed_down)
            scores.update((h.chunk_id, h.score) for h in hits)
            return [(h.chunk_id, h.doc_id) for h in hits]

        return {i: scores[i] for i in self._visible_prefix(fetch, collection, k, scope)}

    def _with_scores(
        self, ids: Sequence[str], vector: list[float], collection: str, known: dict[str, Passage]
    ) -> list[Passage]:
        """Passages for `ids`, in order, scored by cosine similarity to the question."""
        missing = [i for i in ids if i not in known]
        fetched: dict[str, tuple[Chunk, np.ndarray]] = {
            chunk.id: (chunk, stored)
            for chunk, stored in self._store.chunks_with_vectors(collection, missing)
        }
        query = np.asarray(vector, dtype=np.float32)
        passages = []
        for chunk_id in ids:
            if chunk_id in known:
                passages.append(known[chunk_id])
            elif chunk_id in fetched:
                chunk, stored = fetched[chunk_id]
                passages.append(Passage(chunk, score=float(stored @ query)))
        return passages
