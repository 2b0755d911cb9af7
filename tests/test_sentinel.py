"""Redis behind Sentinel: a primary, a replica and three Sentinels this test starts on loopback ports. sentq's own
client (jobs, ledger, models), the workers' broker and result backend (kombu, Celery) and beat (RedBeat) all find the
master through the Sentinels, and follow it when the primary dies and a replica is promoted."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.sentinel import Sentinel

from sentq import store
from sentq.errors import BrokerUnavailableError, ConfigError
from sentq.settings import Settings
from sentq.worker import celery_config
from tests.conftest import (
    SENTQ,
    Worker,
    base_env,
    free_port,
    launch_redis,
    restore,
    run_sentq,
    stop_group,
    stop_process,
    wait_until,
)

MASTER = "sentqha"
PASSWORD = "s3ntinel-Pa55"


@dataclass
class Node:
    """One redis-server (data node or Sentinel) of the set."""

    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def client(self, **kw: object) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=5, **kw)  # type: ignore[arg-type]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        stop_process(self.proc, sig)
        self.proc = None


@dataclass
class SentinelSet:
    """A primary and a replica (append-only, password-protected) and three Sentinels watching them (quorum 2)."""

    directory: Path
    primary: Node = field(init=False)
    replica: Node = field(init=False)
    sentinels: list[Node] = field(init=False)

    def __post_init__(self) -> None:
        self.primary, self.replica = (Node(self.directory / name) for name in ("primary", "replica"))
        self.sentinels = [Node(self.directory / f"sentinel{i}") for i in range(3)]

    def url(self, password: str = PASSWORD) -> str:
        """The Celery/kombu spelling: one sentinel:// URL per Sentinel, ";"-joined, the master's password first."""
        first, *rest = (f"sentinel://127.0.0.1:{s.port}" for s in self.sentinels)
        return ";".join([first.replace("://", f"://:{password}@") + "/0", *rest])

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run `make setup`")
        for node, extra in ((self.primary, []), (self.replica, ["--replicaof", "127.0.0.1", str(self.primary.port)])):
            node.directory.mkdir(parents=True)
            args = [binary, "--port", str(node.port), "--bind", "127.0.0.1", "--dir", str(node.directory)]
            args += ["--save", "", "--appendonly", "yes", "--maxmemory-policy", "noeviction"]
            args += ["--requirepass", PASSWORD, "--masterauth", PASSWORD, "--logfile", str(node.directory / "log")]
            args += ["--repl-diskless-sync-delay", "0"]  # the replica's first sync at once, not 5 s later
            node.proc = launch_redis(args + extra, node.client(password=PASSWORD), node.directory / "log")
        for node in self.sentinels:
            node.directory.mkdir(parents=True)
            conf = node.directory / "sentinel.conf"  # Sentinel rewrites it: it must be its own, writable
            conf.write_text(
                f"port {node.port}\nbind 127.0.0.1\ndir {node.directory}\nlogfile {node.directory / 'log'}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel auth-pass {MASTER} {PASSWORD}\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
            )
            node.proc = launch_redis([binary, str(conf), "--sentinel"], node.client(), node.directory / "log")
        primary = self.primary.client(password=PASSWORD)
        # Ready when the replica has completed its first sync (the primary lists it from the moment it asks, while
        # the sync may still be pending: a replica promoted then would be empty) and every Sentinel knows the replica
        # and the two other Sentinels.
        replica = self.replica.client(password=PASSWORD)
        wait_until(lambda: replica.info("replication").get("master_link_status") == "up", 20, "the replica is in sync")
        replica.close()
        assert primary.info("replication").get("connected_slaves") == 1
        for node in self.sentinels:
            sentinel = node.client()
            wait_until(
                lambda s=sentinel: len(s.sentinel_slaves(MASTER)) == 1 and len(s.sentinel_sentinels(MASTER)) == 2,
                30,
                f"Sentinel :{node.port} sees the replica and the other Sentinels",
            )

    def master_port(self) -> int:
        """The master's port as the Sentinels say now."""
        sentinel = Sentinel([("127.0.0.1", s.port) for s in self.sentinels], sentinel_kwargs={"socket_timeout": 1})
        try:
            return int(sentinel.discover_master(MASTER)[1])
        finally:
            sentinel.close()

    def master(self) -> redis.Redis:
        """A client that follows the master through the Sentinels, as sentq's own does."""
        return store.connect(Settings(broker_url=self.url(), sentinel_master=MASTER, connect_timeout_s=1))

    def stop(self) -> None:
        for node in (*self.sentinels, self.primary, self.replica):
            node.kill(signal.SIGTERM)


