"""The command line's filter options, on a real data directory with the hashing embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from ingest.pipeline import ingest_file
from rag.config import Settings
from rag.container import Lore

pytestmark = pytest.mark.unit


@pytest.fixture
def env(tmp_path: Path, docs: Path) -> dict[str, str]:
    """Settings for a CLI run whose data directory holds the two sample documents."""
    data = tmp_path / "cli-data"
    lore = Lore(Settings(data_dir=data, embedding_backend="hashing"))
    for path in sorted(docs.iterdir()):
        ingest_file(lore, path, "default")
    lore.manifest.close()
    lore.keywords.close()
    return {"LORE_DATA_DIR": str(data), "LORE_EMBEDDING_BACKEND": "hashing", "LORE_CONFIG": ""}


def test_search_filters_by_type_and_source(env: dict[str, str]) -> None:
    runner = CliRunner()
    by_type = runner.invoke(app, ["search", "port 8000", "--type", "txt", "--json"], env=env)
    assert by_type.exit_code == 0, by_type.output
    assert {Path(row["source"]).name for row in json.loads(by_type.output)} == {"zh.txt"}
    by_source = runner.invoke(
        app, ["search", "长城", "--source", "*/ports.md", "--source", "nowhere/", "--json"], env=env
    )
    assert {Path(row["source"]).name for row in json.loads(by_source.output)} == {"ports.md"}
    later = runner.invoke(app, ["search", "port", "--since", "2999-01-01", "--json"], env=env)
    assert json.loads(later.output) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--since", "soon"], "'soon' is not a date"),
        (["--since", "2024-02-01", "--until", "2024-01-01"], "date range is empty"),
        (["--type", "a/b"], "is not a file type"),
    ],
)
@pytest.mark.parametrize("command", ["search", "ask"])
def test_bad_filter_options_are_a_usage_error_before_any_work(
    tmp_path: Path, command: str, options: list[str], message: str
) -> None:
    data = tmp_path / "untouched"
    result = CliRunner().invoke(
        app, [command, "question", *options], env={"LORE_DATA_DIR": str(data), "LORE_CONFIG": ""}
    )
    assert result.exit_code == 2
    assert message in result.output
    assert not data.exists()


def test_serve_without_auth_refuses_to_bind_beyond_loopback(env: dict[str, str]) -> None:
    every_interface = "0.0.0.0"  # noqa: S104 (the address the server must refuse)
    result = CliRunner().invoke(
        app, ["serve", "--host", every_interface], env={**env, "LORE_AUTH": "false"}
    )
    assert result.exit_code == 2
    assert "loopback" in result.output


def test_keys_are_made_listed_and_revoked_from_the_command_line(env: dict[str, str]) -> None:
    runner = CliRunner()
    made = runner.invoke(
        app, ["keys", "create", "bot", "--role", "reader", "-c", "default", "--json"], env=env
    )
    assert made.exit_code == 0, made.output
    key = json.loads(made.output)
    assert key["key"].startswith(f"lore_{key['key_id']}_")
    listed = runner.invoke(app, ["keys", "list"], env=env)
    assert key["key_id"] in listed.output
    assert key["key"] not in listed.output
    assert runner.invoke(app, ["keys", "revoke", key["key_id"]], env=env).exit_code == 0
    assert "revoked" in runner.invoke(app, ["keys", "list"], env=env).output
    wrong = runner.invoke(app, ["keys", "create", "x", "--role", "owner", "-c", "a1b"], env=env)
    assert wrong.exit_code == 1
    assert "role is one of" in str(wrong.exception)


def test_a_question_over_the_limit_is_refused_naming_the_limit(env: dict[str, str]) -> None:
    # `lore` (api.cli.main) prints a LoreError as "error: <message>" and exits 1; here
    # the error itself is checked, before any model is loaded or document searched.
    from rag.errors import InvalidInput

    runner = CliRunner()
    limit = Settings().max_question_chars
    for command in ("search", "ask"):
        result = runner.invoke(app, [command, "x" * (limit + 1)], env=env)
        assert isinstance(result.exception, InvalidInput), command
        assert f"the limit is {limit}." in str(result.exception)


def test_a_file_whose_name_holds_a_newline_is_refused_saying_why(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Issue 14, item 2: indexed, it broke every line of `lore docs list`.
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "report\nfake line.txt").write_text("Backups run at two.", encoding="utf-8")
    (folder / "fine.txt").write_text("Backups are kept for a month.", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(folder), "--json"], env=env)
    assert "control characters" in result.output
    listed = runner.invoke(app, ["docs", "list"], env=env).output
    assert "fine" in listed
    assert "fake line" not in listed


def test_the_operator_sees_names_and_server_paths(env: dict[str, str], docs: Path) -> None:
    # The command line runs on the server: its JSON is what an admin key gets over HTTP.
    runner = CliRunner()
    listed = json.loads(runner.invoke(app, ["docs", "list", "--json"], env=env).output)
    named = {n: p for d in listed for n, p in zip(d["sources"], d["paths"], strict=True)}
    assert named == {n: str((docs / n).resolve()) for n in ("ports.md", "zh.txt")}
    found = runner.invoke(app, ["search", "port 8000", "--source", "ports.md", "--json"], env=env)
    (row,) = {(r["source"], r["path"]) for r in json.loads(found.output)}
    assert row == ("ports.md", str((docs / "ports.md").resolve()))
    text = runner.invoke(app, ["search", "port 8000", "--source", "ports.md"], env=env).output
    assert str((docs / "ports.md").resolve()) in text


def test_search_in_one_collection_ignores_documents_ingested_into_another(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Issue 14, item 9: keyword statistics once spanned every collection.
    runner = CliRunner()

    def search(question: str) -> list[dict[str, object]]:
        found = runner.invoke(app, ["search", question, "--json"], env=env)
        assert found.exit_code == 0, found.output
        return json.loads(found.output)  # type: ignore[no-any-return]

    questions = ["Which port does the Lore server listen on?", "长城有多长？", "backup data"]
    before = [search(q) for q in questions]
    other = tmp_path / "other"
    other.mkdir()
    for index in range(6):
        (other / f"port-{index}.md").write_text(
            f"# Port {index}\n\nThe server listens on port 8000 and the backup port {index}. "
            "Lore server port data directory backup 长城 长度 公里.\n",
            encoding="utf-8",
        )
    added = runner.invoke(app, ["ingest", str(other), "--collection", "other"], env=env)
    assert added.exit_code == 0, added.output
    assert [search(q) for q in questions] == before


def test_key_audit_and_feedback_commands_load_no_model(tmp_path: Path) -> None:
    # The configured embedder and chat model are not installed: loading either would
    # fail, so these commands pass only if they touch the records alone.
    env = {"LORE_DATA_DIR": str(tmp_path / "data"), "LORE_CONFIG": ""}
    runner = CliRunner()
    for command in (
        ["keys", "create", "bot", "--role", "admin"],
        ["keys", "list"],
        ["audit", "verify"],
        ["audit", "export"],
        ["feedback", "export"],
    ):
        result = runner.invoke(app, command, env=env)
        assert result.exit_code == 0, (command, result.output, result.exception)
    lore = Lore(Settings(data_dir=tmp_path / "data"))
    _ = lore.keys, lore.audit, lore.feedback
    assert not {"embedder", "store", "generator", "retriever", "answerer"} & lore.__dict__.keys()
    lore.close_records()
