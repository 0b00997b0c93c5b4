"""Build unanswerable questions in the manner of SQuAD 2.0: cut the answer out of the text.

For some answerable questions of the shared dev sets, every sentence of the gold
document that holds a gold answer is removed from a copy of the document. The question
is then near-topic (the passage it came from is still there, and still about the same
thing) but its answer is truly absent: the best kind of question to tell whether Lore
declines what the documents don't hold, rather than what is merely off-topic.

    .venv/bin/python bench/make_holed.py [--shared ../shared/eval] [--out bench/eval/holed]

writes three folders, each a set of documents with its questions:

- `xquad-en/`: the 24 English XQuAD articles, holed; English questions (XQuAD) and
  Chinese ones about the same facts (from `xquad-cross/zh2en`);
- `xquad-zh/`: the 24 Chinese articles, holed; Chinese questions (XQuAD) and English
  ones (from `xquad-cross/en2zh`);
- `cmrc2018-trial/`: the CMRC 2018 trial documents, holed; Chinese questions.

A question is kept only when at most `--max-sentences` sentences hold its answers and
no gold answer is left anywhere in its document once they are gone. The choice of
questions is fixed by a hash of their ids, so the output is the same on every run.
Run it with `lore eval DIR/questions.jsonl --docs DIR/docs --answers`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import zlib
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.evaluation import contains_answer
from rag.retrieval.language import sentence_spans


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _rank(question_id: str) -> int:
    return zlib.crc32(question_id.encode("utf-8"))


def cut(text: str, answers: list[str], max_sentences: int) -> str | None:
    """`text` without the sentences holding any of `answers`; None if that can't be done."""
    spans = [(a, b) for a, b in sentence_spans(text) if contains_answer(text[a:b], answers)]
    if not spans or len(spans) > max_sentences:
        return None
    for begin, end in reversed(spans):
        text = text[:begin] + text[end:]
    # Tidy the seams: no doubled or leading blanks where a sentence was.
    text = "\n".join(re.sub(r"[ \t]{2,}", " ", line).strip() for line in text.split("\n"))
    return None if contains_answer(text, answers) else text


def build(
    docs: Path,
    questions: list[dict],
    companions: dict[str, dict],
    out: Path,
    per_doc: int,
    max_sentences: int,
    names: set[str] | None = None,
) -> dict[str, int]:
    """Hole the documents of `docs` for up to `per_doc` questions each; write `out`.

    `companions` maps a question id to the same question asked in the other language
    (a cross-language pair), which becomes unanswerable with it.
    """
    by_doc: dict[str, list[dict]] = defaultdict(list)
    for question in questions:
        by_doc[question["doc"]].append(question)
    if out.exists():
        shutil.rmtree(out)
    (out / "docs").mkdir(parents=True)
    written: list[dict] = []
    for path in sorted(docs.glob("*.md")):
        if names is not None and path.name not in names:
            continue
        text = path.read_text(encoding="utf-8")
        holed = 0
        for question in sorted(by_doc[path.name], key=lambda q: _rank(q["id"])):
            if holed == per_doc:
                break
            shorter = cut(text, question["answers"], max_sentences)
            if shorter is None:
                continue
            text, holed = shorter, holed + 1
            for asked in (question, companions.get(question["id"])):
                if asked is None:
                    continue
                written.append(
                    {
                        "id": f"{asked['id']}-holed",
                        "lang": asked["lang"],
                        "question": asked["question"],
                        "answers": [],
                        "doc": None,
                        "unanswerable": True,
                        "holed_from": path.name,
                        "removed_answers": question["answers"],
                    }
                )
        (out / "docs" / path.name).write_text(text, encoding="utf-8")
    # A question holed earlier must still be unanswerable after later holes in its
    # document; later holes only remove text, so this holds, and is checked here.
    for item in written:
        text = (out / "docs" / item["holed_from"]).read_text(encoding="utf-8")
        if contains_answer(text, item["removed_answers"]):
            raise RuntimeError(f"{item['id']}: its answer is still in {item['holed_from']}")
    with (out / "questions.jsonl").open("w", encoding="utf-8") as handle:
        for item in written:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    counts: dict[str, int] = defaultdict(int)
    for item in written:
        counts[item["lang"]] += 1
    return dict(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/eval"))
    parser.add_argument("--out", type=Path, default=Path("bench/eval/holed"))
    parser.add_argument("--xquad-per-doc", type=int, default=4)
    parser.add_argument("--cmrc-per-doc", type=int, default=1)
    parser.add_argument("--max-sentences", type=int, default=2)
    args = parser.parse_args()
    shared: Path = args.shared
    xquad = _read(shared / "xquad" / "questions.jsonl")
    for lang, cross in (("en", "zh2en"), ("zh", "en2zh")):
        pairs = {
            q["id"].removesuffix(f"-{cross}"): q
            for q in _read(shared / "xquad-cross" / cross / "questions.jsonl")
        }
        mine = [q for q in xquad if q["lang"] == lang]
        names = {p.name for p in (shared / "xquad" / "docs").glob(f"{lang}-*.md")}
        counts = build(
            shared / "xquad" / "docs",
            mine,
            pairs,
            args.out / f"xquad-{lang}",
            args.xquad_per_doc,
            args.max_sentences,
            names,
        )
        print(f"xquad-{lang}: {counts}")
    cmrc = _read(shared / "cmrc2018-trial" / "questions.jsonl")
    counts = build(
        shared / "cmrc2018-trial" / "docs",
        cmrc,
        {},
        args.out / "cmrc2018-trial",
        args.cmrc_per_doc,
        args.max_sentences,
    )
    print(f"cmrc2018-trial: {counts}")


if __name__ == "__main__":
    main()
