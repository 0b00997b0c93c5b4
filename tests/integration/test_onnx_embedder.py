"""The int8 ONNX embedder (rag/components/onnx_embeddings.py) against the real model:
close to torch's vectors, refused when its copy drifts, chosen by `auto` on a CPU.

The copy is the one `make models` made (`lore models install`); the embedder contract
(tests/contract/test_embedder.py) runs on it too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.components.embeddings import SentenceTransformerEmbedder
from rag.components.onnx_embeddings import (
    MANIFEST,
    MODEL_FILE,
    TOKENIZER_FILE,
    OnnxEmbedder,
    SentencePieceTokenizer,
    export_is_current,
    onnx_folder,
)
from rag.config import Settings
from rag.container import Lore, onnx_embedder_name, resolve_embedding_backend
from rag.errors import ConfigError
from rag.models import get_spec

pytestmark = pytest.mark.integration

MODEL = "embeddinggemma-300m"
TEXTS = [
    "The Lore server listens on port 8000 by default.",
    "长城是中国古代的军事防御工程，全长两万多公里。",
    "Backups are taken every night and kept for ninety days.",
]


@pytest.fixture(scope="module")
def copy(models_dir: Path) -> Path:
    folder = onnx_folder(get_spec(MODEL).path(models_dir))
    assert export_is_current(get_spec(MODEL).path(models_dir)), "make models exports it"
    return folder


@pytest.fixture(scope="module")
def onnx(copy: Path) -> OnnxEmbedder:
    return OnnxEmbedder(onnx_embedder_name(MODEL), copy)


def altered_copy(copy: Path, tmp_path: Path, change: str) -> Path:
    """A copy whose model files are the real ones and whose manifest is changed."""
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in (MODEL_FILE, TOKENIZER_FILE):
        (folder / name).symlink_to(copy / name)
    manifest = json.loads((copy / MANIFEST).read_text())
    probe = manifest["probes"][1]
    if change == "vector":
        probe["vector"] = [-x for x in probe["vector"]]
    else:
        probe["ids"] = probe["ids"][:-2] + probe["ids"][-1:]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def test_onnx_vectors_are_close_to_the_torch_models(onnx: OnnxEmbedder, models_dir: Path) -> None:
    torch = SentenceTransformerEmbedder(MODEL, get_spec(MODEL).path(models_dir), dtype="float32")
    cosines = np.sum(onnx.embed_documents(TEXTS) * torch.embed_documents(TEXTS), axis=1)
    assert cosines.min() > 0.97, cosines
    query = np.asarray(onnx.embed_query("How long is the Great Wall?"))
    assert float(query @ np.asarray(torch.embed_query("How long is the Great Wall?"))) > 0.97


def test_a_copy_whose_probe_vectors_drift_is_refused_with_the_fix(
    copy: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        ConfigError, match=r"drifts from the model.*lore models install embeddinggemma-300m"
    ):
        OnnxEmbedder(MODEL, altered_copy(copy, tmp_path, "vector"))


def test_a_copy_that_splits_text_otherwise_is_refused(copy: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="splits text differently"):
        OnnxEmbedder(MODEL, altered_copy(copy, tmp_path, "ids"))


def test_a_missing_copy_names_the_command_that_makes_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lore models install"):
        OnnxEmbedder(MODEL, tmp_path / "nothing")


def test_auto_runs_onnx_on_a_cpu_for_new_data(models_dir: Path, tmp_path: Path) -> None:
    settings = Settings(models_dir=models_dir, data_dir=tmp_path, device="cpu")
    assert resolve_embedding_backend(settings) == "onnx"
    assert Lore(settings).embedder_name == onnx_embedder_name(MODEL)


def test_auto_keeps_torch_where_the_collections_were_built_with_it(models_dir: Path) -> None:
    settings = Settings(models_dir=models_dir, device="cpu")
    assert resolve_embedding_backend(settings, lambda: {MODEL}) == "sentence_transformers"
    both = {MODEL, onnx_embedder_name(MODEL)}
    assert resolve_embedding_backend(settings, lambda: both) == "onnx"


def test_auto_runs_torch_on_a_gpu_and_for_models_without_a_copy(
    models_dir: Path, tmp_path: Path
) -> None:
    assert resolve_embedding_backend(Settings(models_dir=models_dir, device="cuda")) == (
        "sentence_transformers"
    )
    model = tmp_path / "model"
    shutil.copytree(
        get_spec(MODEL).path(models_dir), model, ignore=shutil.ignore_patterns("*.safetensors")
    )
    (model / TOKENIZER_FILE).unlink()  # a WordPiece-like folder: nothing to export
    settings = Settings(models_dir=models_dir, embedding_model_path=model, device="cpu")
    assert resolve_embedding_backend(settings) == "sentence_transformers"


def test_a_torch_collection_keeps_working_under_auto(models_dir: Path, tmp_path: Path) -> None:
    torch_settings = Settings(
        models_dir=models_dir, data_dir=tmp_path, embedding_backend="sentence_transformers"
    )
    Lore(torch_settings).store.create_collection("handbook")  # records the torch model
    assert Lore(Settings(models_dir=models_dir, data_dir=tmp_path)).embedder_name == MODEL


def test_the_tokenizer_cuts_a_long_text_to_the_models_length_keeping_both_ends(
    copy: Path,
) -> None:
    manifest = json.loads((copy / MANIFEST).read_text())
    tokenizer = SentencePieceTokenizer(
        copy / TOKENIZER_FILE, bos_id=manifest["bos_id"], eos_id=manifest["eos_id"], max_length=8
    )
    ids = tokenizer.ids("a long text " * 50)
    assert len(ids) == 8
    assert (ids[0], ids[-1]) == (manifest["bos_id"], manifest["eos_id"])
    assert tokenizer.ids("<bos>")[1:-1] != [manifest["bos_id"]], "spelled out, not the token"


def test_on_a_gpu_auto_embeds_with_torch_on_cuda(models_dir: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no GPU here")
    lore = Lore(Settings(models_dir=models_dir, data_dir=tmp_path))
    assert lore.embedding_backend == "sentence_transformers"
    assert lore.embedder.embed_documents(TEXTS).shape == (len(TEXTS), 768)
