"""sentence-transformers' ONNX and OpenVINO backends and int8 against torch, on the CPU.

Three steps, because the exporters need `optimum`, whose releases pin a transformers
older than Lore's; they run in a separate virtual environment (see docs/benchmarks.md):

    .venv/bin/python bench/embedder_backends.py chunks WORK
    OTHER_VENV/bin/python bench/embedder_backends.py encode|speed WORK MODEL_DIR VARIANT...
    .venv/bin/python bench/embedder_backends.py score WORK

`chunks` writes XQuAD's chunks (Lore's default chunker) and a seeded sample of 400
of its questions to WORK.
`encode` builds each VARIANT of the sentence-transformers model in MODEL_DIR, exporting
locally and offline into WORK, then encodes every chunk and question with the model's
document and query prompts. Each variant is timed on the same seeded sample of chunks,
in interleaved rounds (best round counts), so the rates compare within one run.
Variants: torch-fp32, torch-bf16, onnx, onnx-int8 (dynamic, avx512_vnni), openvino,
openvino-int8 (static, calibrated on the chunks themselves). A variant that fails
records its error. `speed` times the variants without encoding the set. `score`
computes dense answer-hit@5 and MRR@10 per language by exact cosine, the way
`lore eval` ranks them, and prints the table.
"""

from __future__ import annotations

import json
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
QUESTIONS = 400  # a seeded sample of XQuAD's 1,264 questions, both languages


def write_chunks(work: Path) -> None:
    """XQuAD's chunks, cut as `lore ingest` cuts them with EmbeddingGemma's tokenizer."""
    import os

    from ingest.parsing import Limits
    from ingest.pipeline import ChunkPlan, build_chunks, document_id, file_sha256
    from rag.config import default_data_dir
    from rag.evaluation import load_questions

    models_dir = Path(os.environ.get("LORE_MODELS_DIR") or default_data_dir() / "models")
    plan = ChunkPlan(200, 30, str(models_dir / "embeddinggemma-300m"), Limits())
    chunks = []
    for path in sorted((SHARED / "eval" / "xquad" / "docs").iterdir()):
        sha256 = file_sha256(path)
        _, pieces = build_chunks(path, document_id(sha256), sha256, path.name, plan)
        chunks += [{"doc": path.name, "text": c.text, "embed": c.embedding_text()} for c in pieces]
    questions = [
        {"lang": q.lang, "question": q.question, "answers": list(q.answers), "doc": q.doc}
        for q in load_questions(SHARED / "eval" / "xquad" / "questions.jsonl", sample=QUESTIONS)
    ]
    work.mkdir(parents=True, exist_ok=True)
    (work / "chunks.json").write_text(json.dumps({"chunks": chunks, "questions": questions}))
    print(f"{len(chunks)} chunks, {len(questions)} questions in {work}")


def build(variant: str, model_dir: Path, work: Path, texts: list[str]) -> Any:
    """The model for `variant`, exported into `work` (once) from the local weights."""
    import torch
    from sentence_transformers import SentenceTransformer

    local = {"local_files_only": True}
    if variant == "torch-fp32":
        return SentenceTransformer(str(model_dir), device="cpu", **local)
    if variant == "torch-bf16":
        kwargs = {"torch_dtype": torch.bfloat16}
        return SentenceTransformer(str(model_dir), device="cpu", model_kwargs=kwargs, **local)
    backend = "onnx" if variant.startswith("onnx") else "openvino"
    exported = work / f"{model_dir.name}-{backend}"
    if not exported.is_dir():
        model = SentenceTransformer(str(model_dir), device="cpu", backend=backend, **local)
        model.save(str(exported))
    if variant == "onnx":
        return SentenceTransformer(str(exported), backend="onnx", **local)
    if variant == "openvino":
        return SentenceTransformer(str(exported), backend="openvino", **local)
    if variant == "onnx-int8":
        from sentence_transformers import export_dynamic_quantized_onnx_model

        name = "onnx/model_qint8_avx512_vnni.onnx"
        if not (exported / name).is_file():
            model = SentenceTransformer(str(exported), backend="onnx", **local)
            export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(exported))
        kwargs = {"file_name": name}
        return SentenceTransformer(str(exported), backend="onnx", model_kwargs=kwargs, **local)
    if variant == "openvino-int8":
        # sentence-transformers' helper calibrates on a hub dataset; offline, calibrate on
        # our own chunks with optimum-intel's quantizer directly.
        name = "openvino/openvino_model_qint8_quantized.xml"
        if not (exported / name).is_file():
            from datasets import Dataset
            from optimum.intel import OVConfig, OVQuantizationConfig, OVQuantizer

            model = SentenceTransformer(str(exported), backend="openvino", **local)
            quantizer = OVQuantizer.from_pretrained(model[0].auto_model)
            tokenizer = model.tokenizer

            def tokenize(batch: dict[str, list[str]]) -> Any:
                return tokenizer(batch["text"], padding=True, truncation=True, max_length=256)

            calibration = Dataset.from_dict({"text": texts[:300]}).map(tokenize, batched=True)
            calibration = calibration.remove_columns(["text"])
            quantizer.quantize(
                ov_config=OVConfig(quantization_config=OVQuantizationConfig()),
                calibration_dataset=calibration,
                save_directory=str(exported / "openvino-q"),
            )
            saved = exported / "openvino-q" / "openvino"
            (saved / "openvino_model.xml").rename(exported / name)
            (saved / "openvino_model.bin").rename(exported / name.replace(".xml", ".bin"))
        kwargs = {"file_name": name}
        return SentenceTransformer(str(exported), backend="openvino", model_kwargs=kwargs, **local)
    raise SystemExit(f"unknown variant {variant}")


