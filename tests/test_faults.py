"""Fault injection: worker processes and whole workers killed mid-chunk (slow: real kills, real redelivery)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import Worker, run_sentq

pytestmark = pytest.mark.slow


def write_texts(path: Path, n: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            f.write(f"text number {i} is rather good and not bad at all\n")


def deliveries(client: redis.Redis, job: str, index: int = 0) -> int:
    return int(client.hget(f"sentq:job:{job}:deliveries", str(index)) or 0)


def test_poison_chunk_is_recorded_failed_after_max_deliveries(redis_url: str, tmp_path: Path) -> None:
    """A chunk whose worker process dies every time it runs it stops being redelivered after N deliveries."""
    src = tmp_path / "big.txt"
    write_texts(src, 300_000)
    env = {"SENTQ_QUEUE": "poison-q", "SENTQ_MAX_DELIVERIES": "2"}
    job = run_sentq(["submit", str(src), "--chunk-size", "300000"], redis_url, **env).stdout.strip()
    client = redis.Redis.from_url(redis_url)
    w = Worker(redis_url, tmp_path / "w.log", name="poison@%h", env_extra=env).start()
    try:
        killed = 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            state = client.hget(f"sentq:job:{job}", "state")
            if state in (b"failed", b"done"):
                break
            if deliveries(client, job) > killed and killed < 2:
                time.sleep(0.2)  # the process is now decoding/scoring the chunk
                for pid in w.pool_pids():
                    os.kill(pid, signal.SIGKILL)
                killed += 1
            time.sleep(0.02)
        status = json.loads(run_sentq(["status", job, "--json"], redis_url).stdout)
        assert status["state"] == "failed", (status, w.output())
        assert "delivered 3 times" in status["failures"]["0"]
        waited = run_sentq(["wait", job], redis_url, **env)
        assert waited.returncode == 1
        assert w.proc is not None and w.proc.poll() is None  # the worker itself survived
    finally:
        w.stop()


def test_worker_host_vanishes_mid_job_nothing_lost(redis_url: str, tmp_path: Path) -> None:
    """A whole worker SIGKILLed mid-chunk: after the visibility timeout another worker redoes the chunk."""
    src = tmp_path / "t.txt"
    write_texts(src, 400_000)
    env = {"SENTQ_QUEUE": "vanish-q", "SENTQ_VISIBILITY_TIMEOUT": "8", "SENTQ_TASK_TIME_LIMIT": "6"}
    job = run_sentq(["submit", str(src), "--chunk-size", "100000"], redis_url, **env).stdout.strip()
    client = redis.Redis.from_url(redis_url)
    first = Worker(redis_url, tmp_path / "w1.log", name="doomed@%h", env_extra=env, concurrency=1).start()
    try:
        deadline = time.monotonic() + 30
        while deliveries(client, job) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert first.proc is not None
        os.killpg(first.proc.pid, signal.SIGKILL)  # the host vanished: no ack, no reject, nothing
        first.proc.wait()
    finally:
        first.stop()
    second = Worker(redis_url, tmp_path / "w2.log", name="rescuer@%h", env_extra=env).start()
    try:
        out = tmp_path / "rows.jsonl"
        waited = run_sentq(["wait", job, "-o", str(out), "--timeout", "90"], redis_url, timeout=120, **env)
        assert waited.returncode == 0, waited.stderr + second.output()
        with open(out) as f:
            lines = [json.loads(raw)["line"] for raw in f]
        assert lines == list(range(1, 400_001))
        status = json.loads(run_sentq(["status", job, "--json"], redis_url).stdout)
        assert (status["chunks_done"], status["texts_done"]) == (4, 400_000)  # the redone chunk counted once
    finally:
        second.stop()


def test_producer_killed_mid_input_is_reported_not_waited_on_forever(worker: Worker, redis_url: str) -> None:
    """`sentq submit -` SIGKILLed while reading stdin: `wait` says the job cannot finish (exit 1), no hang."""
    import subprocess

    from tests.conftest import SENTQ, base_env

    producer = subprocess.Popen(
        SENTQ + ["submit", "-", "--chunk-size", "10"],
        env=base_env(redis_url),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert producer.stdin is not None and producer.stdout is not None
    padding = b" and it works" * 60  # > 64 KiB in all: the reader looks at the input's head before the first chunk
    producer.stdin.write(b"".join(b"great product %d%s\n" % (i, padding) for i in range(95)))
    producer.stdin.flush()
    job = producer.stdout.readline().decode().strip()
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 30
    while int(client.hget(f"sentq:job:{job}", "chunks_done") or 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    producer.kill()  # mid-input: the last chunk was never staged, the job never sealed
    producer.wait()
    producer.stdin.close()
    producer.stdout.close()
    client.hset(f"sentq:job:{job}", "heartbeat", time.time() - 3600)  # as if an hour had passed
    waited = run_sentq(["wait", job, "--timeout", "30"], redis_url)
    assert waited.returncode == 1, waited.stderr
    assert "submitting process stopped" in waited.stderr
    scored = int(client.hget(f"sentq:job:{job}", "texts_done") or 0)
    assert scored >= 10
    assert [json.loads(r)["line"] for r in waited.stdout.splitlines()] == list(range(1, scored + 1))  # all, in order
    status = json.loads(run_sentq(["status", job, "--json"], redis_url).stdout)
    assert status["state"] == "invalid"


def test_wait_rides_out_a_redis_restart(tmp_path: Path) -> None:
    """Redis (append-only, as sentq runs it) restarts while `sentq wait` follows a job: wait says so and finishes."""
    import subprocess

    from tests.conftest import SENTQ, RedisServer, base_env

    server = RedisServer(tmp_path, appendonly=True)
    server.start()
    env = {"SENTQ_QUEUE": "restart-q"}
    src = tmp_path / "t.txt"
    src.write_text("great product\nawful service\n" * 50)
    job = run_sentq(["submit", str(src), "--chunk-size", "10"], server.url, **env).stdout.strip()
    waiter = subprocess.Popen(
        SENTQ + ["wait", job], env=base_env(server.url, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    w = Worker(server.url, tmp_path / "w.log", name="restart-wait@%h", env_extra=env)
    try:
        time.sleep(1.5)
        server.stop()
        time.sleep(2.5)
        server.start()
        w.start()
        out, errs = waiter.communicate(timeout=90)
        assert waiter.returncode == 0, errs.decode() + w.output()
        assert "lost Redis" in errs.decode()
        assert len(out.decode().splitlines()) == 100
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
        w.stop()
        server.stop()


def test_redis_restart_mid_job_loses_nothing(tmp_path: Path) -> None:
    """Redis (append-only) restarts while workers are scoring: every row still comes back exactly once, in order."""
    from tests.conftest import RedisServer

    server = RedisServer(tmp_path, appendonly=True)
    server.start()
    env = {"SENTQ_VISIBILITY_TIMEOUT": "10", "SENTQ_TASK_TIME_LIMIT": "8"}
    src = tmp_path / "t.txt"
    write_texts(src, 300_000)
    w = Worker(server.url, tmp_path / "w.log", name="midjob@%h", env_extra=env)
    try:
        w.start()
        job = run_sentq(["submit", str(src), "--chunk-size", "1000"], server.url, **env).stdout.strip()
        client = server.client()
        deadline = time.monotonic() + 30
        while int(client.hget(f"sentq:job:{job}", "chunks_done") or 0) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        server.stop()
        time.sleep(1)
        server.start()
        out = tmp_path / "rows.jsonl"
        waited = run_sentq(["wait", job, "-o", str(out), "--timeout", "60"], server.url, timeout=90, **env)
        if waited.returncode != 0:
            done = {int(i) for i in client.smembers(f"sentq:job:{job}:done")}
            missing = sorted(set(range(300)) - done)
            diag = {
                "missing": missing[:10],
                "deliveries": [client.hget(f"sentq:job:{job}:deliveries", str(i)) for i in missing[:10]],
                "inputs": [client.exists(f"sentq:job:{job}:in:{i}") for i in missing[:10]],
                "queue": client.llen("sentq"),
                "unacked": client.hlen("unacked"),
                "mutex": client.ttl("unacked_mutex"),
            }
            raise AssertionError(f"{diag}\n{waited.stderr}\n{w.output()[-3000:]}")
        with open(out) as f:
            assert [json.loads(raw)["line"] for raw in f] == list(range(1, 300_001))
        status = json.loads(run_sentq(["status", job, "--json"], server.url).stdout)
        assert (status["chunks_done"], status["texts_done"], status["chunks_failed"]) == (300, 300_000, 0)
    finally:
        w.stop()
        server.stop()
