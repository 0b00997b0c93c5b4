"""Cluster mode's database as a user meets it: `lore db`, a bad or unreachable
database_url, a schema that is not this release's (issue 16). No model is loaded."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from rag.postgres.database import head_revision
from tests.servers import REPO, PostgresServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def lore(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")}
    env.update(LORE_DATABASE_URL=url, LORE_CHROMA_HOST="127.0.0.1")
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def refused(run: subprocess.CompletedProcess[str]) -> str:
    """What a refused command said: exit status 1, one sentence, no trace."""
    assert run.returncode == 1, run.stdout + run.stderr
    said = run.stdout + run.stderr
    assert "Traceback" not in said, said
    return said


def test_an_unreachable_database_is_a_sentence_not_a_trace() -> None:
    url = f"postgresql://lore@127.0.0.1:{free_port()}/lore"
    for command in (["db", "status"], ["serve", "--port", str(free_port())], ["keys", "list"]):
        said = refused(lore(url, *command))
        assert "is unavailable" in said, (command, said)
        assert f"127.0.0.1:{url.split(':')[2].split('/')[0]}" in said


def test_a_wrong_database_name_says_what_the_server_said(postgres_server: PostgresServer) -> None:
    said = refused(lore(postgres_server.url("no_such_db"), "db", "status"))
    assert 'database "no_such_db" does not exist' in said


def test_a_database_without_the_schema_names_the_command_then_upgrades(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.url("empty_one")
    with psycopg.connect(postgres_server.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE empty_one")
    said = refused(lore(url, "db", "status"))
    assert "lore db upgrade" in said
    said = refused(lore(url, "serve", "--port", str(free_port())))
    assert "lore db upgrade" in said

    upgraded = lore(url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"none → {head_revision()}" in upgraded.stdout
    again = lore(url, "db", "upgrade")
    assert "up to date" in again.stdout
    status = lore(url, "db", "status")
    assert status.returncode == 0, status.stderr
    assert head_revision() in status.stdout


def test_a_schema_from_a_newer_release_is_refused(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    said = refused(lore(database_url, "db", "status"))
    assert "newer release" in said
    assert "lore db upgrade" not in said


def test_database_url_without_a_chroma_server_is_refused() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")}
    env["LORE_DATABASE_URL"] = "postgresql://lore@127.0.0.1:5432/lore"
    run = subprocess.run(
        [sys.executable, "-m", "api.cli", "docs", "list"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode != 0
    assert "needs chroma_host" in run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
