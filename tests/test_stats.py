"""Metrics: the ledger's counters counted once per event, the snapshot of queues, workers and model, HTTP stats that
add up across processes, and /metrics text as Prometheus parses it; real Redis, real workers, decided by state."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from sentq import control, jobs, keys, ledger, registry, stats
from sentq.inputs import TextSource
from sentq.settings import Settings
from sentq.web.metrics import BUCKETS_S, HttpStats, render
from tests.conftest import REPO, Worker, free_port, run_sentq, wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def quiet(own_redis_url: str) -> Iterator[tuple[redis.Redis, str]]:
    """A Redis of the test's own and a client of it, for tests that set ledger states by hand (old sends, leases of
    dead holders): on the session Redis the session worker's reconciler would act on them."""
    c = redis.Redis.from_url(own_redis_url)
    yield c, own_redis_url
    c.close()


def settings_for(url: str, **changes: Any) -> Settings:
    return Settings.from_env({"SENTQ_BROKER_URL": url, "SENTQ_DATA_DIR": str(REPO / "data")}).replace(**changes)


def no_broker(queue: str) -> int:
    return -1  # tests of the ledger's counters do not ask the broker


def counters(client: redis.Redis, settings: Settings) -> dict[str, int]:
    snap = stats.snapshot(client, settings, depth=no_broker)
    return {
        "submitted": snap.jobs_submitted,
        **{f"finished:{o}": n for o, n in snap.jobs_finished.items()},
        "running": snap.jobs_running,
        "texts_scored": snap.texts_scored,
        "texts_failed": snap.texts_failed,
        **{f"chunks:{o}": n for o, n in snap.chunks.items()},
        "retries": snap.chunk_retries,
    }


def zero(**nonzero: int) -> dict[str, int]:
    """The counters, all zero but ``nonzero`` (``finished_done=1`` for ``finished:done``)."""
    names = ["submitted", "running", "texts_scored", "texts_failed", "retries"]
    names += [f"finished:{o}" for o in stats.JOB_OUTCOMES] + [f"chunks:{o}" for o in stats.CHUNK_OUTCOMES]
    values = dict.fromkeys(names, 0)
    for name, n in nonzero.items():
        key = name.replace("_", ":", 1) if name.startswith(("finished_", "chunks_")) else name
        assert key in values, name
        values[key] = n
    return values


