"""Reading and draining a Redis-broker queue (sentq/broker.py, sentq/queues.py) on a real Redis with real Celery
messages: exactly the named jobs' messages go, across batches and while a worker takes messages meanwhile."""

from __future__ import annotations

from typing import Any

import redis

from tests.conftest import decode_message

A, B = "aaaaaaaaaaaa", "bbbbbbbbbbbb"


def test_drain_removes_exactly_one_jobs_messages_across_batches(app: Any, redis_url: str) -> None:
    from sentq import broker, worker

    queue = "drain-unit"
    publish = worker.publisher(queue)
    sent = [(B if i % 3 == 0 else A, i) for i in range(2400)]  # 800 of B's among 1,600 of A's, B's first
    for job, index in sent:
        publish(job, [index], 1.0)
    store = redis.Redis.from_url(redis_url)
    try:
        held = broker.contents(store, queue)
        assert (held.length, held.looked_at, held.other) == (2400, 2400, 0)
        assert {j: m.count for j, m in held.jobs.items()} == {A: 1600, B: 800}
        # A worker takes the 7 oldest messages between the read and the drain: every index read is off by 7 now.
        taken = [decode_message(raw) for raw in store.rpop(queue, 7) or []]
        assert taken == sent[:7]
        removed = broker.drain(store, queue, held, {B})
        assert removed == 800 - sum(job == B for job, _ in taken)
        left = [decode_message(raw) for raw in reversed(store.lrange(queue, 0, -1))]
        assert left == [(job, index) for job, index in sent[7:] if job == A]  # A's all there, in their order
        assert broker.drain(store, queue, broker.contents(store, queue), {B}) == 0
    finally:
        store.close()


def test_sentq_drain_removes_a_cancelled_jobs_leftovers_only(redis_url: str, tmp_path: Any) -> None:
    """`sentq drain QUEUE`: the cancelled job's messages go, the queued job's stay; `--job` for a running job is
    refused (exit 2, nothing removed), as is a queue sentq does not use."""
    from tests.conftest import run_sentq

    queue = "drain-cli"
    src = tmp_path / "texts.txt"
    src.write_text("".join(f"a fine text {i}\n" for i in range(30)))
    env = {"SENTQ_QUEUE": queue}
    keep, stop = (run_sentq(["submit", str(src), "--chunk-size", "10"], redis_url, **env).stdout.strip() for _ in "ab")
    assert run_sentq(["cancel", stop], redis_url, **env).returncode in (0, 5)
    store = redis.Redis.from_url(redis_url)
    try:
        refused = run_sentq(["drain", queue, "--job", keep], redis_url, **env)
        assert refused.returncode == 2 and f"job {keep} is queued" in refused.stderr, refused.stderr
        unknown = run_sentq(["drain", "no-such-queue"], redis_url, **env)
        assert unknown.returncode == 2 and "not one of sentq's queues" in unknown.stderr, unknown.stderr
        assert store.llen(queue) == 6
        drained = run_sentq(["drain", queue], redis_url, **env)
        assert drained.returncode == 0, drained.stderr
        assert f"removed 3 leftover messages of 1 stopped jobs from queue {queue}" in drained.stderr
        assert sorted(decode_message(raw)[0] for raw in store.lrange(queue, 0, -1)) == [keep] * 3
    finally:
        store.close()
