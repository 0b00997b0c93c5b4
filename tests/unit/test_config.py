from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from rag.config import Settings, load_settings

pytestmark = pytest.mark.unit


def test_environment_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "lore.yaml"
    config.write_text("top_k: 7\nchunk_size: 500\n")
    monkeypatch.setenv("LORE_CONFIG", str(config))
    monkeypatch.setenv("LORE_TOP_K", "3")
    settings = load_settings()
    assert settings.top_k == 3
    assert settings.chunk_size == 500


def test_data_dir_moves_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LORE_MODELS_DIR", raising=False)
    monkeypatch.setenv("LORE_DATA_DIR", str(tmp_path))
    settings = Settings()
    for path in (settings.chroma_dir, settings.resolved_models_dir, settings.uploads_dir):
        assert path.is_relative_to(tmp_path)


def test_misspelled_yaml_key_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "lore.yaml"
    config.write_text("top_kk: 7\n")
    monkeypatch.setenv("LORE_CONFIG", str(config))
    with pytest.raises(ValidationError, match="top_kk"):
        load_settings()


@pytest.mark.parametrize("name", ["ab", "-bad", "has space", "a..b", "x" * 600])
def test_invalid_collection_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        Settings(collection=name)


def test_overlap_must_be_smaller_than_chunk() -> None:
    with pytest.raises(ValidationError, match="chunk_overlap"):
        Settings(chunk_size=100, chunk_overlap=100)


def test_chroma_path_can_live_outside_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", chroma_path=tmp_path / "index")
    assert settings.chroma_dir == tmp_path / "index"


@pytest.mark.parametrize(
    ("folder", "message"), [("absent", "is not a folder"), ("", "has no config.json")]
)
def test_a_reranker_path_that_is_not_a_model_folder_stops_the_start(
    tmp_path: Path, folder: str, message: str
) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from rag.components.hashing_embeddings import HashingEmbedder
    from rag.container import Lore
    from rag.errors import ConfigError
    from tests.fakes import ScriptedGenerator

    settings = Settings(
        data_dir=tmp_path / "data",
        embedding_backend="hashing",
        reranker_model_path=tmp_path / folder,
    )
    lore = Lore(
        settings, embedder_override=HashingEmbedder(), generator_override=ScriptedGenerator()
    )
    with pytest.raises(ConfigError, match=message), TestClient(create_app(lore=lore)):
        pass


@pytest.mark.parametrize(
    ("field", "value"), [("min_evidence", -0.1), ("min_evidence", 3.5), ("firm_evidence", -1.0)]
)
def test_evidence_thresholds_out_of_range_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


def test_embedder_thresholds_come_from_the_model_unless_set() -> None:
    from rag.container import per_embedder

    assert per_embedder(Settings(), "min_evidence") == 0.915
    assert per_embedder(Settings(), "min_support") > per_embedder(
        Settings(), "min_support_translated"
    )
    # Not measured for a model: as min_score.
    assert (
        per_embedder(Settings(embedding_model="all-minilm-l6-v2"), "min_score_translated", 0.25)
        == 0.25
    )
    assert per_embedder(Settings(), "firm_evidence", float("inf")) == 1.1
    assert per_embedder(Settings(min_evidence=0.5), "min_evidence") == 0.5
    assert per_embedder(Settings(embedding_model="multilingual-e5-small"), "min_evidence") == 0.0
    assert per_embedder(
        Settings(embedding_backend="hashing"), "firm_evidence", float("inf")
    ) == float("inf")


def test_the_example_config_loads_and_matches_the_defaults_it_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    example = Path(__file__).resolve().parents[2] / "lore.example.yaml"
    for name in list(os.environ):
        if name.startswith("LORE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LORE_CONFIG", str(example))
    loaded = load_settings()
    defaults = Settings()
    for field in (
        "auth",
        "max_body_mb",
        "generation_queue",
        "generation_timeout_s",
        "rate_limit_per_minute",
        "audit_retention_days",
        "conversation_retention_days",
        "max_upload_mb",
        "context_tokens",
    ):
        assert getattr(loaded, field) == getattr(defaults, field), field


def test_cpu_kernel_caches_are_capped_unless_already_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.components.embeddings import cap_cpu_kernel_caches

    monkeypatch.delenv("LRU_CACHE_CAPACITY", raising=False)
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")  # an operator's choice
    cap_cpu_kernel_caches()
    assert os.environ["LRU_CACHE_CAPACITY"] == "1"
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "64"


def test_a_blank_database_url_means_one_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORE_DATABASE_URL", "")
    settings = Settings()
    assert settings.database_url is None
    assert not settings.cluster


def test_database_url_must_be_postgresql_and_needs_a_chroma_server() -> None:
    with pytest.raises(ValueError, match="PostgreSQL URL"):
        Settings(database_url="mysql://x@y/z", chroma_host="chroma")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs chroma_host"):
        Settings(database_url="postgresql://x@y/z")  # type: ignore[arg-type]
    assert Settings(database_url="postgresql://x@y/z", chroma_host="c").cluster  # type: ignore[arg-type]


def test_model_servers_come_as_a_comma_list_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORE_LLM_BACKEND", "openai")
    monkeypatch.setenv("LORE_LLM_BASE_URLS", "http://10.0.0.21:8080/v1, http://10.0.0.22:8080/v1")
    assert load_settings().model_servers == ["http://10.0.0.21:8080/v1", "http://10.0.0.22:8080/v1"]
    monkeypatch.setenv("LORE_LLM_BASE_URLS", '["http://a:8080/v1"]')
    assert load_settings().model_servers == ["http://a:8080/v1"]
    monkeypatch.delenv("LORE_LLM_BASE_URLS")
    monkeypatch.setenv("LORE_LLM_BASE_URL", "http://one:8080/v1")
    assert load_settings().model_servers == ["http://one:8080/v1"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"llm_backend": "openai"}, "needs llm_base_url"),
        ({"llm_base_urls": ["localhost:8080"]}, "not an http"),
        ({"llm_base_urls": ["http://a/v1", "http://a/v1"]}, "twice"),
        ({"llm_base_urls": "[http://a/v1"}, "not a JSON list"),
        ({"llm_base_url": "http://a/v1", "llm_base_urls": ["http://b/v1"]}, "not both"),
        ({"llm_base_urls": ["http://a/v1", "http://a/v1/"]}, "twice"),
        ({"rate_limit_url": "postgresql://db/lore"}, "Redis URL"),
        ({"trusted_proxies": ["nginx"]}, "not an IP address"),
    ],
)
def test_bad_model_server_and_limit_settings_are_refused(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**changes)  # type: ignore[arg-type]
