"""How well the evidence score tells answerable questions from unanswerable ones.

Lore declines a question, without generating, when the evidence that its passages hold
the answer (rag/retrieval/evidence.py) is under `min_evidence`. This bench records each
question's evidence, retrieval only (no answer is generated, but a cross-language
question is translated as in the product), then chooses the threshold on the
`calibrate` half of the questions and reports the other half:

    LORE_DATA_DIR=/tmp/eval/data python bench/decline_gate.py --out /tmp/gate.jsonl \\
        xquad=../shared/eval/xquad/questions.jsonl \\
        xquad=bench/eval/unanswerable/xquad.jsonl \\
        holed-xquad-en=bench/eval/holed/xquad-en/questions.jsonl ...

Each argument is COLLECTION=QUESTIONS (collections as `lore eval` names them, already
ingested; the short names `xquad`, `cmrc2018-trial`, `en2zh`, `zh2en` and
`holed-xquad-en`, `holed-xquad-zh`, `holed-cmrc2018-trial` stand for the collections
`lore eval` makes for the shared sets, and those named `eval-holed-<folder>` for
bench/eval/holed, which `lore eval --collection` must be given, since the holed CMRC
folder would otherwise share its name with the real one). `--analyse FILE` reads
a saved run and prints the tables again, without any model.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

COLLECTIONS = {
    "xquad": "eval-xquad-docs",
    "cmrc2018-trial": "eval-cmrc2018-trial-docs",
    "en2zh": "eval-en2zh-docs",
    "zh2en": "eval-zh2en-docs",
    "holed-xquad-en": "eval-holed-xquad-en",
    "holed-xquad-zh": "eval-holed-xquad-zh",
    "holed-cmrc2018-trial": "eval-holed-cmrc2018-trial",
}


def identity(name: str, path: Path, question: Any) -> dict[str, Any]:
    """The fields that name a recorded question: its set, file, id, language and half."""
    return {
        "set": name,
        "file": path.name,
        "id": question.id,
        "lang": question.lang,
        "half": question.half,
        "unanswerable": question.unanswerable,
    }


def record(pairs: Sequence[tuple[str, Path]], sample: int | None, k: int) -> list[dict[str, Any]]:
    from rag.config import load_settings
    from rag.container import Lore
    from rag.evaluation import contains_answer, load_questions

    lore = Lore(load_settings(min_evidence=0.0))
    rows = []
    for name, path in pairs:
        collection = COLLECTIONS.get(name, name)
        for question in load_questions(path, sample=sample):
            started = time.perf_counter()
            found = lore.retriever.retrieve(question.question, collection, k)
            seconds = time.perf_counter() - started
            passages = found.nearest
            rows.append(
                {
                    **identity(name, path, question),
                    "answer_in_passages": any(
                        contains_answer(p.chunk.text, question.answers) for p in passages
                    ),
                    "translated": found.query != question.question,
                    "closeness": found.evidence.closeness,
                    "distinctness": found.evidence.distinctness,
                    "coverage": found.evidence.coverage,
                    "seconds": seconds,
                }
            )
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    return rows


def total(row: dict[str, Any]) -> float:
    return float(row["closeness"] + row["distinctness"] + row["coverage"])


def auc(positive: list[float], negative: list[float]) -> float:
    """The chance that a positive scores above a negative (ties count half)."""
    if not positive or not negative:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


PARTS = ("closeness", "distinctness", "coverage")


def direction(row: dict[str, Any]) -> str:
    """`en`, `zh` (question and documents in one language), `en2zh` or `zh2en`."""
    name, lang = row["set"], row["lang"]
    if name in ("en2zh", "zh2en"):
        return str(name)
    documents = {"holed-xquad-en": "en", "holed-xquad-zh": "zh"}.get(name, lang)
    return lang if documents == lang else f"{lang}2{documents}"


def groups(rows: list[dict[str, Any]]) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """(direction, half, its rows) for each direction and half that has rows."""
    for way in ("en", "zh", "en2zh", "zh2en"):
        for half in ("calibrate", "report"):
            group = [r for r in rows if direction(r) == way and r["half"] == half]
            if group:
                yield way, half, group


def kind(row: dict[str, Any]) -> str:
    if not row["unanswerable"]:
        return "answerable"
    return "holed" if str(row["set"]).startswith("holed") else "hand-written"


def choose(rows: list[dict[str, Any]], max_false: float) -> float:
    """The highest threshold that declines at most `max_false` of the answerable rows."""
    answerable = sorted(total(r) for r in rows if not r["unanswerable"])
    return answerable[int(max_false * len(answerable))] if answerable else 0.0


def analyse(rows: list[dict[str, Any]], max_false: float) -> None:
    calibrate = [r for r in rows if r["half"] == "calibrate"]
    threshold = choose(calibrate, max_false)
    print(f"threshold chosen on the calibrate half (false refusal <= {max_false}): {threshold:.3f}")
    print(
        "| direction | half | answerable | false refusal | holed | refused | hand-written | "
        "refused | AUC (holed) | AUC (hand) | translated |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for way, half, group in groups(rows):
        scores = {k: [total(r) for r in group if kind(r) == k] for k in KINDS}
        answerable = scores["answerable"]
        false = sum(t < threshold for t in answerable) / len(answerable) if answerable else 0
        cells = [way, half, str(len(answerable)), f"{false:.3f}"]
        for name in ("holed", "hand-written"):
            negative = scores[name]
            refused = sum(t < threshold for t in negative) / len(negative) if negative else 0
            cells += [str(len(negative)), f"{refused:.3f}"]
        cells += [f"{auc(answerable, scores[k]):.3f}" for k in ("holed", "hand-written")]
        cells.append(f"{sum(r['translated'] for r in group) / len(group):.2f}")
        print("| " + " | ".join(cells) + " |")
    print()
    print("AUC of each part alone, all directions, both halves (answerable against holed):")
    for part in PARTS:
        positive = [float(r[part]) for r in rows if kind(r) == "answerable"]
        negative = [float(r[part]) for r in rows if kind(r) == "holed"]
        print(f"- {part}: {auc(positive, negative):.3f}")


KINDS = ("answerable", "holed", "hand-written")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="*", help="COLLECTION=QUESTIONS")
    parser.add_argument("--sample", type=int, default=None)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--analyse", type=Path, help="a saved run to analyse again")
    parser.add_argument("--max-false", type=float, default=0.05)
    args = parser.parse_args(argv)
    if args.analyse:
        lines = args.analyse.read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.startswith("{")]
    else:
        pairs = [(p.split("=", 1)[0], Path(p.split("=", 1)[1])) for p in args.pairs]
        rows = record(pairs, args.sample, args.k)
        if args.out:
            args.out.write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
            )
    analyse(rows, args.max_false)


if __name__ == "__main__":
    main()
