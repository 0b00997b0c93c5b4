"""Real models and server processes for the tests that need them (integration tier).

Shared by tests/integration and tests/contract: a conftest there imports the fixtures
it wants from here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from rag.config import Settings, default_data_dir
from rag.models import get_spec, verify
from rag.postgres.database import upgrade

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


class PostgresServer:
    """A throwaway PostgreSQL cluster (Debian's initdb and pg_ctl) on a free loopback port.

    PostgreSQL refuses to run as root, so as root its folder belongs to the `postgres`
    user and its commands run as that user. `database()` hands out a new database with
    Lore's schema, cloned from a template migrated once.
    """

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.port = free_port()
        # Not under pytest's temporary folders: those are private to root.
        self.folder = Path(tempfile.mkdtemp(prefix="lore-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self._as_root = os.geteuid() == 0
        self._count = 0
        if self._as_root:
            shutil.chown(self.folder, "postgres")
        self._run(["initdb", "-D", str(self.data), "-U", "lore", "--auth=trust", "-E", "UTF8",
                   "--locale=C.UTF-8"])  # fmt: skip
        self.start()
        self.template = self._create("lore_template")
        upgrade(self.template)
        self._sql("postgres", "ALTER DATABASE lore_template WITH is_template true")

    def _run(self, command: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        binary = shutil.which(command[0]) or _postgres_binary(command[0])
        full = [binary, *command[1:]]
        if self._as_root:
            full = ["runuser", "-u", "postgres", "--", *full]
        return subprocess.run(full, check=check, capture_output=True, text=True, timeout=120)

    def url(self, database: str) -> str:
        return f"postgresql://lore@{self.host}:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-c listen_addresses={self.host} -c port={self.port} "
            f"-c unix_socket_directories={self.folder} -c fsync=off -c max_connections=200"
        )
        self._run(
            ["pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"]
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"], check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _sql(self, database: str, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def _create(self, name: str, template: str = "template0") -> str:
        self._sql("postgres", f'CREATE DATABASE "{name}" TEMPLATE {template}')
        return self.url(name)

    def database(self) -> str:
        """The URL of a new database that holds Lore's current schema and nothing else."""
        self._count += 1
        return self._create(f"lore_{self._count}_{os.getpid()}", template="lore_template")

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the test session; take databases with `.database()`."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> str:
    """A new, empty database with Lore's schema, for one test."""
    return postgres_server.database()


def _postgres_binary(name: str) -> str:
    """Debian keeps PostgreSQL's server commands off the PATH, by major version."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        pytest.fail(f"{name} is not installed: run `make system-deps` (Debian's postgresql)")
    return str(found[-1])


class ChromaServer:
    """`chroma run` on a free loopback port, over a folder that outlives a restart."""

    def __init__(self, folder: Path, host: str = "127.0.0.1"):
        self.host = host
        self.port = free_port()
        self.folder = folder
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        chroma = str(Path(sys.executable).parent / "chroma")
        command = [chroma, "run", "--path", str(self.folder / "db"), "--host", self.host]
        env = {**lore_env(self.folder, self.folder), "ANONYMIZED_TELEMETRY": "False"}
        with (self.folder / "chroma.log").open("ab") as sink:
            self._process = subprocess.Popen(
                [*command, "--port", str(self.port)], env=env, stdout=sink, stderr=sink
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                url = f"http://{self.host}:{self.port}/api/v2/heartbeat"
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chroma did not start:\n{(self.folder / 'chroma.log').read_text()}")
            time.sleep(0.3)

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None
