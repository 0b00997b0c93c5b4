"""`lore docs` and `/v1/documents` are one use case (ingest/documents.py) behind two
interfaces: they send the same JSON, delete the same things and hide the same documents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from ingest.pipeline import ingest_file
from rag.container import Lore
from rag.errors import NotFound

pytestmark = pytest.mark.unit


@dataclass
class Both:
    """The HTTP API and the command line, over one data directory."""

    client: TestClient
    lore: Lore
    env: dict[str, str]

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=self.env)

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def upload(self, path: Path) -> dict[str, Any]:
        with path.open("rb") as handle:
            response = self.client.post("/v1/documents", files={"file": (path.name, handle)})
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def both(lore: Lore) -> Iterator[Both]:
    # Auth is off, so the API's caller is an admin, as the command line's operator is.
    settings = lore.settings
    env = {
        "LORE_CONFIG": "",
        "LORE_AUTH": "false",
        "LORE_DATA_DIR": str(settings.data_dir),
        "LORE_MODELS_DIR": str(settings.models_dir),
        "LORE_EMBEDDING_BACKEND": "hashing",
    }
    with TestClient(create_app(lore=lore)) as client:
        yield Both(client, lore, env)


def test_docs_show_prints_what_the_api_sends(both: Both, docs: Path) -> None:
    doc_id = both.upload(docs / "ports.md")["doc_id"]
    sent = both.client.get(f"/v1/documents/{doc_id}")
    assert sent.status_code == 200, sent.text
    printed = both.cli_json("docs", "show", doc_id)
    assert printed == sent.json()
    chunks = printed["chunk_texts"]
    assert {"chunk_id", "page", "heading", "text"} == set(chunks[0])
    assert any(chunk["heading"] for chunk in chunks)


def test_docs_list_prints_what_the_api_sends(both: Both, docs: Path) -> None:
    both.upload(docs / "ports.md")
    both.upload(docs / "zh.txt")
    sent = both.client.get("/v1/documents").json()
    assert len(sent) == 2
    assert both.cli_json("docs", "list", "--json") == sent


def _delete(both: Both, via: str, doc_id: str) -> Any:
    if via == "api":
        response = both.client.delete(f"/v1/documents/{doc_id}")
        assert response.status_code == 200, response.text
        return response.json()
    return both.cli_json("docs", "delete", doc_id, "--json")


@pytest.mark.parametrize("via", ["api", "cli"])
def test_deleting_an_upload_removes_its_uploaded_copy(both: Both, docs: Path, via: str) -> None:
    uploaded = both.upload(docs / "ports.md")
    copy = Path(uploaded["path"])
    assert copy.is_file()
    deleted = _delete(both, via, uploaded["doc_id"])
    assert deleted == {
        "doc_id": uploaded["doc_id"],
        "deleted_chunks": uploaded["chunks"],
        "sources": ["ports.md"],
        "paths": [str(copy)],
    }
    assert not copy.exists()
    assert both.client.get("/v1/documents").json() == []
    assert (docs / "ports.md").is_file()


@pytest.mark.parametrize("via", ["api", "cli"])
def test_deleting_a_document_ingested_from_a_folder_keeps_its_file(
    both: Both, docs: Path, via: str
) -> None:
    result = ingest_file(both.lore, docs / "ports.md", "default")
    deleted = _delete(both, via, result.doc_id)
    assert deleted["deleted_chunks"] == result.chunks
    assert (docs / "ports.md").is_file()
    assert both.client.get(f"/v1/documents/{result.doc_id}").status_code == 404


def test_a_document_being_deleted_is_hidden_from_both_interfaces(both: Both, docs: Path) -> None:
    kept = both.upload(docs / "ports.md")["doc_id"]
    going = both.upload(docs / "zh.txt")["doc_id"]
    both.lore.manifest.retire("default", going)  # as a delete interrupted midway leaves it

    assert [d["doc_id"] for d in both.client.get("/v1/documents").json()] == [kept]
    for method in ("GET", "DELETE"):
        assert both.client.request(method, f"/v1/documents/{going}").status_code == 404
    assert both.client.get(f"/v1/documents/{going}/file").status_code == 404

    assert [d["doc_id"] for d in both.cli_json("docs", "list", "--json")] == [kept]
    for command in ("show", "delete"):
        refused = both.cli("docs", command, going)
        assert isinstance(refused.exception, NotFound), command
        assert str(refused.exception) == f"Document '{going}' is not in collection 'default'."


def test_listing_a_missing_collection_is_not_found_in_both_interfaces(both: Both) -> None:
    sent = both.client.get("/v1/documents", params={"collection": "nowhere"})
    assert sent.status_code == 404
    refused = both.cli("docs", "list", "-c", "nowhere")
    assert isinstance(refused.exception, NotFound)
    assert str(refused.exception) == sent.json()["message"]
