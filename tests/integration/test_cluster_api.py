"""The HTTP API in cluster mode when PostgreSQL goes away and comes back (issue 16): each
request in between is a 503 with Retry-After and Lore's error JSON, never a trace, and
service resumes within a few Retry-After periods of the restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from rag.components.hashing_embeddings import HashingEmbedder
from rag.config import Settings
from rag.container import Lore
from tests.fakes import ScriptedGenerator
from tests.servers import PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


@pytest.fixture
def cluster_lore(
    tmp_path: Path, database_url: str, chroma_server: tuple[str, int]
) -> Iterator[Lore]:
    host, port = chroma_server
    settings = Settings(
        data_dir=tmp_path / "data",
        embedding_backend="hashing",
        database_url=SecretStr(database_url),
        chroma_host=host,
        chroma_port=port,
        min_score=0.0,
        translate_questions=False,
    )
    lore = Lore(
        settings, embedder_override=HashingEmbedder(), generator_override=ScriptedGenerator()
    )
    yield lore
    lore.database.close()


def test_a_lost_database_is_a_503_with_retry_after_then_service_resumes(
    cluster_lore: Lore, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    _, key = cluster_lore.keys.create("tests", "admin")
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(lore=cluster_lore)) as client:
        assert client.get("/v1/collections", headers=headers).status_code == 200
        postgres_server.stop()
        try:
            for path in ("/v1/collections", "/v1/ingest/jobs"):
                response = client.get(path, headers=headers)
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"] == "5"
                body = response.json()
                assert body["code"] == "database_unavailable"
                assert "unavailable" in body["message"]
                assert "Traceback" not in response.text
        finally:
            postgres_server.start()
        # Back within a few Retry-After periods (the pool reconnects with a backoff).
        deadline = time.monotonic() + 20
        while (status := client.get("/v1/collections", headers=headers).status_code) == 503:
            assert time.monotonic() < deadline, "still 503 long after PostgreSQL came back"
            time.sleep(1)
        assert status == 200
