"""Real models and server processes for the tests that need them (integration tier).

Shared by tests/integration and tests/contract: a conftest there imports the fixtures
it wants from here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at `host` now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
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
        self.port = free_port(host)
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
        self.port = free_port(host)
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


# -- a cluster of processes, each on its own loopback address ---------------------------
# Linux routes all of 127.0.0.0/8 to the loopback interface, so each server below may bind
# an address of its own (127.0.0.2, 127.0.0.3, ...) and act as a host of its own: a
# balancer's upstream, a client address a replica sees, one server killed apart from the rest.


class ServerProcess:
    """One server process of the tests, in a session of its own (so that it and any child
    of it are signalled together), its output appended to `log`."""

    def __init__(self, name: str, log: Path):
        self.name = name
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self, command: list[str], env: dict[str, str]) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def tail(self, chars: int = 4000) -> str:
        """The end of the log, for a failure message."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        """Return once `ready()` holds; fail the test, the process killed, if the process
        exits first or `timeout` seconds pass."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                code = self.process.returncode
                pytest.fail(f"{self.name} exited ({code}) before it was ready:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"{self.name} was not ready within {timeout:g} s:\n{self.tail()}")
            time.sleep(0.2)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, to the process and whatever it started; return once it is gone."""
        if self.process is None or self.process.poll() is not None:
            return  # gone and reaped: its id may be another process's by now
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 30, signum: int = signal.SIGTERM) -> None:
        """`signum` to the process; SIGKILL to all of it if it has not exited in `timeout` s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signum)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        self.kill()


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness check: `url` answers 200."""

    def check() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    return check


def tcp_open(host: str, port: int) -> Callable[[], bool]:
    """A readiness check: something accepts TCP connections at `host`:`port`."""

    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False

    return check


def system_binary(name: str) -> str:
    """A Debian binary the cluster tests run (`make system-deps` installs them)."""
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if found is None:
        pytest.fail(f"{name} is not installed: run `make system-deps`")
    return found


class RedisServer:
    """A throwaway `redis-server` on a free port of `host`, keeping nothing on disk."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.port = free_port(host)
        self.folder = Path(tempfile.mkdtemp(prefix="lore-redis-"))
        self._server = ServerProcess(f"redis-server on {host}", self.folder / "redis.log")
        command = [
            system_binary("redis-server"),
            "--bind", host, "--port", str(self.port), "--dir", str(self.folder),
            "--save", "", "--appendonly", "no", "--protected-mode", "no",
        ]  # fmt: skip
        self._server.spawn(command, {k: v for k, v in os.environ.items() if k != "REDIS_URL"})
        self._server.wait_until(self._pong, timeout=30)

    def _pong(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def close(self) -> None:
        self._server.terminate(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


class LlamaServer:
    """llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`) on the small
    chat model, on a free port of `host`.

    `--interrupt_requests False`: otherwise a second request arriving cuts the stream of
    the one being generated short. Ready is `/docs` answering, not `/v1/models`, which
    waits for the model's lock behind any generation.
    """

    def __init__(self, host: str, models_dir: Path, threads: int = 1, folder: Path | None = None):
        self.host = host
        self.port = free_port(host)
        self.models_dir = models_dir
        self.threads = threads
        self.folder = folder or Path(tempfile.mkdtemp(prefix="lore-llama-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self._server = ServerProcess(f"llama.cpp server on {host}", self.folder / "llama.log")
        self.start()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> None:
        """Start it (again, on the same address) and wait until it serves."""
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.models_dir / CHAT_GGUF),
            "--host", self.host, "--port", str(self.port),
            "--n_ctx", "4096",
            "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads),
            "--interrupt_requests", "False",
        ]  # fmt: skip
        self._server.spawn(command, lore_env(self.folder, self.models_dir))
        self._server.wait_until(http_ok(f"http://{self.host}:{self.port}/docs"), timeout=180)

    @property
    def alive(self) -> bool:
        return self._server.alive

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-generation, its connections reset."""
        self._server.kill()

    def close(self) -> None:
        self._server.terminate(timeout=10)


def lore_command() -> list[str]:
    """How to run the `lore` command line of this checkout's virtual environment."""
    script = Path(sys.executable).parent / "lore"
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


def run_lore(
    env: dict[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`lore ARGS...` in the environment `env`, as an operator runs it: its output
    captured, its exit status left to the caller."""
    return subprocess.run(
        [*lore_command(), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class LoreReplica:
    """`lore serve` on a free port of `host`: one API replica of a cluster.

    `env` is the whole environment (the LORE_* settings shared by the cluster plus the
    usual variables); the replica gets a data folder of its own, as on a machine of its
    own. Ready is `/readyz` answering 200. It keeps its address and port across
    `kill()`/`stop()` and `start()`.
    """

    def __init__(self, host: str, env: dict[str, str], folder: Path | None = None):
        self.host = host
        self.port = free_port(host)
        self.folder = folder or Path(tempfile.mkdtemp(prefix="lore-replica-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.env = {**env, "LORE_DATA_DIR": str(self.folder / "data")}
        self._server = ServerProcess(f"lore serve on {host}", self.folder / "serve.log")
        self.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self._server.log

    @property
    def alive(self) -> bool:
        return self._server.alive

    def start(self, timeout: float = 180) -> None:
        """Start it and wait until `/readyz` answers 200 (the test fails, with the log's
        tail, if it does not within `timeout` seconds)."""
        command = [*lore_command(), "serve", "--host", self.host, "--port", str(self.port)]
        self._server.spawn(command, self.env)
        self._server.wait_until(http_ok(f"{self.url}/readyz"), timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: the replica vanishes, its requests in flight cut off."""
        self._server.kill()

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM, and wait for the graceful shutdown (SIGKILL after `timeout` s)."""
        self._server.terminate(timeout=timeout)

    def close(self) -> None:
        self.stop(timeout=15)


class Nginx:
    """nginx with Lore's shipped configuration (docs/deploy/nginx.conf), listening on a
    free port of `host` and balancing the `upstreams` ("host:port" each).

    The shipped `upstream lore_api` keeps its options (the replicas' `max_fails` and
    `fail_timeout`); only its `server` lines and the `listen` line are replaced. nginx
    connects to the replicas from `host` (`proxy_bind`), as a balancer on a machine of its
    own would, so the replicas' `trusted_proxies` name `host`.
    """

    SHIPPED = REPO / "docs" / "deploy" / "nginx.conf"

    def __init__(self, host: str, upstreams: list[str], folder: Path | None = None):
        self.host = host
        self.port = free_port(host)
        self.folder = folder or Path(tempfile.mkdtemp(prefix="lore-nginx-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        site = self.folder / "lore.conf"
        site.write_text(rewritten_site(self.SHIPPED.read_text(), host, self.port, upstreams))
        main = self.folder / "nginx.conf"
        main.write_text(self._main_config(site))
        # Its error log goes to stderr, which is this log.
        self._server = ServerProcess(f"nginx on {host}", self.folder / "nginx.log")
        command = [
            system_binary("nginx"),
            "-p", str(self.folder), "-c", str(main), "-e", "stderr", "-g", "daemon off;",
        ]  # fmt: skip
        self._server.spawn(command, dict(os.environ))
        self._server.wait_until(tcp_open(host, self.port), timeout=30)

    def _main_config(self, site: Path) -> str:
        d = self.folder
        # As root, the workers would otherwise run as `nobody`, who cannot use this folder.
        user = "user root;\n" if os.geteuid() == 0 else ""
        temps = "".join(
            f"    {kind}_temp_path {d / (kind + '_temp')};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return (
            f"{user}worker_processes 1;\n"
            f"pid {d / 'nginx.pid'};\n"
            "error_log stderr info;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "    log_format upstreams '$request_method $request_uri $status "
            "upstream=$upstream_addr upstream_status=$upstream_status';\n"
            f"    access_log {d / 'access.log'} upstreams;\n"
            f"{temps}"
            f"    proxy_bind {self.host};\n"
            f"    include {site};\n"
            "}\n"
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def access_log(self) -> Path:
        """One line a request: method, URI, status, the replicas tried and their statuses."""
        return self.folder / "access.log"

    def close(self) -> None:
        self._server.terminate(timeout=10)


def rewritten_site(shipped: str, host: str, port: int, upstreams: list[str]) -> str:
    """The shipped nginx site with `listen host:port` and one `server` line an upstream
    in `upstream lore_api { }`, each with the options of the shipped first one."""
    start = shipped.find("upstream lore_api {")
    end = shipped.find("}", start)
    if start < 0 or end < 0:
        pytest.fail("docs/deploy/nginx.conf has no `upstream lore_api { ... }` block")
    block = shipped[start:end]
    servers = list(re.finditer(r"^([ \t]*)server[ \t]+\S+([^;\n]*);[ \t]*\n", block, re.M))
    if not servers:
        pytest.fail("docs/deploy/nginx.conf's `upstream lore_api` has no `server` line")
    indent, options = servers[0].group(1), servers[0].group(2)
    lines = "".join(f"{indent}server {u}{options};\n" for u in upstreams)
    first, last = servers[0], servers[-1]
    if "".join(m.group(0) for m in servers) != block[first.start() : last.end()]:
        pytest.fail("docs/deploy/nginx.conf's upstream `server` lines are not consecutive")
    block = block[: first.start()] + lines + block[last.end() :]
    site = shipped[:start] + block + shipped[end:]
    site, listens = re.subn(r"^([ \t]*)listen[ \t]+[^;\n]+;", rf"\1listen {host}:{port};", site,
                            flags=re.M)  # fmt: skip
    if listens != 1:
        pytest.fail(f"docs/deploy/nginx.conf has {listens} `listen` lines, not 1")
    return site


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis server for the test session (shared rate limits)."""
    server = RedisServer("127.0.0.1")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url
