"""How to quantize the exported EmbeddingGemma, and in what batches to run it (issue 18).

    PYTHONPATH=. .venv/bin/python bench/onnx_variants.py WORK [--batch 1] [--rounds 1] [VARIANT ...]

WORK holds (or gets) `float32.onnx`, the whole pipeline exported by
`rag.components.embeddings.export_onnx`. Each VARIANT is quantized from it once:
- `int8-all`: dynamic int8, every MatMul and the token table (Gather);
- `int8-all-per-channel`: the same with one weight scale per output channel;
- `int8-keep-down` (Lore's): every MatMul but the MLP down projections, and the table;
- `int8-keep-down-per-channel`;
- `nbits8`, `nbits4`: onnxruntime's block-wise weight-only MatMulNBits (block 32,
  int8 compute), which quantizes activations per block of 32 rather than per tensor;
- `float32`: the export itself;
- any of these with `-fused` (`int8-keep-down-fused`, Lore's since copy format 3):
  quantized from the export with its RMS norms fused (`_fuse_norms`).
Then 48 passages of the eval documents (1,200 characters each, with the document
prompt) are embedded by torch float32 (`SentenceTransformerEmbedder`, `--batch` texts a
call) and by each variant in batches of `--batch`, longest first (`--rounds` times, the
variants taking turns, seconds summed: the machine's noise falls on all). Prints seconds, the
cosine to torch's vector (least and mean) and the cosine between the first text's
vector alone and in its batch.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rag.components.embeddings import SentenceTransformerEmbedder, export_onnx
from rag.components.onnx_embeddings import _fuse_norms, mlp_down_projections
from rag.config import default_data_dir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "eval"
MODEL = default_data_dir() / "models" / "embeddinggemma-300m"
PROMPT = "title: none | text: "


def passages() -> list[str]:
    files = sorted((SHARED / "xquad" / "docs").glob("*"))[:6]
    files += sorted((SHARED / "cmrc2018-trial" / "docs").glob("*"))[:6]
    texts = []
    for path in files:
        text = path.read_text(errors="ignore")
        texts += [text[i : i + 1200] for i in range(0, min(len(text), 6000), 1200)]
    return [t for t in texts if t.strip()][:48]


def quantize(work: Path, variant: str) -> Path:
    target = work / f"{variant}.onnx"
    source = work / "float32.onnx"
    if variant.endswith("-fused"):
        variant = variant.removesuffix("-fused")
        if not (work / "fused.onnx").is_file():
            _fuse_norms(source, work / "fused.onnx")
        source = work / "fused.onnx"
    if variant == "float32" or target.is_file():
        return source if variant == "float32" else target
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if variant.startswith("nbits"):
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        bits = int(variant[5:])
        config = DefaultWeightOnlyQuantConfig(
            block_size=32, is_symmetric=True, accuracy_level=4, bits=bits
        )
        quantizer = MatMulNBitsQuantizer(
            onnx.load(str(source)),
            bits=bits,
            block_size=32,
            is_symmetric=True,
            accuracy_level=4,
            algo_config=config,
        )
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
        return target
    config = json.loads((MODEL / "config.json").read_text())
    graph = onnx.load(str(source), load_external_data=False).graph
    keep = (
        mlp_down_projections(graph, config["intermediate_size"], config["hidden_size"])
        if "keep-down" in variant
        else []
    )
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gather"],
        per_channel=variant.endswith("per-channel"),
        nodes_to_exclude=keep,
        extra_options={"MatMulConstBOnly": True},
    )
    return target


def embed(session: object, sp: object, texts: list[str]) -> np.ndarray:
    rows = [[2, *sp.encode(PROMPT + t)[:2046], 1] for t in texts]  # type: ignore[attr-defined]
    width = max(map(len, rows))
    ids = np.zeros((len(rows), width), np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    out = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]  # type: ignore[attr-defined]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("variants", nargs="*", default=["int8-keep-down", "float32"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    import onnxruntime
    import sentencepiece

    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.work / "float32.onnx").is_file():
        export_onnx(MODEL, args.work / "float32.onnx")
    texts = passages()
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    torch_model = SentenceTransformerEmbedder(
        "torch", MODEL, dtype="float32", batch_size=args.batch
    )
    torch_model.embed_documents(texts[:2])
    began = time.perf_counter()
    reference = torch_model.embed_documents(texts)
    print(f"torch float32, batch {args.batch}: {time.perf_counter() - began:.1f} s")
    sp = sentencepiece.SentencePieceProcessor(model_file=str(MODEL / "tokenizer.model"))
    print("| variant | seconds | cosine to torch, least / mean | alone vs in its batch |")
    print("|---|---|---|---|")
    sessions = {}
    for variant in args.variants:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 2
        sessions[variant] = onnxruntime.InferenceSession(
            str(quantize(args.work, variant)), options, providers=["CPUExecutionProvider"]
        )
    seconds = dict.fromkeys(args.variants, 0.0)
    vectors = {variant: np.zeros_like(reference) for variant in args.variants}
    for _ in range(args.rounds):
        for variant, session in sessions.items():
            began = time.perf_counter()
            for start in range(0, len(order), args.batch):
                chosen = order[start : start + args.batch]
                vectors[variant][chosen] = embed(session, sp, [texts[i] for i in chosen])
            seconds[variant] += time.perf_counter() - began
    for variant, session in sessions.items():
        cosines = (vectors[variant] * reference).sum(axis=1)
        alone = float(embed(session, sp, [texts[order[0]]])[0] @ vectors[variant][order[0]])
        print(
            f"| {variant} | {seconds[variant]:.1f} | {cosines.min():.3f} / {cosines.mean():.3f} "
            f"| {alone:.4f} |"
        )


if __name__ == "__main__":
    main()
