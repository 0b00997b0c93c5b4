"""Follow-up questions: does the rewritten question find the gold passage?

Each line of `bench/eval/followups.jsonl` is a two-turn conversation: a first question
with its answer, and a follow-up that only makes sense after it ("那其他城市呢？",
"Who gave it its name?"), whose gold answer lies in one document of a dev set. The
follow-up is rewritten into a standalone question as an answer would
(`Answerer.standalone`, the chat model), and the rewrite is searched (hybrid, k=5).
A conversation scores when a retrieved chunk from the gold document holds a gold
answer (`rag.evaluation.hit_rank`). For comparison the raw follow-up alone and the
first question followed by the follow-up are searched too. Conversations are split
in halves: tune on `calibrate`, report `report`.

    LORE_DATA_DIR=/tmp/lore-eval .venv/bin/python bench/followups.py --split report

The documents are ingested first, into the collections `lore eval` uses (eval-xquad-docs,
eval-en2zh-docs, eval-zh2en-docs, eval-cmrc2018-trial-docs); later runs only check them.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.config import load_settings
from rag.container import Lore
from rag.evaluation import Question, hit_rank
from rag.types import Turn

K = 5
HERE = Path(__file__).resolve().parent
CONVERSATIONS = HERE / "eval" / "followups.jsonl"
EVAL_DIR = HERE.parents[1] / "shared" / "eval"
# Where each set's documents are, under the evaluation folder.
DOCS = {
    "xquad": Path("xquad/docs"),
    "cmrc2018-trial": Path("cmrc2018-trial/docs"),
    "en2zh": Path("xquad-cross/en2zh/docs"),
    "zh2en": Path("xquad-cross/zh2en/docs"),
}
WAYS = ("rewrite", "raw", "concat")


@dataclass(frozen=True)
class Conversation:
    id: str
    set: str
    lang: str
    history: tuple[Turn, ...]
    question: str
    answers: tuple[str, ...]
    doc: str
    split: str

    @property
    def kind(self) -> str:
        """xquad-en, xquad-zh, cmrc-zh, en2zh, zh2en: the set and the question's language."""
        if self.set in ("en2zh", "zh2en"):
            return self.set
        return f"{self.set.split('2018')[0]}-{self.lang}"


def load(path: Path) -> list[Conversation]:
    conversations = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        conversations.append(
            Conversation(
                id=raw["id"],
                set=raw["set"],
                lang=raw["lang"],
                history=tuple(Turn(t["role"], t["text"]) for t in raw["history"]),
                question=raw["question"],
                answers=tuple(raw["answers"]),
                doc=raw["doc"],
                split=raw["split"],
            )
        )
    return conversations


def collection_for(docs: Path) -> str:
    """The collection `lore eval` ingests `docs` into (named as in api/cli/evaluation.py)."""
    where = "-".join(docs.resolve().parts[-2:])
    return "eval-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", where).strip("-") or "docs")


def ingest(lore: Lore, eval_dir: Path, sets: set[str]) -> dict[str, str]:
    """The collection of each set, after bringing it in step with its documents folder."""
    from ingest.batch import BatchOptions, run_batch

    collections = {}
    for name in sorted(sets):
        docs = eval_dir / DOCS[name]
        collections[name] = collection_for(docs)
        report = run_batch(lore, [docs], collections[name], BatchOptions(sync=True))
        print(
            f"{name}: {report.files} documents in '{collections[name]}', "
            f"{report.chunks} new chunks",
            file=sys.stderr,
        )
    return collections


def queries(conversation: Conversation, rewrite: str) -> dict[str, str]:
    earlier = [t.text for t in conversation.history if t.role == "user"]
    return {
        "rewrite": rewrite,
        "raw": conversation.question,
        "concat": f"{earlier[-1]} {conversation.question}" if earlier else conversation.question,
    }


