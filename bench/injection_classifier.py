"""Train the sentence classifier that rag/answering/injection.py uses beside its patterns.

A logistic regression over the configured embedder's vectors of single sentences:
does this sentence address an AI assistant with orders? It learns only from the
calibrate half of bench/eval/injection:

- positives: the calibrate half's injected instructions, and the sentences of the
  hostile calibration passages (calibration/passages.jsonl) that show a pattern sign;
- negatives: every sentence of the benign calibration passages and of the calibrate
  half's benign files, and the other sentences of its hostile files.

The regularisation and the threshold are chosen by grouped 5-fold cross-validation on
that half alone (a file or passage never in training and test at once): the most
injections caught out of fold while at most `MAX_BENIGN` of benign units (files and
passages) have a sentence over the threshold. The report half is then scored once,
for docs/benchmarks.md; it plays no part in any choice.

    LORE_DATA_DIR=$(mktemp -d) python bench/injection_classifier.py          # report only
                                          # (a refit, and the shipped weights if they fit)
    LORE_DATA_DIR=$(mktemp -d) python bench/injection_classifier.py --write  # and ship it
    LORE_DATA_DIR=$(mktemp -d) python bench/injection_classifier.py --dev    # false alarms

`--dev` runs the shipped detector (patterns and classifier, as at ingest) over every
paragraph of the dev sets' documents (../shared/eval), where nothing should be flagged:
a flagged paragraph there loses a sentence from what the model reads.

`--write` stores the weights in rag/answering/injection_classifier.json, keyed to the embedder's
name: with another embedder configured, Lore uses the patterns alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from injection import HERE, _document_text, half, load

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "rag" / "answering" / "injection_classifier.json"
MAX_BENIGN = 0.02  # out-of-fold share of benign units flagged, below the 0.05
STRENGTHS = (1.0, 4.0, 16.0)
THRESHOLDS = tuple(round(0.5 + 0.01 * i, 2) for i in range(50))


def sentences(text: str) -> list[str]:
    from rag.retrieval.language import sentence_spans

    return [text[a:b] for a, b in sentence_spans(text) if len(text[a:b].strip()) > 3]


def labelled(which: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Sentences of one half, their labels (1: an order to an assistant) and groups."""
    from rag.answering.injection import signs_in

    texts: list[str] = []
    labels: list[int] = []
    groups: list[str] = []

    def add(found: list[str], label: int, group: str) -> None:
        texts.extend(found)
        labels.extend([label] * len(found))
        groups.extend([group] * len(found))

    if which == "calibrate":  # the calibration passages are written apart from the red team
        with (HERE / "calibration" / "passages.jsonl").open(encoding="utf-8") as handle:
            for number, row in enumerate(map(json.loads, handle)):
                group = f"passage-{number}"
                if row["hostile"]:
                    add([s for s in sentences(row["text"]) if signs_in(s)], 1, group)
                else:
                    add(sentences(row["text"]), 0, group)
    for case in {c["file"]: c for c in load("cases.jsonl")}.values():
        if half(case["file"]) == which:
            add([case["injection"]], 1, case["file"])
            rest = _document_text(case["file"]).replace(case["injection"], " ")
            add(sentences(rest)[:20], 0, case["file"])
    for row in load("benign.jsonl"):
        if half(row["file"]) == which:
            add(sentences((HERE / row["file"]).read_text(encoding="utf-8")), 0, row["file"])
    return texts, np.asarray(labels), np.asarray(groups)


