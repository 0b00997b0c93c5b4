"""Schemathesis: requests generated from the OpenAPI schema never get a 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from rag.config import Settings
from rag.governance.access import KeyStore
from tests.unit.test_service import SlowGenerator, live

pytestmark = pytest.mark.unit

KEY: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    root = tmp_path_factory.mktemp("fuzz")
    docs = root / "docs"
    docs.mkdir()
    (docs / "ports.md").write_text("# Ports\n\nThe Lore server listens on port 8000.\n")
    config = Settings(
        auth=True,
        data_dir=root / "data",
        models_dir=root / "models",
        min_score=0.05,
        min_evidence=0.0,
        rate_limit_per_minute=0,
        generation_timeout_s=10,
    )
    _, KEY["admin"] = KeyStore(config.data_dir / "keys.sqlite3").create("fuzz", "admin")
    with live(config, SlowGenerator(delay=0.0, words=5), docs, key=KEY["admin"]) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


def test_no_request_gets_a_server_error(api_schema: schemathesis.BaseSchema) -> None:
    """Every operation, with bodies, parameters and headers generated from the schema."""
    checked = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        # Revoking keys would revoke the key the fuzzing uses; that route has its own tests.
        if operation.method.upper() == "DELETE" and operation.path.startswith("/v1/keys/"):
            continue

        @given(operation.as_strategy())
        @settings(
            max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def call(case: schemathesis.Case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {KEY['admin']}"}, timeout=60)
            assert response.status_code < 500, (case.method, case.path, response.text[:500])
            assert "Traceback" not in response.text

        call()
        checked += 1
    assert checked >= 20


def test_schema_documents_every_route_with_stable_ids(api_schema: schemathesis.BaseSchema) -> None:
    raw = api_schema.raw_schema
    ids = [op["operationId"] for path in raw["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    assert "openai-chat_completions" in ids
    assert raw["paths"]["/v1/chat/completions"]["post"]["requestBody"]