def run(
    lore: Lore, conversations: Sequence[Conversation], collections: dict[str, str]
) -> list[dict[str, Any]]:
    rows = []
    for number, conversation in enumerate(conversations, start=1):
        started = time.perf_counter()
        rewrite = lore.answerer.standalone(conversation.question, conversation.history)
        seconds = time.perf_counter() - started
        gold = Question(
            conversation.id, conversation.lang, conversation.question,
            conversation.answers, conversation.doc,
        )  # fmt: skip
        ranks = {}
        for way, query in queries(conversation, rewrite).items():
            passages = lore.retriever.search(query, collections[conversation.set], K, mode="hybrid")
            ranks[way] = hit_rank(passages, gold, need_answer=True)
        rows.append(
            {
                "id": conversation.id,
                "kind": conversation.kind,
                "split": conversation.split,
                "question": conversation.question,
                "rewrite": rewrite,
                # The model's rewrite was refused, and the concatenation searched instead.
                "fallback": rewrite == queries(conversation, rewrite)["concat"],
                "rewrite_s": round(seconds, 3),
                "rank": ranks,
            }
        )
        mark = "hit " if ranks["rewrite"] else "MISS"
        print(f"{number:>3} {mark} {conversation.id} {seconds:5.2f}s  {rewrite}", file=sys.stderr)
    return rows


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """answer-hit@5 and @1 of each way of searching, and the rewrite time, over `rows`."""
    hits = {way: sum(1 for r in rows if r["rank"][way]) / len(rows) for way in WAYS}
    firsts = {way: sum(1 for r in rows if r["rank"][way] == 1) / len(rows) for way in WAYS}
    return {
        "n": len(rows),
        **{f"{way}_hit@{K}": round(value, 3) for way, value in hits.items()},
        **{f"{way}_hit@1": round(value, 3) for way, value in firsts.items()},
        "fallback": round(sum(1 for r in rows if r["fallback"]) / len(rows), 3),
        "rewrite_p50_s": round(statistics.median(r["rewrite_s"] for r in rows), 2),
        "rewrite_max_s": round(max(r["rewrite_s"] for r in rows), 2),
    }


def table(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Summaries by split and kind, each split's whole, and everything."""
    result: dict[str, dict[str, Any]] = {}
    for split in sorted({r["split"] for r in rows}):
        mine = [r for r in rows if r["split"] == split]
        for kind in sorted({r["kind"] for r in mine}):
            result[f"{split} {kind}"] = summarise([r for r in mine if r["kind"] == kind])
        result[f"{split} all"] = summarise(mine)
    if len({r["split"] for r in rows}) > 1:
        result["all all"] = summarise(rows)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("calibrate", "report", "all"), default="calibrate")
    parser.add_argument("--conversations", type=Path, default=CONVERSATIONS)
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR)
    parser.add_argument("--json", action="store_true", help="Print one JSON document.")
    parser.add_argument(
        "--no-ingest", action="store_true", help="Search the collections as they are."
    )
    args = parser.parse_args(argv)

    conversations = [c for c in load(args.conversations) if args.split in ("all", c.split)]
    lore = Lore(load_settings())
    sets = {c.set for c in conversations}
    if args.no_ingest:
        collections = {name: collection_for(args.eval_dir / DOCS[name]) for name in sets}
    else:
        collections = ingest(lore, args.eval_dir, sets)
    lore.answerer.standalone("warm-up", [Turn("user", "hello")])  # loads the chat model
    rows = run(lore, conversations, collections)
    summary = table(rows)
    command = "python bench/followups.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.json:
        print(
            json.dumps(
                {"command": command, "summary": summary, "rows": rows}, ensure_ascii=False, indent=1
            )
        )
        return
    print(f"# {command.strip()}")
    print(
        f"| split kind | n | hit@{K} rewrite | raw | concat | hit@1 rewrite | raw | concat "
        "| fallback | rewrite p50 s | max s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        hits = " | ".join(f"{s[f'{way}_hit@{k}']:.2f}" for k in (K, 1) for way in WAYS)
        print(
            f"| {name} | {s['n']} | {hits} | {s['fallback']:.2f} "
            f"| {s['rewrite_p50_s']:.2f} | {s['rewrite_max_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
