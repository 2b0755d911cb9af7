"""`sentq beat`: the retrain schedule, and two real beat processes sharing one Redis with one active scheduler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from celery.schedules import crontab

from sentq import schedule
from sentq.errors import ConfigError
from sentq.settings import Settings
from tests.conftest import SENTQ, RedisServer, Worker, base_env, restore, run_sentq


def test_schedule_parses_cron_and_seconds() -> None:
    nightly = schedule.parse("0 3 * * *")
    assert isinstance(nightly, crontab) and nightly.hour == {3} and nightly.minute == {0}
    assert schedule.parse(" */15 8-18 * * mon-fri ").minute == {0, 15, 30, 45}
    assert schedule.parse("2").run_every == timedelta(seconds=2)
    assert schedule.parse("0.5").run_every == timedelta(seconds=0.5)


@pytest.mark.parametrize("expr", ["61 3 * * *", "0 3 * *", "soon", "0", "-5", "nan", "inf", ""])
def test_bad_schedule_is_refused_naming_the_variable(expr: str) -> None:
    with pytest.raises(ConfigError, match="SENTQ_RETRAIN_SCHEDULE"):
        schedule.parse(expr)


def test_beat_config() -> None:
    fast = schedule.beat_config(Settings(broker_url="redis://h:1/2", retrain_schedule="2"))
    assert (fast["beat_max_loop_interval"], fast["redbeat_lock_timeout"]) == (1.0, 5)
    assert fast["redbeat_redis_url"] == "redis://h:1/2" and fast["redbeat_key_prefix"] == "sentq:redbeat:"
    entry = fast["beat_schedule"]["retrain"]
    assert entry["task"] == "sentq.retrain" and entry["options"] == {"queue": "sentq.retrain", "expires": 2.0}
    nightly = schedule.beat_config(Settings(retrain_schedule="0 3 * * *"))
    assert (nightly["beat_max_loop_interval"], nightly["redbeat_lock_timeout"]) == (5.0, 25)
    assert schedule.beat_config(Settings(retrain_schedule="bogus"))["beat_schedule"] == {}


def test_sentq_beat_refuses_a_bad_schedule() -> None:
    # refused before anything connects, so no Redis is needed
    proc = run_sentq(["beat"], "redis://127.0.0.1:1/0", SENTQ_RETRAIN_SCHEDULE="every night")
    assert proc.returncode == 2
    assert "SENTQ_RETRAIN_SCHEDULE" in proc.stderr and "'every night'" in proc.stderr


@dataclass
class Beat:
    """A real `sentq beat` subprocess (the CLI execs `celery beat` in the same process)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def active(self) -> bool:
        return "beat: Acquired lock" in self.log()

    @property
    def sent(self) -> int:
        return self.log().count("Sending due task retrain (sentq.retrain)")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=20)


def start_beat(url: str, tmp_path: Path, name: str) -> Beat:
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*SENTQ, "beat", "-l", "INFO"],
            env=base_env(url, SENTQ_RETRAIN_SCHEDULE="2"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=tmp_path,
        )
    return Beat(name, proc, log_path)


def wait_until(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def queued_retrains(client: redis.Redis) -> list[str]:
    """Ids of the `sentq.retrain` messages beat put on the retrain queue (no worker consumes it here)."""
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange("sentq.retrain", 0, -1)]


@pytest.mark.slow
def test_two_beats_fire_once_per_tick_and_the_standby_takes_over(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    beats = [start_beat(server.url, tmp_path, "beat-a"), start_beat(server.url, tmp_path, "beat-b")]
    try:
        client = server.client()
        wait_until("one beat to take the lock and send", lambda: any(b.sent for b in beats), 30)
        time.sleep(6.5)  # ~3 more ticks of the 2 s schedule
        first, standby = (beats[0], beats[1]) if beats[0].active else (beats[1], beats[0])
        assert first.active and not standby.active, standby.log()
        assert standby.sent == 0
        sent = len(queued_retrains(client))
        assert sent == first.sent and 3 <= sent <= 5, f"{sent} sent by {first.name} in ~7 s on a 2 s schedule"
        assert client.ttl("sentq:redbeat::lock") <= 5

        first.kill(signal.SIGKILL)  # no chance to release the lock: the standby waits for it to expire
        killed_at = time.monotonic()
        wait_until("the standby to take over", lambda: standby.sent > 0, 15)
        takeover_s = time.monotonic() - killed_at
        assert standby.active and takeover_s < 8, f"takeover took {takeover_s:.1f}s"
        time.sleep(4.2)
        ids = queued_retrains(client)
        assert len(ids) == len(set(ids)) == first.sent + standby.sent
        assert 2 <= standby.sent <= 4, standby.log()
    finally:
        for beat in beats:
            beat.kill()
        server.stop()


@pytest.mark.slow
def test_a_scheduled_retrain_runs_on_a_worker_and_publishes(tmp_path: Path, model_state: dict[bytes, bytes]) -> None:
    server = RedisServer(tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    client = server.client()
    restore(client, model_state)  # v1 already bootstrapped, as on a running installation
    # ...and then v2 from other data made current: a retrain on the default data gives a model unlike it (one like
    # the current version is not stored again), which it publishes as v3.
    publish_other_model(client)
    worker = Worker(server.url, tmp_path / "worker.log", name="beat-e2e@%h", concurrency=1)
    beat = start_beat(server.url, tmp_path, "beat")
    try:
        worker.start()
        wait_until("a scheduled retrain to publish v3", lambda: client.hexists("sentq:model:versions", "3"), 45)
        beat.kill(signal.SIGTERM)  # a clean stop releases the lock at once
        assert "beat: Releasing lock" in beat.log() and not client.exists("sentq:redbeat::lock")
        assert client.get("sentq:model:current").decode().startswith("3:")
        assert "retrained v3" in worker.output() and "made current" in worker.output()
    finally:
        beat.kill()
        worker.stop()
        server.stop()


def publish_other_model(client: redis.Redis) -> None:
    """Make current a v2 trained on other data (a small model: what a scheduled retrain on the default data then
    replaces with a new version)."""
    from sentq import registry
    from sentq.model import SentimentModel

    texts = ["good great love excellent", "bad awful hate terrible"] * 20
    model = SentimentModel().fit(texts, [1, 0] * 20)
    metrics: dict[str, float | int] = {"accuracy": 0.5, "n_train": 40, "n_test": 0}
    registry.publish(client, model, metrics=metrics, source="other data", make_current=True)
