"""Fixtures: a real redis-server on a free loopback port in a temp dir, and real `sentq worker` subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

# One BLAS thread per process (numpy, scipy, scikit-learn, here and in every server and worker a test starts): the
# suite runs a pytest process per core, each with workers of its own, and BLAS threads spinning beside them only
# burn the cores the others need (the bench runs its workers so too).
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
# Anything in a test process that reads its settings from the environment without being pointed at a test's own
# server gets a port nothing listens on: it fails loudly instead of writing to the machine's Redis on 6379.
os.environ["SENTQ_BROKER_URL"] = "redis://127.0.0.1:1/0"

REPO = Path(__file__).resolve().parent.parent
SENTQ = [sys.executable, "-m", "sentq.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server this test session started and owns (so tests may kill and restart it)."""

    directory: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = False
    # Addresses to listen on, space-separated (tests/netns.py adds its bridge's); PING comes over 127.0.0.1.
    bind: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run `make setup` (or `sudo apt-get install redis-server`)")
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            *self.bind.split(),
            # Without a password Redis answers other addresses only with protected mode off (tests/netns.py: a
            # private bridge only the test's own namespaces reach).
            "--protected-mode",
            "yes" if self.bind == "127.0.0.1" else "no",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        self.proc = launch_redis(args, client, self.directory / "redis.log")
        client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=2)


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, *, timeout: float = 10) -> None:
    """Signal one subprocess (a server) and wait for it; SIGKILL it after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll state (never a sleep that decides the outcome) until ``predicate`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.02)


def launch_redis(args: list[str], client: redis.Redis, log: Path, *, timeout: float = 10) -> subprocess.Popen[bytes]:
    """Start redis-server with ``args`` and return it once ``client`` gets an answer to PING (its log tail if not)."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server did not start:\n{tail}") from None
            time.sleep(0.05)


# The ledger's clocks for tests that wait on them (a dead host, a lost message, Redis restarted, a stalled job): a
# recovery the defaults bound at 15-20 s takes a few seconds. `make faults` runs the worst scenarios with the
# defaults (pytest --default-clocks), 20 times each: the bound as shipped.
FAST_CLOCKS = {
    "SENTQ_HEARTBEAT": "0.5",
    "SENTQ_HEARTBEAT_TTL": "3",
    "SENTQ_RECONCILE_EVERY": "0.5",
    "SENTQ_RECONCILE_LOCK_TTL": "3",
    "SENTQ_LOST_AFTER": "3",
    "SENTQ_STALL_AFTER": "2",
}


# The modules whose tests start servers of their own and wait on them, longest first: collected first, they start
# first, and on -n 2 (worksteal) the last tests to run are short ones; the suite's wall time is its slowest worker's.
LONG_FIRST = (
    "test_faults",
    "test_hosts",
    "test_sentinel",
    "test_rabbitmq",
    "test_secure_redis",
    "test_beat",
    "test_api_schema",
    "test_installed",
    "test_deploy",
    "test_console",
    "test_console_views",
    "test_figures",
    "test_limits",
    "test_console_guards",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(LONG_FIRST)))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--default-clocks",
        action="store_true",
        help="run the tests that take the clocks fixture with the ledger's default clocks (make faults)",
    )


@pytest.fixture
def clocks(request: pytest.FixtureRequest) -> dict[str, str]:
    """SENTQ_* settings for the ledger's clocks: FAST_CLOCKS, or none (the defaults) under --default-clocks."""
    return {} if request.config.getoption("--default-clocks") else dict(FAST_CLOCKS)


def base_env(url: str, **extra: str) -> dict[str, str]:
    """The environment for a sentq subprocess aimed at the test Redis (no SENTQ_* from the caller leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTQ_")}
    env.update(SENTQ_BROKER_URL=url, SENTQ_DATA_DIR=str(REPO / "data"), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Worker:
    """A real `sentq worker` subprocess (prefork), as an operator runs it."""

    url: str
    log_path: Path
    name: str
    concurrency: int = 2
    env_extra: dict[str, str] = field(default_factory=dict)
    # A whole environment and working directory of their own (a test host), instead of base_env in the checkout.
    env: dict[str, str] | None = None
    cwd: Path | None = None
    # Run through this command first (a test host in a network namespace: ["ip", "netns", "exec", NAME]).
    prefix: list[str] = field(default_factory=list)
    queues: str | None = None  # `sentq worker -Q` (default: the scoring and retrain queues)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 60) -> Worker:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = [
            *self.prefix,
            *SENTQ,
            "worker",
            "-c",
            str(self.concurrency),
            "-n",
            self.name,
            "-l",
            "INFO",
            *(["-Q", self.queues] if self.queues else []),
            "--",
            "--without-gossip",
            "--without-mingle",
        ]
        self.proc = subprocess.Popen(
            cmd,
            env=self.env if self.env is not None else base_env(self.url, **self.env_extra),
            cwd=self.cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.output()}")
            if b"ready." in self.log_path.read_bytes():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker did not become ready in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def pool_pids(self) -> list[int]:
        """The prefork child processes (the ones that run tasks)."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_group(self.proc, sig, timeout=20)
        self.proc = None
        if hasattr(self, "log"):
            self.log.close()


