"""Fixtures that use the real default models, a real Chroma directory and a real uvicorn."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from rag.access import KeyStore
from rag.config import Settings, default_data_dir
from rag.models import get_spec, verify

REPO = Path(__file__).resolve().parents[2]


def installed_models_dir() -> Path:
    """Where `make test` installed the default models (shared with `make run`)."""
    explicit = os.environ.get("LORE_MODELS_DIR")
    return Path(explicit) if explicit else default_data_dir() / "models"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    folder = installed_models_dir()
    defaults = Settings(models_dir=folder)
    for name in (defaults.chat_model, defaults.embedding_model):
        verify(get_spec(name), folder)  # raises ModelMissing naming the fix
    return folder


def lore_env(data_dir: Path, models_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")}
    env.update({"LORE_DATA_DIR": str(data_dir), "LORE_MODELS_DIR": str(models_dir)})
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


@contextmanager
def running(command: list[str], ready_url: str, log: Path, env: dict[str, str]) -> Iterator[None]:
    """Run a server process until the block ends; wait until `ready_url` answers 200."""
    with log.open("w") as sink:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 180
        try:
            while True:
                if process.poll() is not None:
                    pytest.fail(f"{command[0:3]} exited early:\n{log.read_text()[-3000:]}")
                try:
                    if httpx.get(ready_url, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"{command[0:3]} did not start in time:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


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