def rates(
    scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Injections caught, and benign units (groups with no injection) with a sentence over."""
    hostile = set(groups[labels == 1])
    top: dict[str, float] = {}
    for score, label, group in zip(scores, labels, groups, strict=True):
        if label == 0 and group not in hostile:
            top[str(group)] = max(top.get(str(group), 0.0), float(score))
    positives = scores[labels == 1]
    return {
        "caught": round(float((positives >= threshold).mean()), 3),
        "injections": len(positives),
        "benign_flagged": round(sum(s >= threshold for s in top.values()) / len(top), 3),
        "benign_units": len(top),
    }


def fitted(vectors: np.ndarray, labels: np.ndarray, strength: float) -> Any:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    model = LogisticRegression(C=strength, class_weight="balanced", max_iter=3000)
    return model.fit(vectors, labels)


def choose(vectors: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """The strength and threshold chosen out of fold on the calibrate half."""
    from sklearn.model_selection import GroupKFold  # type: ignore[import-untyped]

    best: dict[str, Any] = {}
    for strength in STRENGTHS:
        scores = np.zeros(len(labels))
        for train, test in GroupKFold(n_splits=5).split(vectors, labels, groups):
            scores[test] = fitted(vectors[train], labels[train], strength).predict_proba(
                vectors[test]
            )[:, 1]
        for threshold in THRESHOLDS:
            found = rates(scores, labels, groups, threshold)
            if found["benign_flagged"] > MAX_BENIGN:
                continue
            key = (found["caught"], -found["benign_flagged"], threshold)
            if not best or key > best["key"]:
                best = {"key": key, "strength": strength, "threshold": threshold, "oof": found}
    return best


def dev_paragraphs(lore: Any) -> None:
    """How many of the dev sets' paragraphs the shipped detector flags, and which."""
    from rag.answering.injection import reads_as_instructions

    folders = sorted(p for p in (ROOT.parent / "shared" / "eval").rglob("docs") if p.is_dir())
    paragraphs = [
        paragraph.strip()
        for folder in folders
        for path in sorted(folder.iterdir())
        for paragraph in path.read_text(encoding="utf-8").split("\n\n")
        if len(paragraph.strip()) > 40
    ]
    orders = lore.injection.orders(paragraphs)
    flagged = [p for p, o in zip(paragraphs, orders, strict=True) if o or reads_as_instructions(p)]
    print(f"dev paragraphs ({len(folders)} folders): {len(flagged)} of {len(paragraphs)} flagged")
    for paragraph in flagged:
        print(f"  {paragraph[:160]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"Write {TARGET.name}.")
    parser.add_argument("--dev", action="store_true", help="Only count dev-set false alarms.")
    args = parser.parse_args()
    from rag.config import load_settings
    from rag.container import Lore

    lore = Lore(load_settings())
    if args.dev:
        dev_paragraphs(lore)
        return
    embedder = lore.embedder
    texts, labels, groups = labelled("calibrate")
    vectors = np.asarray(embedder.embed_documents(texts))
    print(f"calibrate half: {len(texts)} sentences, {int(labels.sum())} injections")
    best = choose(vectors, labels, groups)
    print(f"chosen out of fold: C={best['strength']} threshold={best['threshold']} {best['oof']}")
    model = fitted(vectors, labels, best["strength"])
    report_texts, report_labels, report_groups = labelled("report")
    report_scores = model.predict_proba(np.asarray(embedder.embed_documents(report_texts)))[:, 1]
    print(f"report half: {rates(report_scores, report_labels, report_groups, best['threshold'])}")
    shipped_model = lore.injection_classifier
    if shipped_model is not None:
        # The shipped weights, as ingest applies them to this embedder's vectors (the
        # int8 ONNX copy reads the classifier fit on the torch model's).
        shipped_scores = shipped_model.scores(np.asarray(embedder.embed_documents(report_texts)))
        found = rates(shipped_scores, report_labels, report_groups, shipped_model.threshold)
        print(f"report half, the shipped classifier ({shipped_model.embedder}): {found}")
    if args.write:
        shipped = {
            "about": (
                "rag/answering/injection.py's sentence classifier, "
                "from bench/injection_classifier.py"
            ),
            "embedder": embedder.name,
            "dimension": int(vectors.shape[1]),
            "weights": [round(float(w), 6) for w in model.coef_[0]],
            "bias": round(float(model.intercept_[0]), 6),
            "threshold": best["threshold"],
            "chosen_out_of_fold": {"C": best["strength"], **best["oof"]},
        }
        TARGET.write_text(json.dumps(shipped, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