@pytest.fixture
def sentinel_set(tmp_path: Path, model_state: dict[bytes, bytes]) -> Iterator[SentinelSet]:
    nodes = SentinelSet(tmp_path / "ha")
    nodes.start()
    try:
        restore(nodes.primary.client(password=PASSWORD), model_state)  # v1 bootstrapped, as on a live installation
        yield nodes
    finally:
        nodes.stop()


def test_sentinel_urls_are_checked_and_passed_to_kombu_celery_and_redbeat() -> None:
    url = "sentinel://:pw@10.0.0.1:26379;sentinel://10.0.0.2:26380/0"
    with pytest.raises(ConfigError, match="SENTQ_SENTINEL_MASTER"):
        Settings(broker_url=url)
    with pytest.raises(ConfigError, match="first URL"):
        Settings(broker_url="sentinel://h1:26379;sentinel://h2:26379/3", sentinel_master=MASTER)
    with pytest.raises(ConfigError, match="only sentinel:// URLs"):
        Settings(broker_url="redis://h1:6379/0;sentinel://h2:26379", sentinel_master=MASTER)
    settings = Settings.from_env({"SENTQ_BROKER_URL": url, "SENTQ_SENTINEL_MASTER": MASTER})
    assert settings.backend_url == url and settings.broker_is_redis  # the results follow the same Sentinels
    assert "pw" not in repr(settings) and "sentinel://:***@10.0.0.1:26379;sentinel://10.0.0.2:26380/0" in repr(settings)
    conf = celery_config(settings)
    assert conf["broker_transport_options"]["master_name"] == MASTER
    assert conf["result_backend_transport_options"]["master_name"] == MASTER
    from sentq.schedule import beat_config

    beat = beat_config(settings)
    assert beat["redbeat_redis_url"] == "redis-sentinel://"
    options = beat["redbeat_redis_options"]
    assert options["sentinels"] == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert (options["service_name"], options["password"], options["db"]) == (MASTER, "pw", 0)


def test_a_wrong_master_name_is_exit_3_naming_the_setting(sentinel_set: SentinelSet, tmp_path: Path) -> None:
    src = tmp_path / "t.txt"
    src.write_text("great product\n")
    started = time.monotonic()
    proc = run_sentq(["submit", str(src)], sentinel_set.url(), SENTQ_SENTINEL_MASTER="nosuchmaster")
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - started < 15
    assert "SENTQ_SENTINEL_MASTER" in proc.stderr and PASSWORD not in proc.stderr + proc.stdout
    client = store.connect(Settings(broker_url=sentinel_set.url(), sentinel_master="nosuchmaster"))
    try:
        with pytest.raises(BrokerUnavailableError, match=f"The Sentinels monitor: {MASTER}"):
            store.check(client, Settings(broker_url=sentinel_set.url(), sentinel_master="nosuchmaster"))
    finally:
        store.close(client)


