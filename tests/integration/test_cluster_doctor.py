"""`lore doctor` on a cluster: PostgreSQL and a Chroma server checked through the same
interfaces as a data directory, a lost keyword row found and rebuilt."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from ingest.doctor import examine, repair
from ingest.pipeline import ingest_paths
from rag.components.hashing_embeddings import HashingEmbedder
from rag.config import Settings
from rag.container import Lore
from tests.fakes import ScriptedGenerator

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


@pytest.fixture
def lore(tmp_path: Path, database_url: str, chroma_server: tuple[str, int]) -> Iterator[Lore]:
    host, port = chroma_server
    settings = Settings(
        data_dir=tmp_path / "data",
        embedding_backend="hashing",
        llm_backend="openai",
        llm_base_url="http://127.0.0.1:9/v1",
        database_url=SecretStr(database_url),
        chroma_host=host,
        chroma_port=port,
        min_free_mb=1,
    )
    lore = Lore(
        settings, embedder_override=HashingEmbedder(), generator_override=ScriptedGenerator()
    )
    yield lore
    lore.close_records()
    lore.database.close()


def test_doctor_checks_a_cluster_and_rebuilds_its_keyword_index(lore: Lore, docs: Path) -> None:
    collection = f"doctor-{uuid.uuid4().hex[:12]}"
    ingest_paths(lore, [docs], collection)
    report = examine(lore)
    assert report.healthy, [f.message for f in report.findings if f.severity == "problem"]
    assert report.collections[collection].documents == 2

    with lore.database.transaction() as conn:
        conn.execute(
            "DELETE FROM keyword_chunks WHERE chunk_id = (SELECT min(chunk_id) FROM "
            "keyword_chunks WHERE collection = (SELECT id FROM keyword_collections "
            "WHERE name = %s))",
            (collection,),
        )
    report = examine(lore)
    assert not report.healthy
    assert report.collections[collection].short_in_keywords

    done = repair(lore, report)
    assert any("rebuilt the keyword index" in line for line in done)
    assert examine(lore).healthy
