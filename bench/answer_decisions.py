"""What an answer's own signs say about whether the documents hold it.

`bench/decline_gate.py` showed that the evidence score, computed before anything is
generated, cannot decline 90 % of near-topic unanswerable questions without also
declining many answerable ones. This bench records, for each question, everything a
decision could use once the model has drafted its answer:

- the evidence score's parts (as decline_gate.py), and whether the question was
  searched for in translation;
- the model's own answer, and whether it refused (the gate is off: `min_evidence` 0);
- the sentences the answer cites (its highlighted spans), how close each is to the
  question in meaning (the embedder's cosine), and the question's words weighed by
  rarity, so that lexical checks can be tried again without the model;
- the closest sentence in meaning among all the passages the model was given.

Record once (slow: the chat model answers every question), then try decisions on
the saved rows with `--analyse`, which fits each on the calibrate half and reports
the other:

    LORE_DATA_DIR=/tmp/eval/data python bench/answer_decisions.py --out /tmp/ad.jsonl \\
        --sample 60 xquad=../shared/eval/xquad/questions.jsonl \\
        holed-xquad-en=bench/eval/holed/xquad-en/questions.jsonl ...
    python bench/answer_decisions.py --analyse /tmp/ad.jsonl

COLLECTION=QUESTIONS arguments are named as in decline_gate.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decline_gate import COLLECTIONS, groups, identity, kind


def record(pairs: Sequence[tuple[str, Path]], sample: int | None, out: Path) -> None:
    import numpy as np

    from rag.components.keyword import words
    from rag.config import load_settings
    from rag.container import Lore
    from rag.evaluation import contains_gold, load_questions
    from rag.retrieval.language import sentence_spans
    from rag.types import DoneEvent, SourcesEvent, TokenEvent

    lore = Lore(load_settings(min_evidence=0.0, min_evidence_translated=0.0))
    embedder = lore.embedder
    done = set()
    if out.exists():
        done = {(r["set"], r["id"], r["lang"]) for r in map(json.loads, out.open())}
    with out.open("a", encoding="utf-8") as sink:
        for name, path in pairs:
            collection = COLLECTIONS.get(name, name)
            for question in load_questions(path, sample=sample):
                if (name, question.id, question.lang) in done:
                    continue
                started = time.perf_counter()
                found = lore.retriever.retrieve(question.question, collection, 4)
                first = None
                answer = None
                given: tuple[Any, ...] = ()
                for event in lore.answerer.stream(question.question, collection):
                    if isinstance(event, SourcesEvent):
                        given = event.sources
                    if isinstance(event, TokenEvent) and first is None:
                        first = time.perf_counter() - started
                    if isinstance(event, DoneEvent):
                        answer = event.answer
                if answer is None:
                    raise RuntimeError("the answer stream ended without a result")
                wanted = np.asarray(embedder.embed_query(question.question))
                sentences = [s.text[a:b] for s in given for a, b in sentence_spans(s.text)]
                closest = 0.0
                if sentences:
                    vectors = np.asarray(embedder.embed_documents(sentences))
                    closest = float(np.max(vectors @ wanted))
                cited = []
                for c in answer.citations:
                    sentence = c.text[c.span[0] : c.span[1]] if c.span else ""
                    cosine = (
                        float(np.asarray(embedder.embed_documents([sentence]))[0] @ wanted)
                        if sentence
                        else None
                    )
                    cited.append(
                        {"number": c.number, "span": sentence, "cosine": cosine, "text": c.text}
                    )
                terms = list(dict.fromkeys(words(found.query)))
                gold = question.gold()
                row = {
                    **identity(name, path, question),
                    "question": question.question,
                    "query": found.query,
                    "translated": found.query != question.question,
                    "closeness": found.evidence.closeness,
                    "distinctness": found.evidence.distinctness,
                    "coverage": found.evidence.coverage,
                    "weights": lore.keywords.rarity(collection, terms),
                    "model_declined": answer.declined,
                    "text": answer.text,
                    "contains_gold": bool(gold) and contains_gold(answer.text, gold),
                    "gold": list(gold),
                    "cited": cited,
                    "given": [s.text for s in given],
                    "closest_sentence": closest,
                    "ttft_s": first,
                    "seconds": time.perf_counter() - started,
                }
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
                sink.flush()
                print(
                    name,
                    question.id,
                    question.lang,
                    row["model_declined"],
                    row["contains_gold"],
                    f"{row['seconds']:.1f}s",
                    flush=True,
                )


def span_coverage(row: dict[str, Any]) -> float:
    """The weighted share of the (searched) question's words that the cited sentences hold."""
    from rag.components.keyword import words

    weights = row["weights"]
    total = sum(weights.values())
    if not total or not row["cited"]:
        return 0.0
    held = set()
    for cited in row["cited"]:
        held |= set(words(cited["span"]))
    return sum(w for term, w in weights.items() if term in held) / total


def features(row: dict[str, Any]) -> dict[str, float]:
    cosines = [c["cosine"] for c in row["cited"] if c["cosine"] is not None]
    return {
        "closeness": row["closeness"],
        "evidence": row["closeness"] + row["distinctness"] + row["coverage"],
        "span_cosine": max(cosines) if cosines else 0.0,
        "span_coverage": span_coverage(row),
        "closest_sentence": row["closest_sentence"],
    }


