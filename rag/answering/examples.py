"""What to offer on a collection's empty chat: the example questions an admin set for it
(`example_questions`), else a few headings of its documents, which a client turns into
questions in its reader's language.

Headings come from a sample of the collection's chunks (`VectorStore.heading_sample`),
of documents queries may see, cleaned of Markdown marks and numbering; those that say
little (too short, too long, only digits, "Contents") are left out. The headings of one
collection are kept for a minute, or until its count of visible documents changes.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rag.components.store import VectorStore
from rag.retrieval.manifest import DocumentManifest

EXAMPLE_HEADINGS = 6
# Chunks whose headings are read for one collection: a few reads, whatever its size.
SAMPLED_CHUNKS = 160
FRESH_S = 60.0

_MIN_CHARS = 3  # "Go" says too little to ask about; "VPN" or two CJK characters (安装) do not
_MIN_CJK_CHARS = 2
_MAX_CHARS = 80  # longer is a sentence taken for a heading, not a topic
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Numbering before a heading's words: "1.", "2.3.1", "4)", "(iv)", "A.", "一、", "第二章".
_NUMBERING = re.compile(
    r"^(?:[(（]?(?:\d+(?:\.\d+)*|[ivx]{1,4}|[a-z]|[一二三四五六七八九十百]+)[.)）、:：](?!\d)\s*"
    r"|\d{1,3}(?:\.\d+)*\.?\s+"
    r"|第[\d一二三四五六七八九十百]+[章节篇部条]\s*)",
    re.IGNORECASE,
)
# What a document's headings say of every document, not of this one.
_GENERIC = re.compile(
    r"^(?:(?:table of )?contents|introduction|intro|faq|overview|summary|abstract|preface|"
    r"foreword|index|appendix(?: [a-z\d]+)?|references|bibliography|glossary|notes|"
    r"acknowledge?ments|untitled|(?:sheet|page|slide|chapter|section|part|table|figure)"
    r"\s*\d*|目录|目錄|前言|引言|序言|摘要|概述|总结|附录|参考文献|致谢)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Examples:
    """What a collection's empty chat offers: the questions an admin set (`source`
    "settings"), or headings of its documents ("headings"), or nothing ("none")."""

    questions: tuple[str, ...]
    headings: tuple[str, ...]
    source: Literal["settings", "headings", "none"]


def clean_heading(heading: str) -> str | None:
    """The last part of a heading path ("Setup > 2.1 Ports" gives "Ports"), without
    Markdown marks or numbering; None when it says too little to ask about."""
    text = heading.rsplit(" > ", 1)[-1]
    text = text.strip().strip("#").replace("**", "").replace("__", "").strip()
    text = _NUMBERING.sub("", text, count=1).strip(" \t-\u2013\u2014:：.")
    if not any(c.isalpha() for c in text) or _GENERIC.match(text):
        return None
    shortest = _MIN_CJK_CHARS if _CJK.search(text) else _MIN_CHARS
    if not shortest <= len(text) <= _MAX_CHARS:
        return None
    return " ".join(text.split())


def pick_headings(pairs: Iterable[tuple[str, str]], limit: int) -> list[str]:
    """Up to `limit` distinct clean headings from (doc_id, heading) pairs, from as many
    documents as there are, spread over them: each document's first heading before any
    document's second."""
    by_doc: dict[str, list[str]] = {}
    seen: set[str] = set()
    for doc_id, heading in pairs:
        clean = clean_heading(heading)
        if clean is None or clean.casefold() in seen:
            continue
        seen.add(clean.casefold())
        by_doc.setdefault(doc_id, []).append(clean)
    lists = list(by_doc.values())
    if len(lists) > limit:  # documents evenly spaced over the sample, in its order
        lists = [lists[i * len(lists) // limit] for i in range(limit)]
    picked: list[str] = []
    for depth in range(max((len(found) for found in lists), default=0)):
        picked += [found[depth] for found in lists if depth < len(found)]
    return picked[:limit]


@dataclass(frozen=True)
class _Kept:
    at: float
    documents: int
    examples: Examples


class ExampleQuestions:
    """The examples of each collection, from `configured` (collection name to its
    questions) or the headings of `store`'s chunks of documents `manifest` shows.

    Safe from any thread. Headings found are kept `fresh_s` seconds (by `clock`), and
    looked for again sooner when the collection's count of visible documents changes.
    """

    def __init__(
        self,
        configured: Mapping[str, Sequence[str]],
        store: VectorStore,
        manifest: DocumentManifest,
        *,
        fresh_s: float = FRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._configured = configured
        self._store = store
        self._manifest = manifest
        self._fresh_s = fresh_s
        self._clock = clock
        self._kept: dict[str, _Kept] = {}
        self._lock = threading.Lock()

    def for_collection(self, collection: str) -> Examples:
        """The examples for `collection`, a collection that exists (callers check)."""
        questions = self._configured.get(collection)
        if questions:
            return Examples(tuple(questions), (), "settings")
        documents = self._manifest.visible_count(collection)
        with self._lock:
            kept = self._kept.get(collection)
        now = self._clock()
        if kept and kept.documents == documents and now - kept.at < self._fresh_s:
            return kept.examples
        examples = self._from_headings(collection) if documents else Examples((), (), "none")
        with self._lock:
            self._kept[collection] = _Kept(now, documents, examples)
        return examples

    def _from_headings(self, collection: str) -> Examples:
        pairs = self._store.heading_sample(collection, SAMPLED_CHUNKS)
        visible = self._manifest.visible(collection, {doc_id for doc_id, _ in pairs})
        headings = pick_headings(((d, h) for d, h in pairs if d in visible), EXAMPLE_HEADINGS)
        return Examples((), tuple(headings), "headings" if headings else "none")