def stop_group(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, *, timeout: float) -> None:
    """Signal a subprocess started with start_new_session (and all it forked); SIGKILL it after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SENTQ_* setting of the developer's shell reaches a test."""
    for name in list(os.environ):
        if name.startswith("SENTQ_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sentq-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def installed(tmp_root: Path) -> Any:
    """sentq's wheel, built once per session (offline) and installed into a directory of its own (tests/hosts.py)."""
    from tests.hosts import install_wheel

    return install_wheel(tmp_root / "installed")


@pytest.fixture(scope="session")
def redis_server(tmp_root: Path) -> Iterator[RedisServer]:
    """One redis-server for the session; tests that kill Redis make their own."""
    directory = tmp_root / "redis-session"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def model_state(redis_server: RedisServer) -> dict[bytes, bytes]:
    """The registry and default data set after the first bootstrap (training once per session, not per test)."""
    from sentq import registry
    from sentq.settings import Settings

    client = redis_server.client()
    client.flushdb()
    settings = Settings.from_env({"SENTQ_BROKER_URL": redis_server.url, "SENTQ_DATA_DIR": str(REPO / "data")})
    registry.ensure_current(client, settings)
    return {key: client.dump(key) for key in client.keys("sentq:*")}  # type: ignore[misc]


def restore(client: redis.Redis, state: dict[bytes, bytes]) -> None:
    for key, dumped in state.items():
        client.restore(key, 0, dumped, replace=True)


@pytest.fixture
def redis_url(redis_server: RedisServer, model_state: dict[bytes, bytes]) -> Iterator[str]:
    """The session Redis, flushed around the test, with the bootstrapped model v1 in place."""
    client = redis_server.client()
    client.flushdb()
    restore(client, model_state)
    yield redis_server.url
    client.flushdb()
    client.close()


@pytest.fixture
def own_redis_url(tmp_path: Path, model_state: dict[bytes, bytes]) -> Iterator[str]:
    """A redis-server of this test's own, with model v1 in place, for a test that waits on the reconciler: on the
    session Redis the session worker holds the reconciler's lock, on the default clocks, and every worker on one
    Redis must run the same clocks."""
    directory = tmp_path / "own-redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        client = server.client()
        restore(client, model_state)
        client.close()
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def session_worker(redis_server: RedisServer, tmp_root: Path, model_state: dict[bytes, bytes]) -> Iterator[Worker]:
    """One 2-process worker for the session, on the session Redis."""
    worker = Worker(redis_server.url, tmp_root / "worker-session.log", name="session@%h")
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def worker(session_worker: Worker, redis_url: str) -> Iterator[Worker]:
    """The session worker, alive, on a freshly flushed Redis."""
    if session_worker.proc is None or session_worker.proc.poll() is not None:
        pytest.fail(f"the session worker died:\n{session_worker.output()}")
    yield session_worker


@pytest.fixture
def app(redis_url: str) -> Iterator[Any]:
    """sentq's Celery app in this process, pointed at the test Redis (a client, not a worker)."""
    from sentq import worker as worker_module
    from sentq.settings import Settings

    old = worker_module.settings
    worker_module.configure(Settings.from_env({"SENTQ_BROKER_URL": redis_url, "SENTQ_DATA_DIR": str(REPO / "data")}))
    try:
        yield worker_module.app
    finally:
        worker_module.configure(old)


def run_sentq(
    args: list[str], url: str, *, input: bytes | None = None, timeout: float = 120, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the sentq CLI as a user would, in a subprocess aimed at ``url``."""
    proc = subprocess.run(
        SENTQ + args, env=base_env(url, **env), input=input, capture_output=True, timeout=timeout, cwd=cwd
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    )


def decode_message(raw: bytes) -> tuple[str, int]:
    """(job, chunk) of a score_chunk message as kombu keeps it in a Redis list."""
    import base64
    import json

    message = json.loads(raw)
    args, _, _ = json.loads(base64.b64decode(message["body"]))
    return str(args[0]), int(args[1])


@dataclass
class ApiServer:
    """A real `sentq api` (uvicorn) subprocess on a free loopback port, aimed at a test Redis."""

    redis_url: str
    log_path: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30) -> ApiServer:
        import httpx

        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            SENTQ + ["api", "--port", str(self.port), "--loglevel", "warning"],
            env=base_env(self.redis_url, **self.env_extra),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sentq api exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"sentq api did not answer in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        stop_group(self.proc, timeout=15)
        self.proc = None
        if hasattr(self, "log"):
            self.log.close()


@pytest.fixture(scope="session")
def session_api(redis_server: RedisServer, tmp_root: Path) -> Iterator[ApiServer]:
    """One `sentq api` for the session, on the session Redis (it keeps no state: Redis is flushed per test)."""
    server = ApiServer(redis_server.url, tmp_root / "api-session.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(session_api: ApiServer, redis_url: str) -> Iterator[ApiServer]:
    """The session API, alive, on a freshly flushed Redis."""
    if session_api.proc is None or session_api.proc.poll() is not None:
        pytest.fail(f"the session API died:\n{session_api.output()}")
    yield session_api
