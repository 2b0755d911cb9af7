"""RabbitMQ as the broker, all the way: a node this module starts itself (its own name, ports, mnesia dir and Erlang
cookie; the machine's own node is never touched), Redis for jobs, models and results. Scoring, retrain, cancel,
retry, the ledger's recovery of a lost message, the node restarted mid-job, and a wrong password."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.conftest import REPO, Worker, free_port, run_sentq, stop_group, wait_until

# Debian's package puts the real scripts here (/usr/sbin/rabbitmq-server is a wrapper that runs them as the rabbitmq
# user in /var/lib/rabbitmq, the machine's service's home); elsewhere (a generic-unix tarball) they are on PATH.
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def rabbit_script(name: str) -> str | None:
    debian = RABBIT_BIN / name
    return str(debian) if debian.is_file() else shutil.which(name)


@dataclass
class RabbitNode:
    """A RabbitMQ node this module started and owns: its own node name, AMQP and distribution ports on loopback,
    mnesia and log dirs, config (no plugins, so no management port) and Erlang cookie (HOME is its directory).
    It registers with the machine's epmd like any node; stopping it unregisters it."""

    directory: Path
    name: str = field(default_factory=lambda: f"sentqtest-{uuid.uuid4().hex[:8]}@localhost")
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    user: str = "sentq"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    proc: subprocess.Popen[bytes] | None = None

    def url(self, password: str | None = None) -> str:
        return f"amqp://{self.user}:{password or self.password}@127.0.0.1:{self.port}//"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.out"

    def env(self) -> dict[str, str]:
        d = self.directory
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "SENTQ_", "ERL_"))}
        env.update(
            HOME=str(d),  # a fresh ~/.erlang.cookie, shared by the node and our rabbitmqctl
            RABBITMQ_CONF_ENV_FILE=str(d / "rabbitmq-env.conf"),  # not /etc/rabbitmq's (it names the machine's node)
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(d / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
            RABBITMQ_LOG_BASE=str(d / "log"),
            RABBITMQ_PID_FILE=str(d / "node.pid"),
            ERL_EPMD_ADDRESS="127.0.0.1",  # only used if no epmd runs yet and the node starts one
        )
        return env

    def configure(self) -> None:
        d = self.directory
        for sub in ("mnesia", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "rabbitmq-env.conf").write_text("")
        (d / "enabled_plugins").write_text("[].\n")
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"default_user = {self.user}\n"
            f"default_pass = {self.password}\n"
            "loopback_users = none\n"
            "log.console = false\n"
            "log.file.level = info\n"
        )

    def start(self, *, timeout: float = 90) -> float:
        """Start the node in the foreground (own process group) and return the seconds until it took a login."""
        server = rabbit_script("rabbitmq-server")
        assert server is not None
        if not (self.directory / "rabbitmq.conf").exists():
            self.configure()
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [server],
                env=self.env(),
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() - started > timeout:
                self.kill()
                raise RuntimeError(f"RabbitMQ node {self.name} did not start:\n{self.output()}")
            time.sleep(0.1)
        return time.monotonic() - started

    def answers(self) -> bool:
        """A login to the node succeeds (its listener opens last, after the default user exists)."""
        from amqp.exceptions import AMQPError
        from kombu import Connection

        try:
            with Connection(self.url(), connect_timeout=1) as conn:
                conn.connect()
            return True
        except (OSError, AMQPError):
            return False

    def stop(self, *, timeout: float = 30) -> None:
        """Stop cleanly: SIGTERM to the start script, which stops the node (`rabbitmqctl stop` would do the same)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        stop_group(self.proc, signal.SIGKILL, timeout=10)  # anything of the group left behind
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the node and everything it forked (what a lost host or the OOM killer does)."""
        stop_group(self.proc, signal.SIGKILL, timeout=10)
        self.proc = None

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """rabbitmqctl against this node (never the machine's)."""
        ctl = rabbit_script("rabbitmqctl")
        assert ctl is not None
        return subprocess.run(
            [ctl, "-n", self.name, *args], env=self.env(), capture_output=True, text=True, timeout=60, check=False
        )

    def output(self) -> str:
        tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        logs = sorted((self.directory / "log").glob("*.log"))
        if logs:
            tail += "\n" + logs[-1].read_text(errors="replace")[-3000:]
        return tail