def read_lines(path: Path) -> list[int]:
    return [int(json.loads(line)["text"].rsplit(" ", 1)[1]) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_primary_killed_mid_job_workers_wait_and_beat_follow_the_promoted_replica(
    sentinel_set: SentinelSet, tmp_path: Path
) -> None:
    """SIGKILL the primary while a worker scores a job, `sentq wait` follows it and beat ticks: Sentinel promotes the
    replica; the job completes with every row once, in order (or names chunks that `sentq retry` completes), and
    beat's next tick lands on the new master."""
    url = sentinel_set.url()
    env = {"SENTQ_SENTINEL_MASTER": MASTER, "SENTQ_CONNECT_TIMEOUT": "1"}
    n, chunk = 200_000, 1_000
    src = tmp_path / "t.txt"
    src.write_text("".join(f"great product {i}\n" if i % 2 else f"awful service {i}\n" for i in range(1, n + 1)))
    beat_queue = "ha-beat-retrain"  # no worker consumes it: each tick leaves one message there
    worker = Worker(url, tmp_path / "w.log", name="ha@%h", env_extra=env)
    beat_log = open(tmp_path / "beat.log", "wb")  # noqa: SIM115 - closed below
    beat = subprocess.Popen(
        [*SENTQ, "beat", "-l", "INFO"],
        env=base_env(url, SENTQ_RETRAIN_SCHEDULE="1", SENTQ_RETRAIN_QUEUE=beat_queue, **env),
        stdout=beat_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=tmp_path,
    )
    waiter: subprocess.Popen[bytes] | None = None
    master = sentinel_set.master()
    try:
        worker.start()
        job = run_sentq(["submit", str(src), "--chunk-size", str(chunk)], url, **env).stdout.strip()
        out = tmp_path / "rows.jsonl"
        waiter = subprocess.Popen(
            [*SENTQ, "wait", job, "-o", str(out), "--timeout", "120"],
            env=base_env(url, **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def done() -> int:
            return int(master.hget(f"sentq:job:{job}", "chunks_done") or 0)

        wait_until(lambda: master.llen(beat_queue) >= 1, 30, "beat has ticked on the first primary")
        wait_until(lambda: done() >= 20, 60, "20 chunks are done")
        old_port = sentinel_set.primary.port
        before = done()
        sentinel_set.primary.kill(signal.SIGKILL)
        killed = time.monotonic()

        def progressed() -> bool:
            try:
                return done() > before
            except (redis.ConnectionError, redis.TimeoutError):
                return False

        try:
            wait_until(progressed, 60, "a chunk completes on the promoted replica")
        except AssertionError as exc:  # say what the worker and the Sentinels saw
            sentinel_logs = [(s.directory / "log").read_text(errors="replace")[-1500:] for s in sentinel_set.sentinels]
            logs = [worker.output()[-6000:], *sentinel_logs]
            raise AssertionError(f"{exc}\n" + "\n----\n".join(logs)) from None
        resumed_s = time.monotonic() - killed
        assert sentinel_set.master_port() == sentinel_set.replica.port != old_port
        ticks = master.llen(beat_queue)
        wait_until(lambda: master.llen(beat_queue) > ticks, 30, "beat ticks on the new master")

        _, raw_errs = waiter.communicate(timeout=150)
        errs = raw_errs.decode()
        assert waiter.returncode in (0, 1), f"{errs[-3000:]} primary :{old_port}, replica :{sentinel_set.replica.port}"
        if waiter.returncode == 1:  # chunks recorded failed: the replica lost their input with the last writes
            assert "sentq retry" in errs, errs
            assert run_sentq(["retry", job], url, **env).returncode == 0
            again = run_sentq(["wait", job, "-o", str(out), "--timeout", "90"], url, timeout=120, **env)
            assert again.returncode == 0, again.stderr
        assert read_lines(out) == list(range(1, n + 1)), errs[-2000:]
        status = json.loads(run_sentq(["status", job, "--json"], url, **env).stdout)
        assert status["state"] == "done"
        assert (status["chunks_done"], status["texts_done"], status["chunks_failed"]) == (n // chunk, n, 0)
        completed_s = time.monotonic() - killed
        assert PASSWORD not in errs + worker.output() + (tmp_path / "beat.log").read_text()
        print(f"\nfailover as the job saw it: a chunk done {resumed_s:.1f}s after the SIGKILL, all {completed_s:.1f}s")
    finally:
        if waiter is not None and waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
        store.close(master)
        stop_group(beat, signal.SIGTERM, timeout=20)
        beat_log.close()
        worker.stop()