def encode(model: Any, texts: list[str], prompt: str) -> np.ndarray:
    prompts = getattr(model, "prompts", None) or {}
    return np.asarray(
        model.encode(
            texts,
            prompt_name=prompt if prompt in prompts else None,
            batch_size=16,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ),
        dtype=np.float32,
    )


def run_variants(work: Path, model_dir: Path, variants: list[str], *, vectors: bool) -> None:
    import torch

    torch.set_num_threads(2)
    data = json.loads((work / "chunks.json").read_text())
    texts = [c["embed"] for c in data["chunks"]]
    questions = [q["question"] for q in data["questions"]]
    sample = random.Random(0).sample(texts, 48)  # noqa: S311
    models: dict[str, Any] = {}
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for variant in variants:
        key = f"{model_dir.name}/{variant}"
        try:
            started = time.perf_counter()
            models[variant] = build(variant, model_dir, work, texts)
            print(f"{key}: built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        except Exception as exc:  # a failed export is a result too
            results[key] = {"error": f"{type(exc).__name__}: {exc}"[:600]}
            traceback.print_exc()
    best = dict.fromkeys(models, float("inf"))
    for _ in range(2):
        for variant, model in models.items():
            started = time.perf_counter()
            encode(model, sample, "document")
            best[variant] = min(best[variant], time.perf_counter() - started)
    for variant, model in models.items():
        key = f"{model_dir.name}/{variant}"
        results[key] = {"chunks_per_s": len(sample) / best[variant]}
        print(f"{key}: {results[key]}", file=sys.stderr)
        if not vectors:
            continue
        np.save(work / f"{key.replace('/', '--')}-docs.npy", encode(model, texts, "document"))
        np.save(work / f"{key.replace('/', '--')}-queries.npy", encode(model, questions, "query"))
    results_path.write_text(json.dumps(results, indent=1))


def score(work: Path) -> None:
    from rag.evaluation import contains_answer

    data = json.loads((work / "chunks.json").read_text())
    chunks, questions = data["chunks"], data["questions"]
    results = json.loads((work / "results.json").read_text())
    print("| model / backend | chunks/s (48) | x torch-fp32 | en hit@5 / MRR | zh hit@5 / MRR |")
    print("|---|---|---|---|---|")
    for key, result in results.items():
        if "error" in result:
            print(f"| {key} | failed: {result['error']} | | | |")
            continue
        stem = key.replace("/", "--")
        if not (work / f"{stem}-docs.npy").is_file():
            print(
                f"| {key} | {result['chunks_per_s']:.1f} | {ratio_to_fp32(results, key)} "
                "| (speed only) | |"
            )
            continue
        docs = np.load(work / f"{stem}-docs.npy")
        queries = np.load(work / f"{stem}-queries.npy")
        ranked = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
        per_lang: dict[str, list[int]] = {}
        for question, order in zip(questions, ranked, strict=True):
            rank = 0
            for position, index in enumerate(order, start=1):
                chunk = chunks[index]
                if chunk["doc"] == question["doc"] and contains_answer(
                    chunk["text"], question["answers"]
                ):
                    rank = position
                    break
            per_lang.setdefault(question["lang"], []).append(rank)
        cells = []
        for lang in ("en", "zh"):
            ranks = per_lang.get(lang, [])
            hit5 = sum(0 < r <= 5 for r in ranks) / max(len(ranks), 1)
            mrr = sum(1 / r for r in ranks if r) / max(len(ranks), 1)
            cells.append(f"{hit5:.3f} / {mrr:.3f}")
        ratio = ratio_to_fp32(results, key)
        print(f"| {key} | {result['chunks_per_s']:.1f} | {ratio} | {cells[0]} | {cells[1]} |")


def ratio_to_fp32(results: dict[str, Any], key: str) -> str:
    base = results.get(key.split("/")[0] + "/torch-fp32", {}).get("chunks_per_s")
    return f"{results[key]['chunks_per_s'] / base:.2f}" if base else ""


def main() -> None:
    step, work = sys.argv[1], Path(sys.argv[2])
    if step == "chunks":
        write_chunks(work)
    elif step in ("encode", "speed"):
        run_variants(work, Path(sys.argv[3]), sys.argv[4:], vectors=step == "encode")
    elif step == "score":
        score(work)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