def samples(text: bytes) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def sample(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def write_texts(path: Path, n: int, *, poison_line: int | None = None) -> None:
    path.write_text("".join("POISON-TEXT\n" if i + 1 == poison_line else f"good text {i}\n" for i in range(n)))


def test_done_job_counts_and_renders(
    worker: Worker, app: Any, client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """A job of 5 texts in 3 chunks: counted once each, and /metrics says so along with the workers and the model."""
    src = tmp_path / "t.txt"
    write_texts(src, 5)
    proc = run_sentq(["submit", str(src), "--chunk-size", "2", "--wait"], redis_url)
    assert proc.returncode == 0, proc.stderr
    settings = settings_for(redis_url)
    assert counters(client, settings) == zero(submitted=1, finished_done=1, texts_scored=5, chunks_done=3)

    # The session worker beats every 2 s: wait until its heartbeat says it is idle again.
    wait_until(
        lambda: (s := stats.snapshot(client, settings)).workers_online == 1 and s.workers_busy == 0,
        15,
        "the worker's heartbeat shows it idle",
    )
    found = samples(render(client, settings))
    assert sample(found, "sentq_jobs_submitted_total") == 1
    assert sample(found, "sentq_jobs_finished_total", outcome="done") == 1
    assert sample(found, "sentq_jobs_finished_total", outcome="failed") == 0
    assert sample(found, "sentq_jobs_running") == 0
    assert sample(found, "sentq_texts_scored_total") == 5
    assert sample(found, "sentq_texts_failed_total") == 0
    assert sample(found, "sentq_chunks_total", outcome="done") == 3
    assert sample(found, "sentq_chunk_retries_total") == 0
    assert sample(found, "sentq_queue_length", queue="sentq") == 0
    assert sample(found, "sentq_queue_length", queue="sentq.retrain") == 0
    assert sample(found, "sentq_queue_oldest_waiting_seconds", queue="sentq") == 0
    assert sample(found, "sentq_workers_online") == 1
    assert sample(found, "sentq_workers_busy") == sample(found, "sentq_worker_tasks_running") == 0
    current = registry.get(client, registry.ref_version(registry.current(client) or ""))
    assert sample(found, "sentq_model_info", version=f"v{current.version}") == 1
    assert sample(found, "sentq_model_accuracy_ratio") == pytest.approx(current.accuracy)
    newest = max(v.created for v in registry.versions(client))
    assert sample(found, "sentq_last_retrain_timestamp_seconds") == pytest.approx(newest)
    assert not any("hostname" in dict(labels) or "job" in dict(labels) for _, labels in found)
    assert b"# HELP sentq_queue_oldest_waiting_seconds " in render(client, settings)


def test_failed_texts_failed_chunks_and_retry(app: Any, redis_url: str, client: redis.Redis, tmp_path: Path) -> None:
    """A text that fails alone (one row missing), a chunk that fails whole, and `sentq retry` of it."""
    queue = "stats-fail-q"
    settings = settings_for(redis_url, queue=queue)
    corrupt = tmp_path / "corrupt.txt"
    write_texts(corrupt, 20)
    job = run_sentq(["submit", str(corrupt), "--chunk-size", "10"], redis_url, SENTQ_QUEUE=queue).stdout.strip()
    key = keys.chunk_input(job, 1)
    good = client.get(key)
    assert good is not None
    client.set(key, b"{not json")  # before any worker consumes the queue: chunk 1 will fail whole
    hooks = {"PYTHONPATH": str(REPO / "tests" / "hooks") + os.pathsep + str(REPO)}
    env = hooks | {"SENTQ_TEST_POISON": "raise:POISON-TEXT", "SENTQ_QUEUE": queue}
    w = Worker(redis_url, tmp_path / "w.log", name="stats-poison@%h", env_extra=env).start()
    try:
        waited = run_sentq(["wait", job, "--timeout", "60"], redis_url, SENTQ_QUEUE=queue)
        assert waited.returncode == 1, waited.stderr + w.output()
        assert counters(client, settings) == zero(
            submitted=1, finished_failed=1, texts_scored=10, chunks_done=1, chunks_failed=1
        )

        poisoned = tmp_path / "poisoned.txt"
        write_texts(poisoned, 30, poison_line=17)
        proc = run_sentq(["submit", str(poisoned), "--chunk-size", "10", "--wait"], redis_url, SENTQ_QUEUE=queue)
        assert proc.returncode == 1, proc.stderr + w.output()
        assert counters(client, settings) == zero(
            submitted=2, finished_failed=2, texts_scored=10 + 29, texts_failed=1, chunks_done=1 + 2, chunks_failed=2
        )

        client.set(key, good)
        assert control.retry(settings, job) == [1]
        waited = run_sentq(["wait", job, "--timeout", "60"], redis_url, SENTQ_QUEUE=queue)
        assert waited.returncode == 0, waited.stderr + w.output()
        # Events, not jobs: the retried job finished a second time, and its chunk was scored this time.
        assert counters(client, settings) == zero(
            submitted=2,
            finished_failed=2,
            finished_done=1,
            texts_scored=39 + 10,
            texts_failed=1,
            chunks_done=4,
            chunks_failed=2,
            retries=1,
        )
    finally:
        w.stop()


def test_queue_length_and_oldest_waiting_then_cancel(
    app: Any, client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """Chunks nobody consumes: queue length, age of the oldest chunk no worker holds; a cancel counts once."""
    queue = "stats-nobody-q"
    settings = settings_for(redis_url, queue=queue)
    src = tmp_path / "t.txt"
    write_texts(src, 30)
    job = control.submit(settings, TextSource(str(src)), chunk_size=10).id
    # The sends and the lease below are made up: no worker's reconciler (the session worker's runs on this Redis)
    # may act on them, so the job is marked as another broker's.
    client.hset(keys.job(job), "broker", "no-such-broker")
    now = client.time()
    redis_now = now[0] + now[1] / 1e6
    # Pretend the chunks were sent 300, 200 and 100 s ago; chunk 0 is being scored, so chunk 1 waits longest.
    client.zadd(keys.job_pending(job), {"0": redis_now - 300, "1": redis_now - 200, "2": redis_now - 100})
    assert ledger.claim(client, job, 0, holder="someone/1").payload is not None

    snap = stats.snapshot(client, settings)
    assert snap.jobs_running == 1
    assert snap.queues[queue].length == 3
    assert 200 <= snap.queues[queue].oldest_waiting_s < 230
    assert snap.queues["sentq.retrain"] == stats.QueueStats(0, 0.0)
    found = samples(render(client, settings))
    assert sample(found, "sentq_queue_length", queue=queue) == 3
    assert 200 <= sample(found, "sentq_queue_oldest_waiting_seconds", queue=queue) < 230
    assert sample(found, "sentq_jobs_running") == 1

    jobs.cancel(client, job)
    jobs.cancel(client, job)
    jobs.mark_invalid(client, job, "too late: it was cancelled", staged_chunks=0)
    assert jobs.get(client, job).state == jobs.JobState.CANCELLED
    assert counters(client, settings) == zero(submitted=1, finished_cancelled=1)


def test_oldest_waiting_looks_past_many_leased_chunks(quiet: tuple[redis.Redis, str]) -> None:
    """More chunks leased than the snapshot peeks at: the oldest unleased one is still found."""
    client, redis_url = quiet
    job, queue = "peekjob00001", "stats-peek-q"
    client.hset(keys.job(job), mapping={"state": "running", "queue": queue, "broker": "redis"})
    client.zadd(keys.ACTIVE_JOBS, {job: 1})
    secs, micros = client.time()
    now = secs + micros / 1e6
    n = stats.PEEK_PENDING + 5
    client.zadd(keys.job_pending(job), {str(i): now - 1000 + i for i in range(n + 1)})
    client.hset(keys.job_leases(job), mapping={str(i): f"w/1|{now}" for i in range(n)})
    snap = stats.snapshot(client, settings_for(redis_url), depth=lambda q: 7)
    assert snap.queues[queue].length == 7
    assert 1000 - n <= snap.queues[queue].oldest_waiting_s < 1000 - n + 30


def test_invalid_input_counts_once(client: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    """A file that fails validation creates no job and counts nothing; streams that fail part-way (after chunks were
    queued): each job counted invalid once."""
    settings = settings_for(redis_url)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\n\xff broken\n")
    assert run_sentq(["submit", str(bad)], redis_url).returncode == 2
    assert counters(client, settings) == zero()
    # Past the reader's buffer, so chunks are queued (where no worker takes them) before the bad line is read.
    lines = b"".join(b"text %d\n" % i for i in range(20_000)) + b"\xff bad\n"
    for _ in range(2):
        proc = run_sentq(["submit", "-", "--chunk-size", "1000"], redis_url, input=lines, SENTQ_QUEUE="counts-q")
        assert proc.returncode == 2, proc.stderr
    assert counters(client, settings) == zero(submitted=2, finished_invalid=2)
    for record in jobs.recent(client, settings):
        assert record.state == jobs.JobState.INVALID
        jobs.mark_invalid(client, record.id, "again", staged_chunks=0)  # a second follower noticing: no-op
        assert jobs.get(client, record.id).error == record.error
    assert counters(client, settings) == zero(submitted=2, finished_invalid=2)


def test_duplicate_steps_count_once(quiet: tuple[redis.Redis, str]) -> None:
    """A redelivered completion, a late failure, a second seal and a second sweep change nothing."""
    client, redis_url = quiet
    job = "dupjob000001"
    client.hset(keys.job(job), mapping={"state": "queued", "queue": "q", "broker": "redis"})
    client.expire(keys.job(job), 3600)
    client.zadd(keys.ACTIVE_JOBS, {job: 1})
    for index in range(3):
        client.set(keys.chunk_input(job, index), b"SQB1staged")
    ledger.mark_sent(client, job, range(3))
    settings = settings_for(redis_url)

    assert ledger.complete(client, job, 0, rows=b"r\n" * 4, texts=4, compute_s=0.1, wait_s=0.0)
    assert not ledger.complete(client, job, 0, rows=b"r\n" * 4, texts=4, compute_s=0.1, wait_s=0.0)
    ledger.fail(client, job, 0, "late failure of a chunk already done")
    assert ledger.complete(client, job, 1, rows=b"r\n", texts=1, compute_s=0.0, wait_s=0.0, bad={9: "ValueError"})
    assert not ledger.complete(client, job, 1, rows=b"r\n", texts=1, compute_s=0.0, wait_s=0.0, bad={9: "ValueError"})
    ledger.fail(client, job, 1, "and again")
    assert counters(client, settings) == zero(running=1, texts_scored=5, texts_failed=1, chunks_done=1, chunks_failed=1)

    # Chunk 2's message was lost 100 s ago and the queue is empty: re-sent once; the next sweep finds it fresh.
    secs, micros = client.time()
    client.zadd(keys.job_pending(job), {"2": secs + micros / 1e6 - 100})
    view = ledger.QueueView(depth=0)
    for _ in range(2):
        ledger.reconcile(
            client,
            broker_id="redis",
            view=lambda q: view,
            publish=lambda *a: None,
            beat_every_s=settings.heartbeat_s,
            lost_after_s=settings.lost_after_s,
        )
    assert counters(client, settings)["retries"] == 1

    ledger.fail(client, job, 2, "boom")
    ledger.fail(client, job, 2, "boom again")
    ledger.seal(client, job, chunks=3, texts=9, blank_lines=0)  # the producer's last word finishes it
    ledger.seal(client, job, chunks=3, texts=9, blank_lines=0)
    assert counters(client, settings) == zero(
        texts_scored=5, texts_failed=1, chunks_done=1, chunks_failed=2, finished_failed=1, retries=1
    )


def test_http_stats_from_two_processes_add_up(app: Any, client: redis.Redis, redis_url: str) -> None:
    """Two API processes' requests, flushed separately (one after a failed flush), render as one set of numbers."""
    first, second = HttpStats(), HttpStats()
    first.record("/jobs/{job_id}", "GET", 200, 0.003)
    first.record("/jobs/{job_id}", "GET", 200, 0.2)
    first.record("/jobs", "POST", 400, 0.01)
    second.record("/jobs/{job_id}", "GET", 200, 3.0)
    second.record("/jobs/{job_id}", "GET", 404, 30.0)

    down = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    with pytest.raises(redis.ConnectionError):
        second.flush(down)  # Redis unreachable: its requests are kept for the next flush
    assert first.flush(client) == 3
    assert second.flush(client) == 2
    assert first.flush(client) == 0 and second.flush(client) == 0

    found = samples(render(client, settings_for(redis_url)))
    get = {"route": "/jobs/{job_id}", "method": "GET"}
    assert sample(found, "sentq_http_requests_total", **get, code="200") == 3
    assert sample(found, "sentq_http_requests_total", **get, code="404") == 1
    assert sample(found, "sentq_http_requests_total", route="/jobs", method="POST", code="400") == 1
    expected = {0.005: 1, 0.01: 1, 0.025: 1, 0.05: 1, 0.1: 1, 0.25: 2, 0.5: 2, 1.0: 2, 2.5: 2, 5.0: 3, 10.0: 3}
    for bound in BUCKETS_S[:-1]:
        le = repr(bound)
        assert sample(found, "sentq_http_request_duration_seconds_bucket", **get, le=le) == expected[bound], le
    assert sample(found, "sentq_http_request_duration_seconds_bucket", **get, le="+Inf") == 4
    assert sample(found, "sentq_http_request_duration_seconds_count", **get) == 4
    assert sample(found, "sentq_http_request_duration_seconds_sum", **get) == pytest.approx(33.203)
    post = {"route": "/jobs", "method": "POST"}
    assert sample(found, "sentq_http_request_duration_seconds_bucket", **post, le="0.01") == 1
    assert sample(found, "sentq_http_request_duration_seconds_bucket", **post, le="0.005") == 0


def test_a_scrape_forgets_the_expired_heartbeats_it_finds(quiet: tuple[redis.Redis, str]) -> None:
    """Every worker start adds an instance to the live index; a /metrics scrape (its snapshot) drops those whose
    heartbeat expired (not only `sentq workers` does), so what a scrape reads stays the live workers."""
    client, url = quiet
    ledger.beat(client, "alive@h/1-a", info={"queues": ["sentq"], "busy": 2}, running=[], ttl_s=60)
    client.zadd(keys.WORKERS_LIVE, {f"ghost@h/{i}-x": i for i in range(100)})
    snap = stats.snapshot(client, settings_for(url), depth=no_broker)
    assert (snap.workers_online, snap.workers_busy, snap.tasks_running) == (1, 1, 2)  # one worker, two tasks
    assert client.zrange(keys.WORKERS_LIVE, 0, -1) == [b"alive@h/1-a"]
