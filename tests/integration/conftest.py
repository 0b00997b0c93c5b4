"""Fixtures that use the real default models, a real Chroma directory and a real uvicorn.

The models and the Chroma and llama.cpp servers come from tests/servers.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rag.governance.access import KeyStore
from tests.servers import chroma_server as chroma_server
from tests.servers import database_url as database_url
from tests.servers import free_port, lore_env, running
from tests.servers import llama_server as llama_server
from tests.servers import models_dir as models_dir
from tests.servers import postgres_server as postgres_server


@dataclass
class Server:
    url: str
    data_dir: Path
    log: Path
    key: str = ""

    @property
    def headers(self) -> dict[str, str]:
        """What a client sends: the admin key made for this server."""
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Server]:
    """`lore serve` in its own process, on a free loopback port, with an empty data dir."""
    data_dir = tmp_path_factory.mktemp("server-data")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir / "server.log"
    _, key = KeyStore(data_dir / "keys.sqlite3").create("tests", "admin")
    command = [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with running(command, f"{url}/healthz", log, lore_env(data_dir, models_dir)):
        yield Server(url, data_dir, log, key)