@pytest.fixture(scope="module")
def rabbit(tmp_root: Path) -> Iterator[RabbitNode]:
    """One RabbitMQ node for this module, ours to stop, kill and restart."""
    if rabbit_script("rabbitmq-server") is None:
        pytest.skip("rabbitmq-server is not installed (`sudo apt-get install rabbitmq-server`): the amqp:// tests")
    directory = tmp_root / f"rabbit-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    node = RabbitNode(directory)
    while node.dist_port == node.port:
        node.dist_port = free_port()
    took = node.start()
    print(f"\nRabbitMQ node {node.name} on 127.0.0.1:{node.port} answered in {took:.1f}s")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def amqp(rabbit: RabbitNode, redis_url: str) -> dict[str, str]:
    """The environment of a sentq process on our node: the test Redis for the rest, queues of its own per test (a
    test that leaves messages behind confuses no other); the node restarted if a test left it down."""
    if rabbit.proc is None or rabbit.proc.poll() is not None:
        rabbit.start()
    suffix = uuid.uuid4().hex[:8]
    return {
        "SENTQ_RESULT_BACKEND": redis_url,
        "SENTQ_QUEUE": f"sentq-{suffix}",
        "SENTQ_RETRAIN_QUEUE": f"sentq-retrain-{suffix}",
    }


def start_worker(rabbit: RabbitNode, env: dict[str, str], tmp_path: Path, name: str, **extra: str) -> Worker:
    return Worker(rabbit.url(), tmp_path / f"{name}.log", name=f"{name}@%h", env_extra=env | extra).start()


def write_texts(path: Path, n: int) -> list[str]:
    texts = [f"text {i} was {'great' if i % 3 else 'awful'} and {'fine' if i % 2 else 'bad'}" for i in range(n)]
    path.write_text("".join(t + "\n" for t in texts))
    return texts


