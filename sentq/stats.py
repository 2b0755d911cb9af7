"""What an operator watches, read from Redis in one go: the ledger's cumulative counters, jobs and queues in flight,
live workers and the current model; the same numbers from any process on any host (``/metrics`` renders them)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from sentq import keys, ledger
from sentq.registry import ModelVersion, ref_version
from sentq.settings import Settings
from sentq.store import text

JOB_OUTCOMES = ("done", "failed", "cancelled", "invalid")
CHUNK_OUTCOMES = ("done", "failed")
# Pending chunks read per job to find its oldest one not leased: the oldest sends are mostly leased (being scored),
# so a job needs a second look only when more of its chunks than this are leased at once.
PEEK_PENDING = 64


@dataclass(frozen=True)
class QueueStats:
    length: int  # messages waiting in the broker
    oldest_waiting_s: float  # age of the oldest chunk sent to it and not yet taken by a worker; 0 when none waits
    jobs: int = 0  # unfinished jobs on it
    chunks_waiting: int = 0  # their chunks sent and not yet taken by a worker (by the ledger)

    @property
    def leftovers(self) -> int:
        """Messages that carry no waiting chunk of an unfinished job: a cancelled, finished or forgotten job's (a
        worker drops each as it takes it) or a second message for one chunk (a re-send); by the ledger's count."""
        return max(self.length - self.chunks_waiting, 0)


@dataclass(frozen=True)
class Snapshot:
    """One reading. Counters are cumulative since the Redis was new (they count events: a job retried with
    `sentq retry` finishes, and counts, again); the rest is the state at ``at`` (Redis time)."""

    at: float
    jobs_submitted: int
    jobs_finished: Mapping[str, int]  # outcome (JOB_OUTCOMES) -> jobs that reached it
    jobs_running: int  # submitted, not finished (staging, queued or running)
    texts_scored: int
    texts_failed: int  # texts that failed alone (their rows are missing; whole failed chunks count in ``chunks``)
    chunks: Mapping[str, int]  # outcome (CHUNK_OUTCOMES) -> chunks recorded so
    chunk_retries: int  # chunks re-sent by the reconciler or re-queued by `sentq retry`
    queues: Mapping[str, QueueStats]
    workers_online: int
    workers_busy: int  # live workers running at least one task now
    tasks_running: int  # tasks the live workers' processes are running now
    # When the newest model version was published (a retrain, the bootstrap of v1 or an import: the registry does not
    # tell them apart, and a retrain that was not promoted still succeeded); None on a fresh installation.
    last_retrain_at: float | None
    model: ModelVersion | None  # the current version


