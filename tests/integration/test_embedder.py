"""The default embedder's stored bfloat16 copy and its tokenizer, on the real model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ingest.chunking import tokenizer_length
from rag.components.embeddings import SentenceTransformerEmbedder, converted_copy, stored_dtype
from rag.config import Settings
from rag.models import get_spec

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SENTENCES = [
    "Lore answers questions from an organisation's own documents, offline.",
    "长城是中国古代的军事防御工程，全长两万多公里。",
    "The ingest job resumes after a crash without duplicates.",
    "问答系统会为每个答案给出引用的来源。",
]


@pytest.fixture(scope="module")
def linked_model(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default embedder's folder, linked file by file into a scratch folder.

    Copies made beside it then land in the scratch folder, not the shared models folder.
    """
    source = get_spec(Settings().embedding_model).path(models_dir)
    linked = tmp_path_factory.mktemp("models") / source.name
    linked.mkdir()
    for item in source.iterdir():
        (linked / item.name).symlink_to(item)
    return linked


def test_bfloat16_copy_is_made_once_and_remade_when_the_weights_change(linked_model: Path) -> None:
    assert stored_dtype(linked_model) == "float32"
    copy = converted_copy(linked_model, "bfloat16")
    assert copy != linked_model
    assert stored_dtype(copy) == "bfloat16"
    weights = (copy / "model.safetensors").stat()
    assert weights.st_size < (linked_model / "model.safetensors").stat().st_size * 0.55

    assert converted_copy(linked_model, "bfloat16") == copy
    assert (copy / "model.safetensors").stat().st_mtime_ns == weights.st_mtime_ns, "remade"

    marker = copy / "lore-source.json"
    marker.write_text(json.dumps({"size": 1, "mtime_ns": 1}))  # as if the model were reinstalled
    assert converted_copy(linked_model, "bfloat16") == copy
    assert json.loads(marker.read_text())["size"] > 1
    assert converted_copy(linked_model, "float32") == linked_model
    assert not list(linked_model.parent.glob(f".{linked_model.name}.*.*")), "leftover work folder"


def test_the_bfloat16_copy_embeds_like_the_float32_model(linked_model: Path) -> None:
    half = SentenceTransformerEmbedder("gemma", linked_model, device="cpu", dtype="bfloat16")
    full = SentenceTransformerEmbedder("gemma", linked_model, device="cpu", dtype="float32")
    a, b = half.embed_documents(SENTENCES), full.embed_documents(SENTENCES)
    assert a.dtype == np.float32
    assert a.shape == (len(SENTENCES), full.dimension)
    assert (a * b).sum(axis=1).min() > 0.99
    for query in ("Does ingestion survive a crash?", "长城有多长？"):
        qa, qb = np.array(half.embed_query(query)), np.array(full.embed_query(query))
        assert int(np.argmax(a @ qa)) == int(np.argmax(b @ qb))


def test_sentencepiece_counts_match_the_fast_tokenizer(linked_model: Path, tmp_path: Path) -> None:
    json_only = tmp_path / "json-only"
    json_only.mkdir()
    (json_only / "tokenizer.json").symlink_to(linked_model / "tokenizer.json")
    sentencepiece_count = tokenizer_length(str(linked_model))
    fast_count = tokenizer_length(str(json_only))
    texts = [p for f in sorted((REPO / "demo").iterdir()) for p in f.read_text().split("\n\n")]
    texts += [*SENTENCES, "  leading spaces", "mixed 中文 and English, 123 4.5%"]
    assert [sentencepiece_count(t) for t in texts] == [fast_count(t) for t in texts]


def _paragraphs() -> list[str]:
    """Real text in both languages: the demo corpus, and XQuAD's documents when at hand."""
    texts = [p for f in sorted((REPO / "demo").iterdir()) for p in f.read_text().split("\n\n")]
    xquad = REPO.parent / "shared" / "eval" / "xquad" / "docs"
    if xquad.is_dir():
        for path in sorted(xquad.glob("*.md"))[:60]:
            texts += path.read_text().split("\n\n")
    return [t for t in texts if t.strip()]


def test_the_embedder_tokenizes_with_sentencepiece_exactly_as_its_own_tokenizer(
    linked_model: Path,
) -> None:
    from transformers import AutoTokenizer
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    embedder = SentenceTransformerEmbedder("gemma", linked_model, device="cpu")
    light = embedder._model[0].processor
    assert isinstance(light, SentencePieceBackend), "the 315 MB tokenizer.json one is still used"
    own = AutoTokenizer.from_pretrained(str(converted_copy(linked_model, embedder.dtype)))
    texts = _paragraphs()
    assert [light(t)["input_ids"] for t in texts] == [own(t)["input_ids"] for t in texts]
    long_text = " ".join(texts) * 3  # over the 2,048-token limit: truncated alike
    options = {"padding": True, "truncation": True, "max_length": 2048}
    a, b = light([long_text, *SENTENCES], **options), own([long_text, *SENTENCES], **options)
    assert len(a["input_ids"][0]) == 2048
    assert (a["input_ids"], a["attention_mask"]) == (b["input_ids"], b["attention_mask"])

    swapped = embedder.embed_documents(SENTENCES)
    embedder._model[0].processor = own
    assert np.allclose(swapped, embedder.embed_documents(SENTENCES), atol=1e-6)


def test_a_sentencepiece_model_that_splits_differently_is_not_used(
    linked_model: Path, models_dir: Path
) -> None:
    from types import SimpleNamespace

    # MiniLM is not a default model: `make models` doesn't install it on a new machine.
    if not (get_spec("all-minilm-l6-v2").path(models_dir) / "config.json").is_file():
        pytest.skip("all-minilm-l6-v2 is not installed (lore models install all-minilm-l6-v2)")

    from transformers import AutoTokenizer

    from rag.components.embeddings import use_sentencepiece_tokenizer

    other = AutoTokenizer.from_pretrained(str(get_spec("all-minilm-l6-v2").path(models_dir)))
    module = SimpleNamespace(processor=other)
    assert not use_sentencepiece_tokenizer(module, linked_model)  # Gemma's pieces, MiniLM's ids
    assert module.processor is other
    assert not use_sentencepiece_tokenizer(module, get_spec("all-minilm-l6-v2").path(models_dir))
