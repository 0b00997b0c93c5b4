"""Real models and server processes for the tests that need them (integration tier).

Shared by tests/integration and tests/contract: a conftest there imports the fixtures
it wants from here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from rag.config import Settings, default_data_dir
from rag.models import get_spec, verify

REPO = Path(__file__).resolve().parents[1]
# The small chat model that llama.cpp serves in the tests, in-process or as a server.
CHAT_GGUF = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


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
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """`chroma run` on a free loopback port with an empty database: (host, port)."""
    folder = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    chroma = str(Path(sys.executable).parent / "chroma")
    command = [
        chroma,
        "run",
        "--path",
        str(folder / "db"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {**lore_env(folder, folder), "ANONYMIZED_TELEMETRY": "False"}
    with running(command, f"http://127.0.0.1:{port}/api/v2/heartbeat", folder / "chroma.log", env):
        yield "127.0.0.1", port


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server on the small chat model: its base URL (…/v1)."""
    folder = tmp_path_factory.mktemp("llama-server")
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(models_dir / CHAT_GGUF),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
    ]  # fmt: skip
    env = lore_env(folder, models_dir)
    with running(command, f"http://127.0.0.1:{port}/v1/models", folder / "llama.log", env):
        yield f"http://127.0.0.1:{port}/v1"