def snapshot(client: redis.Redis, settings: Settings, *, depth: Callable[[str], int] | None = None) -> Snapshot:
    """Read everything in two pipelined round trips (a third in the rare case below, a fourth to drop workers whose
    heartbeat expired from the live index), plus one broker query per queue.

    ``depth(queue)`` counts the messages waiting in a queue; by default the broker is asked through the Celery app,
    so it works on RabbitMQ too. Queues: the scoring and retrain queues plus those of unfinished jobs.
    """
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.hgetall(keys.STATS)
    pipe.zrange(keys.ACTIVE_JOBS, 0, -1)
    pipe.zrange(keys.WORKERS_LIVE, 0, -1)
    pipe.get(keys.MODEL_CURRENT)
    pipe.hvals(keys.MODEL_VERSIONS)
    (secs, micros), raw_stats, raw_jobs, raw_workers, current, raw_versions = pipe.execute()
    now = secs + micros / 1e6
    counts = {text(k): int(v) for k, v in raw_stats.items()}
    job_ids = [text(j) for j in raw_jobs]
    instances = [text(i) for i in raw_workers]

    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(keys.job(job_id), ["state", "queue"])
        pipe.hkeys(keys.job_leases(job_id))
        pipe.zrange(keys.job_pending(job_id), 0, PEEK_PENDING - 1, withscores=True)
        pipe.zcard(keys.job_pending(job_id))
    for instance in instances:
        pipe.hget(keys.worker_beat(instance), "info")  # gone once its heartbeat expired
    replies = pipe.execute()

    running = 0
    job_queues: dict[str, int] = {}  # queue -> unfinished jobs on it
    waiting: dict[str, int] = {}  # queue -> their chunks sent and not taken
    oldest: dict[str, float] = {}  # queue -> oldest send stamp of a chunk waiting in it
    again: list[tuple[str, str, set[str]]] = []
    for n, job_id in enumerate(job_ids):
        (state, queue), leased, pending, sent = replies[4 * n : 4 * n + 4]
        if state is None or text(state) in JOB_OUTCOMES:
            continue  # finished or expired: the reconciler drops it from the index at its next sweep
        running += 1
        name = text(queue) if queue else settings.queue
        held = {text(i) for i in leased}
        waiting[name] = waiting.get(name, 0) + max(int(sent) - len(held), 0)
        stamp = _oldest_unleased(pending, held)
        if stamp is None and len(pending) == PEEK_PENDING:
            again.append((job_id, name, held))
        _keep_oldest(oldest, name, stamp)
        job_queues[name] = job_queues.get(name, 0) + 1
    if again:  # every chunk peeked at is leased: only len(held) of them can be, so this many more decide
        pipe = client.pipeline(transaction=False)
        for job_id, _, held in again:
            pipe.zrange(keys.job_pending(job_id), 0, len(held), withscores=True)
        for (_, name, held), pending in zip(again, pipe.execute(), strict=True):
            _keep_oldest(oldest, name, _oldest_unleased(pending, held))

    beats = replies[4 * len(job_ids) :]
    infos = [json.loads(raw) for raw in beats if raw is not None]
    ledger.forget_gone(client, [i for i, raw in zip(instances, beats, strict=True) if raw is None])
    versions = [ModelVersion.from_json(raw) for raw in raw_versions]
    model = None
    if current is not None:
        number = ref_version(text(current))
        model = next((v for v in versions if v.version == number), None)

    if depth is None:
        depth = _broker_depth(settings)
    names = sorted({settings.queue, settings.retrain_queue, *job_queues})
    return Snapshot(
        at=now,
        jobs_submitted=counts.get("jobs_submitted", 0),
        jobs_finished={o: counts.get(f"jobs_finished:{o}", 0) for o in JOB_OUTCOMES},
        jobs_running=running,
        texts_scored=counts.get("texts_scored", 0),
        texts_failed=counts.get("texts_failed", 0),
        chunks={o: counts.get(f"chunks:{o}", 0) for o in CHUNK_OUTCOMES},
        chunk_retries=counts.get("chunk_retries", 0),
        queues={
            q: QueueStats(
                depth(q), round(max(now - oldest.get(q, now), 0.0), 3), job_queues.get(q, 0), waiting.get(q, 0)
            )
            for q in names
        },
        workers_online=len(infos),
        workers_busy=sum(1 for info in infos if int(info.get("busy", 0)) > 0),
        tasks_running=sum(int(info.get("busy", 0)) for info in infos),
        last_retrain_at=max((v.created for v in versions), default=None),
        model=model,
    )


@dataclass(frozen=True)
class Minute:
    """One minute of the last hour (Redis time), from the ledger's per-minute ring (keys.STATS_MINUTES)."""

    start: float  # when the minute began (Unix time)
    texts: int  # texts scored in it
    chunks_failed: int
    texts_failed: int  # texts that failed alone


def last_hour(client: redis.Redis, *, minutes: int = 60) -> list[Minute]:
    """The last ``minutes`` minutes, oldest first, the current (partial) one last; a minute nothing finished in
    counts zeros. One round trip, a hash of at most 4 x ledger.MINUTE_SLOTS fields."""
    minutes = min(minutes, ledger.MINUTE_SLOTS - 1)
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.hgetall(keys.STATS_MINUTES)
    (secs, _), raw = pipe.execute()
    ring = {text(k): text(v) for k, v in raw.items()}
    now_m = int(secs) // 60
    found = []
    for m in range(now_m - minutes + 1, now_m + 1):
        slot = m % ledger.MINUTE_SLOTS
        if ring.get(f"m{slot}") == str(m):
            counts = [int(ring.get(f"{kind}{slot}", "0")) for kind in "tcf"]
        else:
            counts = [0, 0, 0]
        found.append(Minute(float(m * 60), *counts))
    return found


def _oldest_unleased(pending: list[tuple[Any, float]], held: set[str]) -> float | None:
    """Send stamp of the first (oldest) pending chunk no worker holds; ``pending`` is sorted by stamp."""
    return next((float(stamp) for item, stamp in pending if text(item) not in held), None)


def _keep_oldest(oldest: dict[str, float], queue: str, stamp: float | None) -> None:
    if stamp is not None and stamp < oldest.get(queue, float("inf")):
        oldest[queue] = stamp


def _broker_depth(settings: Settings) -> Callable[[str], int]:
    from sentq import broker, control  # late: Celery is slow to import, and only a scrape needs it

    app = control.worker_module(settings).app
    return lambda queue: broker.depth(app, queue)