# Each decision: a name, the features it thresholds (declining under any threshold),
# and whether the model's own refusal counts (it does in the product; without it is
# what the thresholds alone would do, were the model never offered the refusal).
DECISIONS: dict[str, tuple[tuple[str, ...], bool | str]] = {
    "model only": ((), True),
    "model + evidence": (("evidence",), True),
    "model + span cosine": (("span_cosine",), True),
    "model + span coverage": (("span_coverage",), True),
    "model + closest sentence": (("closest_sentence",), True),
    "model + evidence + closest sentence": (("evidence", "closest_sentence"), True),
    "evidence + closest sentence (no model refusal)": (("evidence", "closest_sentence"), False),
    "closest sentence (no model refusal)": (("closest_sentence",), False),
    "model (same language) + evidence + closest sentence": (
        ("evidence", "closest_sentence"),
        "same language",
    ),
    "closeness + evidence + closest sentence (no model refusal, no min_score)": (
        ("closeness", "evidence", "closest_sentence"),
        "none",
    ),
    "model (same language) + closeness + evidence": (
        ("closeness", "evidence"),
        "same language, no min_score",
    ),
    "model (same language) + closeness + evidence + closest sentence": (
        ("closeness", "evidence", "closest_sentence"),
        "same language, no min_score",
    ),
}

# Passages less close than this to the (translated) question are dropped before the
# model is asked (EmbeddingGemma's `min_score`), so a question with none left was
# declined without generating, whatever the prompt.
MIN_SCORE = 0.30


def model_declines(row: dict[str, Any], model: bool | str) -> bool:
    """Whether the row was declined before any threshold of the decision.

    `model` True: the model's own refusal counts. "same language": it counts only for a
    question asked in the documents' language (a translated one is then not offered the
    refusal), and a translated question counts as declined only when no passage was
    close enough (`MIN_SCORE`) to ask the model about. False: only that last case, for
    every question. "none", or ending in "no min_score": nothing is declined before.
    """
    same_language = not row["translated"]
    if model is True or (str(model).startswith("same language") and same_language):
        return bool(row["model_declined"])
    if model == "none" or str(model).endswith("no min_score"):
        return False
    return bool(row["model_declined"]) and row["closeness"] < MIN_SCORE


def declines(
    row: dict[str, Any], names: tuple[str, ...], cut: dict[str, float], model: bool | str
) -> bool:
    values = row["features"]
    return model_declines(row, model) or any(values[n] < cut[n] for n in names)


def fit(
    rows: list[dict[str, Any]], names: tuple[str, ...], model: bool | str, max_false: float
) -> dict[str, float]:
    """Thresholds (one per feature) that decline the most unanswerable calibrate rows
    while declining at most `max_false` of the answerable ones: a greedy search that
    raises, a step at a time, the threshold whose step costs least false refusals."""
    answerable = [r for r in rows if not r["unanswerable"]]
    unanswerable = [r for r in rows if r["unanswerable"]]
    steps = {n: sorted({r["features"][n] for r in answerable}) for n in names}
    position = dict.fromkeys(names, 0)
    cut = {n: (steps[n][0] if steps[n] else 0.0) for n in names}

    def rates(candidate: dict[str, float]) -> tuple[float, float]:
        false = sum(declines(r, names, candidate, model) for r in answerable) / max(
            len(answerable), 1
        )
        right = sum(declines(r, names, candidate, model) for r in unanswerable) / max(
            len(unanswerable), 1
        )
        return false, right

    while True:
        best = None
        for n in names:
            if position[n] + 1 >= len(steps[n]):
                continue
            candidate = dict(cut, **{n: steps[n][position[n] + 1]})
            false, right = rates(candidate)
            if false > max_false:
                continue
            key = (right, -false)
            if best is None or key > best[0]:
                best = (key, n, candidate)
        if best is None:
            return cut
        _, n, cut = best
        position[n] += 1


def analyse(rows: list[dict[str, Any]], max_false: float = 0.04) -> None:
    for row in rows:
        row["features"] = features(row)
    for name, (names, model) in DECISIONS.items():
        print(f"\n## {name}")
        cuts = {}
        for translated in (False, True):
            group = [r for r in rows if r["half"] == "calibrate" and r["translated"] == translated]
            cuts[translated] = fit(group, names, model, max_false)
            shown = ", ".join(f"{n} {v:.3f}" for n, v in cuts[translated].items())
            print(f"thresholds ({'translated' if translated else 'same language'}): {shown}")
        print(
            "| direction | half | answerable | false refusal | holed | refused | hand | refused |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for way, half, group in groups(rows):
            cells = []
            for k in ("answerable", "holed", "hand-written"):
                members = [r for r in group if kind(r) == k]
                declined = [declines(r, names, cuts[r["translated"]], model) for r in members]
                rate = sum(declined) / len(declined) if declined else float("nan")
                cells += [str(len(members)), f"{rate:.2f}"]
            print(f"| {way} | {half} | " + " | ".join(cells) + " |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="*", help="COLLECTION=QUESTIONS.jsonl")
    parser.add_argument("--out", type=Path, help="JSON lines to append to (resumes)")
    parser.add_argument("--sample", type=int, help="a random N questions of each file")
    parser.add_argument("--analyse", type=Path, help="a saved run to analyse")
    args = parser.parse_args(argv)
    if args.analyse:
        analyse([json.loads(line) for line in args.analyse.open()])
        return
    if not args.out or not args.pairs:
        parser.error("give --out and COLLECTION=QUESTIONS pairs, or --analyse FILE")
    pairs = []
    for pair in args.pairs:
        name, _, path = pair.partition("=")
        pairs.append((name, Path(path)))
    record(pairs, args.sample, args.out)


if __name__ == "__main__":
    main()
