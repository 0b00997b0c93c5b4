"""`lore models install` and the int8 ONNX copy (api/cli/models.py `_prepare_embedder`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.cli import models
from rag.components import onnx_embeddings
from rag.config import Settings

pytestmark = pytest.mark.unit


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    """A folder the ONNX export would take (modules.json and a SentencePiece file)."""
    folder = tmp_path / "models" / "embeddinggemma-300m"
    folder.mkdir(parents=True)
    (folder / "modules.json").write_text("[]")
    (folder / "tokenizer.model").write_bytes(b"not really")
    return folder


def exports(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    made: list[Path] = []
    monkeypatch.setattr(onnx_embeddings, "export_int8", lambda path, **_: made.append(path) or path)
    return made


def test_auto_skips_the_export_without_the_memory_it_takes(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    made = exports(monkeypatch)
    monkeypatch.setattr(onnx_embeddings, "available_memory", lambda: 2 << 30)
    models._prepare_embedder(Settings(device="cpu"), model_folder, force=False)
    assert made == []
    assert "not making the int8 ONNX copy" in capsys.readouterr().err


def test_auto_exports_where_there_is_room(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = exports(monkeypatch)
    monkeypatch.setattr(onnx_embeddings, "available_memory", lambda: 64 << 30)
    models._prepare_embedder(Settings(device="cpu"), model_folder, force=False)
    assert made == [model_folder]


def test_a_failed_export_under_auto_leaves_torch_and_says_so(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(path: Path, **_: object) -> Path:
        raise OSError("read-only file system")

    monkeypatch.setattr(onnx_embeddings, "export_int8", fail)
    monkeypatch.setattr(onnx_embeddings, "available_memory", lambda: 64 << 30)
    models._prepare_embedder(Settings(device="cpu"), model_folder, force=False)
    assert "read-only file system" in capsys.readouterr().err


def test_an_asked_for_onnx_backend_fails_loudly(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(path: Path, **_: object) -> Path:
        raise OSError("read-only file system")

    monkeypatch.setattr(onnx_embeddings, "export_int8", fail)
    with pytest.raises(OSError, match="read-only"):
        models._prepare_embedder(
            Settings(device="cpu", embedding_backend="onnx"), model_folder, force=False
        )


def test_no_export_for_torch_or_on_a_gpu(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = exports(monkeypatch)
    for settings in (
        Settings(device="cpu", embedding_backend="sentence_transformers"),
        Settings(device="cuda"),
    ):
        models._prepare_embedder(settings, model_folder, force=False)
    assert made == []
