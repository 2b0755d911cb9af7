"""The ledger's atomic steps and the reconciler's rules, on a real Redis (the fault tests drive them end to end)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sentq import inputs, keys, ledger
from sentq.settings import Settings
from sentq.store import text
from tests.conftest import FAST_CLOCKS, Worker, run_sentq, wait_until

JOB = "ledgertest01"
DEFAULTS = Settings()
CLOCKS = {"beat_every_s": DEFAULTS.heartbeat_s, "lost_after_s": DEFAULTS.lost_after_s}


@pytest.fixture
def redis_url(own_redis_url: str) -> str:
    """A Redis of the test's own: these tests set ledger states by hand (old sends, leases of dead holders), which a
    live reconciler (the session worker's, on the session Redis) would act on."""
    return own_redis_url


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    c.hset(keys.job(JOB), mapping={"state": "queued", "total_chunks": 3, "queue": "q", "broker": "redis"})
    c.expire(keys.job(JOB), 3600)
    c.zadd(keys.ACTIVE_JOBS, {JOB: 1})
    for index in range(3):
        c.set(keys.chunk_input(JOB, index), b"SQB1staged")
    ledger.mark_sent(c, JOB, range(3))
    yield c
    c.close()


def redis_now(client: redis.Redis) -> float:
    secs, micros = client.time()
    return float(secs + micros / 1e6)


def age(client: redis.Redis, index: int, seconds: float) -> float:
    """Pretend chunk ``index``'s message was sent ``seconds`` ago; returns that stamp."""
    stamp = redis_now(client) - seconds
    client.zadd(keys.job_pending(JOB), {str(index): stamp})
    return stamp


class Publisher:
    """The reconciler's publish callback, recording what it would send (the real one is tested in test_faults)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, list[int]]] = []

    def __call__(self, job_id: str, queue: str, indexes: list[int], stamp: float) -> None:
        self.sent.append((job_id, queue, indexes))


def sweep(client: redis.Redis, view: ledger.QueueView) -> tuple[ledger.Sweep, Publisher]:
    publish = Publisher()
    return ledger.reconcile(client, broker_id="redis", view=lambda queue: view, publish=publish, **CLOCKS), publish


def test_claim_leases_and_a_second_completion_is_a_no_op(client: redis.Redis) -> None:
    work = ledger.claim(client, JOB, 0, holder="w1/1")
    assert (work.state, work.payload, work.deliveries, work.done) == ("queued", b"SQB1staged", 1, False)
    assert ledger.summary(client, JOB).leased == {0: "w1/1"}
    assert ledger.complete(client, JOB, 0, rows=b"first\n", texts=1, compute_s=0.1, wait_s=0.0)
    assert not ledger.complete(client, JOB, 0, rows=b"second\n", texts=1, compute_s=0.1, wait_s=0.0)
    assert client.get(keys.chunk_output(JOB, 0)) == b"first\n"
    assert client.hmget(keys.job(JOB), ["chunks_done", "texts_done", "state"]) == [b"1", b"1", b"running"]
    assert ledger.summary(client, JOB) == ledger.Ledger(pending=2, leased={}, probing=[])
    again = ledger.claim(client, JOB, 0, holder="w2/1")
    assert again.done and again.payload is None and again.deliveries == 2


def test_a_result_holding_its_texts_lets_the_input_go_once_done(client: redis.Redis) -> None:
    """A worker's result holds the chunk's texts (rows.pack_result with the payload): a clean completion deletes the
    staged input in the same step, a chunk with texts that failed alone keeps it (`sentq retry` re-runs it), and a
    duplicate delivery leaves nothing behind (its result is dropped in the same transaction)."""
    from sentq import rows

    payload = rows.encode_raw(inputs.RawLines(1, 2, 0, b"good\nbad\n"))
    for index in (0, 1):
        client.set(keys.chunk_input(JOB, index), payload)
    whole = rows.pack_result("v1", bytes(4), payload, first=1)
    assert ledger.complete(client, JOB, 0, rows=whole, texts=2, compute_s=0.1, wait_s=0.0)
    assert client.get(keys.chunk_output(JOB, 0)) == whole and not client.exists(keys.chunk_input(JOB, 0))
    assert rows.result_rows(client.get(keys.chunk_output(JOB, 0)), None).count(b"\n") == 2
    assert not ledger.complete(client, JOB, 0, rows=whole, texts=2, compute_s=0.1, wait_s=0.0)
    partial = rows.pack_result("v1", bytes(2) + rows.FAILED, payload, first=1)
    assert ledger.complete(client, JOB, 1, rows=partial, texts=1, compute_s=0.1, wait_s=0.0, bad={2: "boom"})
    assert client.get(keys.chunk_input(JOB, 1)) == payload  # kept for a retry
    assert client.keys("*:new") == []
    assert client.ttl(keys.chunk_output(JOB, 0)) > 0


def test_a_chunk_the_ledger_does_not_have_is_never_claimed(client: redis.Redis) -> None:
    """A message for chunk 7 of a 3-chunk job (forged): refused, nothing counted, leased or failed."""
    client.set(keys.chunk_input(JOB, 7), b"SQB1planted")  # even with an input under its key
    work = ledger.claim(client, JOB, 7, holder="w1/1")
    assert work.unknown and work.payload is None and work.state == "queued"
    assert client.hget(keys.job_deliveries(JOB), "7") is None and client.hlen(keys.job_leases(JOB)) == 0
    assert not client.exists(keys.job_failed(JOB))
    assert not ledger.claim(client, JOB, 2, holder="w1/1").unknown  # a pending one still is


def test_concurrent_completions_of_one_chunk_count_once(client: redis.Redis, redis_url: str) -> None:
    results: list[bool] = []

    def finish(n: int) -> None:
        own = redis.Redis.from_url(redis_url)
        results.append(ledger.complete(own, JOB, 1, rows=b"row %d\n" % n, texts=5, compute_s=0.0, wait_s=0.0))
        own.close()

    threads = [threading.Thread(target=finish, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert client.hmget(keys.job(JOB), ["chunks_done", "texts_done"]) == [b"1", b"5"]
    assert client.get(keys.chunk_output(JOB, 1)) in {b"row %d\n" % n for n in range(8)}


def test_last_chunk_finishes_the_job_and_drops_it_from_the_index(client: redis.Redis) -> None:
    for index in range(2):
        ledger.complete(client, JOB, index, rows=b"r\n", texts=1, compute_s=0.0, wait_s=0.0)
    ledger.complete(client, JOB, 2, rows=b"r\n", texts=1, compute_s=0.0, wait_s=0.0, bad={7: "ValueError: x"})
    assert client.hget(keys.job(JOB), "state") == b"failed"
    assert client.zscore(keys.ACTIVE_JOBS, JOB) is None
    failure = ledger.failures(client, JOB)[2]
    assert failure.lines == {7: "ValueError: x"} and failure.scored == 1 and "line" in failure.error


def test_a_failed_chunk_is_not_scored_again_by_a_duplicate(client: redis.Redis) -> None:
    ledger.fail(client, JOB, 0, "boom")
    assert ledger.claim(client, JOB, 0, holder="w1/1").failed
    assert not ledger.complete(client, JOB, 0, rows=b"late\n", texts=1, compute_s=0.0, wait_s=0.0)
    assert client.hget(keys.job(JOB), "chunks_failed") == b"1"


def test_reconciler_resends_the_chunk_of_a_dead_holder_once(client: redis.Redis) -> None:
    ledger.claim(client, JOB, 0, holder="ghost@h/1-a")  # no heartbeat: dead
    found, publish = sweep(client, ledger.QueueView(depth=5))
    assert publish.sent == [(JOB, "q", [0])]
    assert found.dead == [(JOB, 0, "ghost@h/1-a")]
    assert ledger.summary(client, JOB).leased == {}
    assert [d["instance"] for d in ledger.dead_workers(client)] == ["ghost@h/1-a"]
    _, publish = sweep(client, ledger.QueueView(depth=5))
    assert publish.sent == []  # its fresh message may still be queued: nothing more to do


def test_reconciler_leaves_a_live_holders_chunk_alone(client: redis.Redis) -> None:
    ledger.claim(client, JOB, 0, holder="alive@h/1-a")
    ledger.beat(client, "alive@h/1-a", info={"queues": ["q"]}, running=[f"{JOB}:0"], ttl_s=DEFAULTS.heartbeat_ttl_s)
    age(client, 0, 100)
    _, publish = sweep(client, ledger.QueueView(depth=0))
    assert ledger.summary(client, JOB).leased == {0: "alive@h/1-a"}
    assert publish.sent == []


def test_reconciler_resends_a_lease_its_live_holder_no_longer_runs(client: redis.Redis) -> None:
    client.hset(keys.job_leases(JOB), "0", f"alive@h/1-a|{redis_now(client) - 60:.6f}")  # e.g. completion lost
    ledger.beat(client, "alive@h/1-a", info={"queues": ["q"]}, running=[], ttl_s=DEFAULTS.heartbeat_ttl_s)
    _, publish = sweep(client, ledger.QueueView(depth=3))
    assert publish.sent == [(JOB, "q", [0])]


def test_lost_message_rules(client: redis.Redis) -> None:
    stamp = age(client, 0, 100)
    for index in (1, 2):
        age(client, index, 1)  # sent a moment ago: never touched
    swept, publish = sweep(client, ledger.QueueView(depth=40, oldest_stamp=stamp + 5))
    assert publish.sent == []  # a backlog sent about when chunk 0 was still waits: chunk 0's message may be in it
    assert swept.chunks_seen == 0  # so no chunk is even read: a healthy sweep costs the same for 3 chunks or 3M
    swept, publish = sweep(client, ledger.QueueView(depth=40, oldest_stamp=None))
    assert publish.sent == [] and swept.chunks_seen == 0  # the broker cannot say (AMQP), the queue is not empty
    _, publish = sweep(client, ledger.QueueView(depth=1, carried={(JOB, 0)}))
    assert publish.sent == []  # a worker took its message moments ago
    _, publish = sweep(client, ledger.QueueView(depth=40, oldest_stamp=stamp + 60))
    assert publish.sent == [(JOB, "q", [0])]  # the queue moved on well past it: its message is gone
    age(client, 0, 100)
    _, publish = sweep(client, ledger.QueueView(depth=0))
    assert publish.sent == [(JOB, "q", [0])]  # nothing queued at all


def test_reconciler_skips_finished_vanished_and_foreign_jobs(client: redis.Redis) -> None:
    age(client, 0, 100)
    client.zadd(keys.ACTIVE_JOBS, {"vanished": 1})
    client.hset(keys.job("other"), mapping={"state": "running", "queue": "q", "broker": "amqp"})
    client.zadd(keys.job_pending("other"), {"0": 1})
    client.zadd(keys.ACTIVE_JOBS, {"other": 1})
    found, publish = sweep(client, ledger.QueueView(depth=0))
    assert publish.sent == [(JOB, "q", [0])]
    assert found.forgotten == 1 and client.zscore(keys.ACTIVE_JOBS, "vanished") is None
    assert found.jobs == 1


def test_one_reconciler_at_a_time(client: redis.Redis) -> None:
    assert ledger.lock(client, "redis", "a", ttl_s=DEFAULTS.reconcile_lock_ttl_s)
    assert ledger.lock(client, "redis", "a", ttl_s=DEFAULTS.reconcile_lock_ttl_s)  # renewed
    assert not ledger.lock(client, "redis", "b", ttl_s=DEFAULTS.reconcile_lock_ttl_s)
    ledger.unlock(client, "redis", "b")  # not b's to release
    assert not ledger.lock(client, "redis", "b", ttl_s=DEFAULTS.reconcile_lock_ttl_s)
    ledger.unlock(client, "redis", "a")
    assert ledger.lock(client, "redis", "b", ttl_s=DEFAULTS.reconcile_lock_ttl_s)


def test_live_workers_and_farewell(client: redis.Redis) -> None:
    # Only this test's instance counts: a session worker of other tests may beat into the same Redis at any moment.
    def ours() -> list[tuple[str, list[str], list[str]]]:
        return [(w.instance, w.queues, w.running) for w in ledger.live_workers(client) if w.instance.startswith("w@h/")]

    ledger.beat(
        client, "w@h/1-a", info={"queues": ["q"], "concurrency": 2}, running=["j:1"], ttl_s=DEFAULTS.heartbeat_ttl_s
    )
    assert ours() == [("w@h/1-a", ["q"], ["j:1"])]
    assert [w.instance for w in ledger.consumers(client, "q")] == ["w@h/1-a"]
    assert ledger.consumers(client, "other") == []
    ledger.farewell(client, "w@h/1-a")
    assert ours() == []


def test_isolate_bisects_down_to_the_texts_that_fail_alone() -> None:
    from sentq.rows import FAILED
    from sentq.worker import TooManyBad, isolate

    lines = list(range(1, 101))
    poison = {17, 64}

    def score(lo: int, hi: int) -> bytes:
        if poison & set(lines[lo:hi]):
            raise ValueError("bad text")
        return b"".join(b"%d\n" % line for line in lines[lo:hi])

    rows, scored, bad = isolate(lines, score)
    assert rows == b"".join(FAILED if n in poison else b"%d\n" % n for n in lines)  # one result per text, in order
    assert scored == 98 and bad == {17: "ValueError: bad text", 64: "ValueError: bad text"}

    def always(lo: int, hi: int) -> bytes:
        raise RuntimeError("model broken")

    with pytest.raises(TooManyBad, match="systematic"):
        isolate(list(range(1, 500)), always)


def test_two_probing_deliveries_never_append_a_piece_twice(client: redis.Redis) -> None:
    """The broker's redelivery and the reconciler's re-send probe chunk 0 at once: each checkpoint write names the
    version it read, so the one that read an older checkpoint is refused, and each piece's rows land once."""
    fresh = {"offset": 0, "step": 2, "trying": False, "bad": {}, "scored": 0}
    assert ledger.probe_save(client, JOB, 0, dict(fresh, trying=True), read=0)  # A tries [0, 2): v1
    assert not ledger.probe_save(client, JOB, 0, dict(fresh, trying=True), read=0)  # B read v0: refused
    moved = dict(fresh, offset=2)
    assert ledger.probe_commit(client, JOB, 0, offset=0, state=moved, rows=b"AAAA", read=1)  # A's rows: v2
    # B, having read A's "trying" at v1, would take it for dead and halve: refused, nothing appended.
    assert not ledger.probe_commit(client, JOB, 0, offset=0, state=dict(fresh, step=1), rows=b"", read=1)
    # The old race: B saves its stale offset-0 checkpoint over A's progress, then commits [0, 2) again.
    assert not ledger.probe_save(client, JOB, 0, dict(fresh, trying=True), read=1)
    assert not ledger.probe_commit(client, JOB, 0, offset=0, state=moved, rows=b"AAAA", read=1)
    assert ledger.probe_rows(client, JOB, 0) == b"AAAA"
    assert ledger.probe_state(client, JOB, 0) == dict(moved, v=2)


def test_a_late_failure_never_erases_a_partial_one(client: redis.Redis) -> None:
    """Chunk 1 finished with a line that failed alone (its other rows kept); a late delivery's whole-chunk failure
    must not replace that record: its failed line and the texts it scored are what `retry` takes back."""
    ledger.claim(client, JOB, 1, holder="w1/1")
    assert ledger.complete(client, JOB, 1, rows=b"r\n", texts=4, compute_s=0.0, wait_s=0.0, bad={17: "ValueError"})
    before = client.hget(keys.job_failed(JOB), "1")
    ledger.fail(client, JOB, 1, "the chunk's input is missing from Redis")
    assert client.hget(keys.job_failed(JOB), "1") == before
    found = ledger.failures(client, JOB)[1]
    assert (found.lines, client.hget(keys.job(JOB), "chunks_failed")) == ({17: "ValueError"}, b"1")


def test_the_reconciler_forgets_workers_not_seen_within_the_retention(redis_url: str, tmp_path: Path) -> None:
    """50 node names whose last task is older than SENTQ_WORKER_STATS_KEEP and 30 expired heartbeats left in the live
    index are gone after the reconciler's prune pass; names seen within it, and the live worker, stay."""
    client = redis.Redis.from_url(redis_url)
    now = time.time()
    stale = {f"gone{i}@old-host": json.dumps({"model": "1:abc", "pid": i, "at": now - 7200}) for i in range(50)}
    recent = {f"recent{i}@host": json.dumps({"model": "1:abc", "pid": i, "at": now - 60}) for i in range(5)}
    client.hset(keys.WORKER_STATS, mapping=stale | recent)
    client.zadd(keys.WORKERS_LIVE, {f"ghost@h/{i}-x": now - 3600 for i in range(30)})
    env = dict(FAST_CLOCKS, SENTQ_WORKER_STATS_KEEP="3600")
    w = Worker(redis_url, tmp_path / "w.log", name="keeper@%h", concurrency=1, env_extra=env).start()
    try:
        wait_until(
            lambda: (
                client.hlen(keys.WORKER_STATS) == 5
                and [text(i) for i in client.zrange(keys.WORKERS_LIVE, 0, -1)] == [keeper(client)]
            ),
            30,
            "the prune pass dropped the stale stats and the expired heartbeats",
        )
        assert {text(k) for k in client.hkeys(keys.WORKER_STATS)} == set(recent)
        done = run_sentq(["submit", "-", "--wait"], redis_url, input=b"great product\n", **FAST_CLOCKS)
        assert done.returncode == 0, done.stderr + w.output()
        name = keeper(client).rsplit("/", 1)[0]
        assert json.loads(client.hget(keys.WORKER_STATS, name) or b"{}")["model"].startswith("1:")
    finally:
        w.stop()


def keeper(client: redis.Redis) -> str:
    """The live instance of the test's worker (its heartbeat names it), or "" before its first beat."""
    beats = client.keys(keys.PREFIX + "worker:keeper@*")
    return next((text(k).removeprefix(keys.PREFIX + "worker:") for k in beats), "")


def test_the_workers_view_reads_only_the_live_workers_stats(redis_url: str) -> None:
    """`sentq workers` asks the stats hash for the live workers' names only, never for the whole hash (every name
    seen within the retention): watched with MONITOR on the test's own Redis."""
    client = redis.Redis.from_url(redis_url)
    now = time.time()
    others = {f"other{i}@host": json.dumps({"model": "1:abc", "pid": i, "at": now}) for i in range(2000)}
    client.hset(keys.WORKER_STATS, mapping=others | {"live@h": json.dumps({"model": "1:abc", "pid": 1, "at": now})})
    ledger.beat(client, "live@h/1-a", info={"queues": ["sentq"], "concurrency": 1}, running=[], ttl_s=60)
    seen: list[str] = []
    watching = threading.Event()

    def watch() -> None:
        with redis.Redis.from_url(redis_url).monitor() as monitor:
            watching.set()
            for command in monitor.listen():
                seen.append(str(command["command"]))
                if "bounds-test-done" in seen[-1]:
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert watching.wait(10)
    client.echo("bounds-test-started")
    wait_until(lambda: any("bounds-test-started" in c for c in seen), 10, "MONITOR sees commands")
    shown = run_sentq(["workers", "--json"], redis_url)
    client.echo("bounds-test-done")
    watcher.join(10)
    assert shown.returncode == 0, shown.stderr
    assert [w["model"] for w in json.loads(shown.stdout)["workers"]] == ["v1"]
    touching = [c for c in seen if c.split(" ")[1:2] == [keys.WORKER_STATS]]
    assert touching == [f"HMGET {keys.WORKER_STATS} live@h"], touching
