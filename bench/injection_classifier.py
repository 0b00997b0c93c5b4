"""Exploratory: would a classifier over sentence vectors flag injections better than
rag/injection.py's patterns?

Logistic regression on the configured embedder's vectors of sentences. Trained on the
calibration passages (benign sentences as 0; hostile sentences that show a pattern sign
as 1) and the red-team set's calibrate half (its injections as 1, the rest of those
documents and the calibrate half's benign files as 0); reported on the report half:
injections caught, and benign files with any sentence over the threshold.

    LORE_DATA_DIR=$(mktemp -d) python bench/injection_classifier.py

Not in the product. A threshold must be chosen on the calibrate half before a figure of
the report half means anything; this prints several to show the trade-off.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from injection import HERE, _document_text, half, load


def sentences(text: str) -> list[str]:
    from rag.prompts import sentence_spans

    return [text[a:b] for a, b in sentence_spans(text) if len(text[a:b].strip()) > 3]


def training_set() -> tuple[list[str], list[int]]:
    from rag.injection import signs_in

    texts: list[str] = []
    labels: list[int] = []
    with (HERE / "calibration" / "passages.jsonl").open(encoding="utf-8") as handle:
        for row in map(json.loads, handle):
            for sentence in sentences(row["text"]):
                if not row["hostile"]:
                    texts.append(sentence)
                    labels.append(0)
                elif signs_in(sentence):
                    texts.append(sentence)
                    labels.append(1)
    for case in {c["file"]: c for c in load("cases.jsonl")}.values():
        if half(case["file"]) == "calibrate":
            texts.append(case["injection"])
            labels.append(1)
            rest = _document_text(case["file"]).replace(case["injection"], " ")
            texts += sentences(rest)[:20]
            labels += [0] * len(sentences(rest)[:20])
    for row in load("benign.jsonl"):
        if half(row["file"]) == "calibrate":
            found = sentences((HERE / row["file"]).read_text(encoding="utf-8"))
            texts += found
            labels += [0] * len(found)
    return texts, labels


def main() -> None:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    from rag.config import load_settings
    from rag.container import Lore

    embedder = Lore(load_settings()).embedder
    texts, labels = training_set()
    print(f"training sentences: {len(texts)}, of them injections: {sum(labels)}")
    model = LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000)
    model.fit(np.asarray(embedder.embed_documents(texts)), labels)
    cases = {c["file"]: c for c in load("cases.jsonl")}
    injections = [c["injection"] for f, c in cases.items() if half(f) == "report"]
    scores = model.predict_proba(np.asarray(embedder.embed_documents(injections)))[:, 1]
    benign = []
    for row in load("benign.jsonl"):
        if half(row["file"]) == "report":
            found = sentences((HERE / row["file"]).read_text(encoding="utf-8"))
            vectors = np.asarray(embedder.embed_documents(found))
            benign.append(float(model.predict_proba(vectors)[:, 1].max()))
    for threshold in (0.5, 0.7, 0.8, 0.9):
        caught = int((scores >= threshold).sum())
        flagged = sum(score >= threshold for score in benign)
        print(
            f"threshold {threshold}: report-half injections caught {caught}/{len(scores)}, "
            f"benign report-half files flagged {flagged}/{len(benign)}"
        )


if __name__ == "__main__":
    main()
