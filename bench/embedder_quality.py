"""Retrieval quality of two embedding backends on the full shared dev sets, side by side.

    .venv/bin/python bench/embedder_quality.py [--a onnx] [--b sentence_transformers]
        [--translate] [--sets xquad,cmrc2018-trial,xquad-cross/en2zh,xquad-cross/zh2en]

For each set, `lore eval --mode hybrid --compare` ingests the documents twice, once per
backend, each into its own throwaway data directory, asks every question of the set
(no sample) of both, and pairs the answers: the differences are B - A with a 95 %
bootstrap interval. Prints a Markdown table with the command. `--translate` also
searches cross-language questions in translation (the chat model; slow), as the
product does by default; without it both sides search the question as asked.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from rag.config import default_data_dir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "eval"
SETS = "xquad,cmrc2018-trial,xquad-cross/en2zh,xquad-cross/zh2en"
METRICS = ("hybrid:answer_hit@5", "hybrid:mrr@10")


def settings_file(folder: Path, backend: str, translate: bool) -> Path:
    path = folder / f"{backend}.yaml"
    models = os.environ.get("LORE_MODELS_DIR") or default_data_dir() / "models"
    settings: dict[str, object] = {
        "data_dir": str(folder / backend),
        "models_dir": str(models),
        "embedding_backend": backend,
        "translate_questions": translate,
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def run_set(name: str, a: Path, b: Path) -> dict[str, object]:
    folder = SHARED / name
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")}
    env["LORE_CONFIG"] = str(a)
    lore = Path(sys.executable).parent / "lore"
    command = [
        str(lore), "eval", str(folder / "questions.jsonl"), "--docs", str(folder / "docs"),
        "--mode", "hybrid", "--compare", str(b), "--json",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 (our own CLI, fixed arguments)
        command, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{name}: lore eval failed:\n{done.stderr[-3000:]}")
    result: dict[str, object] = json.loads(done.stdout)
    result["seconds"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", default="onnx")
    parser.add_argument("--b", default="sentence_transformers")
    parser.add_argument("--translate", action="store_true")
    parser.add_argument("--sets", default=SETS)
    args = parser.parse_args()
    print(f"`{' '.join(['.venv/bin/python', *sys.argv])}`\n")
    print(f"A: {args.a}, B: {args.b}; differences are B - A [95 % interval].\n")
    print("| set | questions | metric | A | B | B - A [95 %] |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        a = settings_file(folder, args.a, args.translate)
        b = settings_file(folder, args.b, args.translate)
        for name in args.sets.split(","):
            result = run_set(name, a, b)
            differences = {d["metric"]: d for d in result["differences"]}  # type: ignore[attr-defined]
            for metric in METRICS:
                d = differences.get(metric) or differences.get(f"all:{metric}")
                if d is None:
                    known = ", ".join(sorted(differences)[:8])
                    raise SystemExit(f"{name}: no metric {metric} (have {known} ...)")
                print(
                    f"| {name} | {d['questions']} | {metric.split(':')[1]} | {d['mean_a']:.3f} "
                    f"| {d['mean_b']:.3f} | {d['difference']:+.3f} "
                    f"[{d['low']:+.3f}, {d['high']:+.3f}] |",
                    flush=True,
                )
            print(f"<!-- {name}: {result['seconds']:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
