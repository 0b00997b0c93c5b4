"""The embedding backends on the same chunks, alternating, in one run (issue 18).

    PYTHONPATH=. .venv/bin/python bench/embedder_speed.py [--texts 64] [--chars 665]

Cuts `--texts` passages of `--chars` characters (665 is the mean chunk of the default
set) from War and Peace in the shared corpus and embeds them with `embed_documents`,
as the ingest job does, on each backend with the default settings: int8 ONNX, then
torch, then both again. Prints chunks per second for each run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rag.config import Settings
from rag.container import build_embedder

BOOK = Path(__file__).resolve().parents[2] / "shared/corpus/large/book-war-and-peace-1225p.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--chars", type=int, default=665)
    args = parser.parse_args()
    book = BOOK.read_text()[200_000:]
    texts = [book[i : i + args.chars] for i in range(0, args.chars * args.texts, args.chars)]
    for backend in ("onnx", "sentence_transformers") * 2:
        embedder = build_embedder(Settings(), backend)
        embedder.embed_documents(texts[:4])
        began = time.perf_counter()
        embedder.embed_documents(texts)
        rate = len(texts) / (time.perf_counter() - began)
        print(f"| {backend} | {rate:.1f} chunks/s |", flush=True)


if __name__ == "__main__":
    main()