def rows_of(path: Path) -> list[dict[str, object]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def job_field(url: str, job: str, name: str) -> int:
    return int(redis.Redis.from_url(url).hget(f"sentq:job:{job}", name) or 0)


def hooked(**env: str) -> dict[str, str]:
    """Worker environment with the test-only fault hooks (tests/hooks/sitecustomize.py) loaded."""
    return env | {"PYTHONPATH": str(REPO / "tests" / "hooks") + os.pathsep + str(REPO)}


def test_scoring_every_row_once_in_order(rabbit: RabbitNode, amqp: dict[str, str], tmp_path: Path) -> None:
    src = tmp_path / "t.txt"
    texts = write_texts(src, 3_000)
    w = start_worker(rabbit, amqp, tmp_path, "score")
    try:
        sub = run_sentq(["submit", str(src), "--chunk-size", "500"], rabbit.url(), **amqp)
        assert sub.returncode == 0, sub.stderr
        job = sub.stdout.strip()
        out = tmp_path / "rows.jsonl"
        waited = run_sentq(["wait", job, "-o", str(out), "--timeout", "60"], rabbit.url(), **amqp)
        assert waited.returncode == 0, waited.stderr + w.output()
        rows = rows_of(out)
        assert [(r["line"], r["text"]) for r in rows] == list(enumerate(texts, start=1))
        assert {r["model"] for r in rows} == {"v1"}
        status = json.loads(run_sentq(["status", job, "--json"], rabbit.url(), **amqp).stdout)
        assert (status["state"], status["chunks_done"], status["texts_done"]) == ("done", 6, 3_000)
        listed = json.loads(run_sentq(["workers", "--json"], rabbit.url(), **amqp).stdout)
        assert listed["queues"] == {amqp["SENTQ_QUEUE"]: 0, amqp["SENTQ_RETRAIN_QUEUE"]: 0}
        assert rabbit.password not in sub.stderr + waited.stderr + w.output()
    finally:
        w.stop()


def labelled_jsonl(path: Path, n: int = 200) -> Path:
    """Easy training data a model learns perfectly (a new version that is visibly the one scoring)."""
    good, bad = ["superb", "lovely", "delightful", "splendid"], ["dreadful", "horrid", "dismal", "wretched"]
    lines = []
    for i in range(n):
        words = good if i % 2 else bad
        text = f"{words[i % 4]} {words[(i + 1) % 4]} item {i}"
        lines.append(json.dumps({"text": text, "label": "positive" if i % 2 else "negative"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_retrain_then_the_next_job_uses_the_new_version(
    rabbit: RabbitNode, amqp: dict[str, str], tmp_path: Path
) -> None:
    """`sentq retrain` goes through RabbitMQ (its own queue) to a worker; the result comes back through Redis; the
    next job is pinned to the new version and every row says so."""
    w = start_worker(rabbit, amqp, tmp_path, "retrain")
    try:
        data = labelled_jsonl(tmp_path / "data.jsonl")
        done = run_sentq(["retrain", "--data", str(data), "--force", "--wait", "--json"], rabbit.url(), **amqp)
        assert done.returncode == 0, done.stderr + w.output()
        result = json.loads(done.stdout)
        assert (result["status"], result["version"], result["promoted"]) == ("retrained", 2, True)
        src = tmp_path / "t.txt"
        texts = write_texts(src, 600)
        out = tmp_path / "rows.jsonl"
        sub = run_sentq(["submit", str(src), "--chunk-size", "200", "--wait", "-o", str(out)], rabbit.url(), **amqp)
        assert sub.returncode == 0, sub.stderr + w.output()
        rows = rows_of(out)
        assert [r["text"] for r in rows] == texts and {r["model"] for r in rows} == {"v2"}
        job = sub.stderr.split()[1]
        status = json.loads(run_sentq(["status", job, "--json"], rabbit.url(), **amqp).stdout)
        assert (status["state"], status["model_version"]) == ("done", "v2")
    finally:
        w.stop()


def test_cancel_mid_job(rabbit: RabbitNode, amqp: dict[str, str], tmp_path: Path) -> None:
    """A job cancelled while its chunks wait in RabbitMQ: `wait` exits 5, workers take the rest off the queue
    without scoring them."""
    src = tmp_path / "t.txt"
    write_texts(src, 3_000)
    w = start_worker(rabbit, amqp, tmp_path, "cancel", **hooked(SENTQ_TEST_SLOW="0.3"))
    try:
        job = run_sentq(["submit", str(src), "--chunk-size", "100"], rabbit.url(), **amqp).stdout.strip()
        wait_until(lambda: job_field(amqp["SENTQ_RESULT_BACKEND"], job, "chunks_done") >= 1, 30, "a chunk is done")
        cancelled = run_sentq(["cancel", job], rabbit.url(), **amqp)
        assert cancelled.returncode == 0 and "cancelled" in cancelled.stderr, cancelled.stderr
        done_at_cancel = job_field(amqp["SENTQ_RESULT_BACKEND"], job, "chunks_done")
        waited = run_sentq(["wait", job], rabbit.url(), **amqp)
        assert waited.returncode == 5, waited.stderr

        def drained() -> bool:
            listed = json.loads(run_sentq(["workers", "--json"], rabbit.url(), **amqp).stdout)
            return bool(listed["queues"][amqp["SENTQ_QUEUE"]] == 0 and not listed["workers"][0]["running"])

        wait_until(drained, 30, "the worker took every message of the job off the queue")
        status = json.loads(run_sentq(["status", job, "--json"], rabbit.url(), **amqp).stdout)
        assert status["state"] == "cancelled"
        assert status["chunks_done"] <= done_at_cancel + 2  # at most the chunks running at the cancel
        assert status["texts_done"] < 3_000
    finally:
        w.stop()


def test_failed_chunk_then_retry(rabbit: RabbitNode, amqp: dict[str, str], tmp_path: Path) -> None:
    """A chunk whose staged input is corrupt fails, the others finish (exit 1); `sentq retry` re-sends only it
    through RabbitMQ and the job completes, every row once, in order."""
    src = tmp_path / "t.txt"
    texts = write_texts(src, 600)
    url = amqp["SENTQ_RESULT_BACKEND"]
    job = run_sentq(["submit", str(src), "--chunk-size", "200"], rabbit.url(), **amqp).stdout.strip()
    client = redis.Redis.from_url(url)
    key = f"sentq:job:{job}:in:1"
    good = client.get(key)
    client.set(key, b"{not json")
    w = start_worker(rabbit, amqp, tmp_path, "retry")  # after the corruption: no chunk was taken before it
    try:
        waited = run_sentq(["wait", job], rabbit.url(), **amqp)
        assert waited.returncode == 1, waited.stderr + w.output()
        assert f"sentq retry {job}" in waited.stderr
        status = json.loads(run_sentq(["status", job, "--json"], rabbit.url(), **amqp).stdout)
        assert status["state"] == "failed" and list(status["failures"]) == ["1"]
        client.set(key, good)
        retried = run_sentq(["retry", job], rabbit.url(), **amqp)
        assert retried.returncode == 0 and "1 failed chunk" in retried.stderr, retried.stderr
        out = tmp_path / "rows.jsonl"
        waited = run_sentq(["wait", job, "-o", str(out)], rabbit.url(), **amqp)
        assert waited.returncode == 0, waited.stderr + w.output()
        assert [(r["line"], r["text"]) for r in rows_of(out)] == list(enumerate(texts, start=1))
    finally:
        w.stop()


@pytest.mark.slow
def test_lost_message_is_resent(
    rabbit: RabbitNode, amqp: dict[str, str], tmp_path: Path, clocks: dict[str, str]
) -> None:
    """A message taken off the queue and never run (what a lost message leaves): once the queue is empty the
    reconciler re-sends its chunk; every row once, in order."""
    from kombu import Connection

    amqp = amqp | clocks
    src = tmp_path / "t.txt"
    write_texts(src, 5_000)
    job = run_sentq(["submit", str(src), "--chunk-size", "500"], rabbit.url(), **amqp).stdout.strip()
    with Connection(rabbit.url(), connect_timeout=3) as conn:
        taken = conn.default_channel.basic_get(queue=amqp["SENTQ_QUEUE"], no_ack=True)  # gone for good
    assert taken is not None
    w = start_worker(rabbit, amqp, tmp_path, "lost")
    try:
        out = tmp_path / "rows.jsonl"
        waited = run_sentq(["wait", job, "-o", str(out), "--timeout", "90"], rabbit.url(), timeout=120, **amqp)
        assert waited.returncode == 0, waited.stderr + w.output()
        assert [r["line"] for r in rows_of(out)] == list(range(1, 5_001))
        status = json.loads(run_sentq(["status", job, "--json"], rabbit.url(), **amqp).stdout)
        assert (status["chunks_done"], status["texts_done"]) == (10, 5_000)
        assert "message was lost" in (tmp_path / "lost.log").read_text()
    finally:
        w.stop()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_node_restarted_mid_job(
    rabbit: RabbitNode, amqp: dict[str, str], tmp_path: Path, how: str, clocks: dict[str, str]
) -> None:
    """Our node stopped (SIGTERM, a clean shutdown) or SIGKILLed while chunks wait in its durable queue and two run,
    then started again on the same port and mnesia dir: the worker reconnects by itself and the job completes, every
    row once, in order (after a kill, a message the node had not yet written to disk is re-sent by the reconciler).
    A worker started while the node is down waits for it (a wrong password is refused at start, an outage is not)."""
    amqp = amqp | clocks
    src = tmp_path / "t.txt"
    texts = write_texts(src, 4_000)
    w = start_worker(rabbit, amqp, tmp_path, "restart", **hooked(SENTQ_TEST_SLOW="0.3"))
    late = Worker(rabbit.url(), tmp_path / "late.log", name="late@%h", env_extra=amqp, concurrency=1)
    failed: list[BaseException] = []

    def start_late() -> None:
        try:
            late.start(timeout=120)
        except BaseException as exc:  # noqa: B036 - reported by the test's thread below
            failed.append(exc)

    starting = threading.Thread(target=start_late)
    try:
        job = run_sentq(["submit", str(src), "--chunk-size", "200"], rabbit.url(), **amqp).stdout.strip()
        url = amqp["SENTQ_RESULT_BACKEND"]
        wait_until(lambda: job_field(url, job, "chunks_done") >= 2, 30, "two chunks are done")
        rabbit.stop() if how == "stop" else rabbit.kill()
        assert job_field(url, job, "chunks_done") < 20, "the job finished before the node went down"
        starting.start()
        rabbit.start()
        out = tmp_path / "rows.jsonl"
        waited = run_sentq(["wait", job, "-o", str(out), "--timeout", "90"], rabbit.url(), timeout=120, **amqp)
        assert waited.returncode == 0, waited.stderr + w.output()
        assert [(r["line"], r["text"]) for r in rows_of(out)] == list(enumerate(texts, start=1))
        status = json.loads(run_sentq(["status", job, "--json"], rabbit.url(), **amqp).stdout)
        assert (status["state"], status["chunks_done"], status["texts_done"]) == ("done", 20, 4_000)
        assert w.proc is not None and w.proc.poll() is None
        starting.join(timeout=150)
        assert not failed and late.proc is not None and late.proc.poll() is None, failed
    finally:
        if starting.is_alive():
            starting.join(timeout=150)
        late.stop()
        w.stop()


def test_wrong_password_is_exit_3_within_seconds_masked(
    rabbit: RabbitNode, amqp: dict[str, str], tmp_path: Path
) -> None:
    wrong = "Wrong-" + secrets.token_hex(6)
    url = rabbit.url(wrong)
    src = tmp_path / "t.txt"
    write_texts(src, 10)
    for args in (["submit", str(src)], ["workers"], ["retrain"], ["worker", "-c", "1"]):
        started = time.monotonic()
        result = run_sentq(args, url, timeout=30, **amqp)
        took = time.monotonic() - started
        assert result.returncode == 3, (args, result.stdout, result.stderr)
        assert took < 10, (args, took)
        assert "***" in result.stderr, result.stderr
        assert "user and password" in result.stderr, result.stderr
        assert wrong not in result.stdout + result.stderr
