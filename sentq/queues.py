"""What each queue holds (jobs, chunks, the oldest waiting), and draining the leftover messages of stopped jobs, as
plain functions over settings for the console and the API.

A drain removes only messages of jobs that are not running (finished, cancelled, invalid, or forgotten: no record),
each only if it is still the very message read. It never touches a running job's: the ledger counts on those. A
job retried or resumed while it is drained gets new messages of its own (the old ones were leftovers already, and
the reconciler re-sends any chunk whose message is gone), so a drain cannot strand a chunk either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sentq import broker, control, keys, stats
from sentq.errors import ConfigError, JobStateError, UnknownNameError
from sentq.settings import Settings
from sentq.store import text

# The queues of this many of the newest jobs are shown (and may be drained) besides the scoring and retrain queues
# and those of unfinished jobs: a job cancelled or forgotten lately leaves its leftovers on a queue of its own.
RECENT_JOBS = 200
STOPPED = ("done", "failed", "cancelled", "invalid")


@dataclass(frozen=True)
class QueuedJob:
    """A job with messages in a queue: its state ("forgotten" when its record is gone), and whether a drain may
    remove its messages (it is not running)."""

    id: str
    state: str
    source: str
    messages: int
    oldest_s: float | None  # age of its oldest message (Redis time), None when its messages carry no send stamp

    @property
    def drainable(self) -> bool:
        return self.state in STOPPED or self.state == "forgotten"


@dataclass(frozen=True)
class QueueContents:
    name: str
    figures: stats.QueueStats  # the ledger's view: chunks of unfinished jobs waiting, the oldest's age, leftovers
    readable: bool  # a Redis broker: its messages were read (on RabbitMQ only the depth is known)
    looked_at: int = 0  # messages read, the oldest first (at most broker.SHOW_MAX)
    jobs: list[QueuedJob] = field(default_factory=list)
    other: int = 0  # messages of other tasks (retrains, batch scoring)

    @property
    def drainable(self) -> int:
        return sum(j.messages for j in self.jobs if j.drainable)


def names(settings: Settings) -> list[str]:
    """The queues worth showing: scoring and retrain, and those of unfinished and recent jobs."""
    client = control.connect(settings)
    pipe = client.pipeline(transaction=False)
    pipe.zrange(keys.ACTIVE_JOBS, 0, -1)
    pipe.zrevrange(keys.JOBS_INDEX, 0, RECENT_JOBS - 1)
    active, recent = pipe.execute()
    ids = {text(j) for j in [*active, *recent]}
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(keys.job(job_id), "queue")
    found = {text(q) for q in pipe.execute() if q}
    return sorted({settings.queue, settings.retrain_queue, *found})


def contents(settings: Settings) -> tuple[stats.Snapshot, list[QueueContents]]:
    """Every queue of ``names``: the ledger's figures and, on a Redis broker, its messages by job."""
    client = control.connect(settings)
    snap = stats.snapshot(client, settings)
    found = []
    bclient = broker.broker_client(settings)
    now = snap.at
    for name in names(settings):
        figures = snap.queues.get(name) or stats.QueueStats(0, 0.0)
        if bclient is None:
            found.append(QueueContents(name, figures, readable=False))
            continue
        held = broker.contents(bclient, name, limit=broker.SHOW_MAX)
        figures = snap.queues.get(name) or stats.QueueStats(held.length, 0.0)
        records = _records(settings, list(held.jobs))
        queued = [
            QueuedJob(
                job_id,
                *records[job_id],
                messages=m.count,
                oldest_s=round(max(now - m.oldest_sent, 0.0), 1) if m.oldest_sent is not None else None,
            )
            for job_id, m in held.jobs.items()
        ]
        queued.sort(key=lambda j: (-j.messages, j.id))
        found.append(QueueContents(name, figures, True, held.looked_at, queued, held.other))
    return snap, found


def _records(settings: Settings, ids: list[str]) -> dict[str, tuple[str, str]]:
    """Job id -> (state, source); ("forgotten", "") for a job whose record is gone."""
    client = control.connect(settings)
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(keys.job(job_id), ["state", "source"])
    return {
        job_id: (text(state), text(source or b"")) if state is not None else ("forgotten", "")
        for job_id, (state, source) in zip(ids, pipe.execute(), strict=True)
    }


@dataclass(frozen=True)
class Drained:
    queue: str
    messages: int  # removed
    jobs: int  # stopped jobs whose messages were removed
    more: bool  # the queue is longer than one drain reads: drain again for the rest


def drain(settings: Settings, queue: str, *, job_id: str | None = None) -> Drained:
    """Remove from ``queue`` the messages of stopped jobs (or of ``job_id`` alone, which must not be running).
    ConfigError on RabbitMQ, UnknownNameError for a queue sentq does not use, JobStateError for a running job."""
    if not settings.broker_is_redis:
        raise ConfigError(
            "only a Redis broker's queue can be drained: on RabbitMQ the workers drop a stopped job's messages as "
            "they take them"
        )
    if queue not in names(settings):
        raise UnknownNameError(f"{queue!r} is not one of sentq's queues: see the queues page or GET /v1/queues")
    if job_id is not None and not keys.is_job_id(job_id):
        raise ConfigError("that is not a job id: a job id is 12 hex digits")
    bclient = broker.broker_client(settings)
    assert bclient is not None
    held = broker.contents(bclient, queue)
    wanted = [job_id] if job_id is not None else list(held.jobs)
    records = _records(settings, wanted)
    stopped = {j for j, (state, _) in records.items() if state in STOPPED or state == "forgotten"}
    if job_id is not None and job_id not in stopped:
        raise JobStateError(
            f"job {job_id} is {records[job_id][0]}: its messages carry chunks it still needs; cancel it first"
        )
    removed = broker.drain(bclient, queue, held, stopped & set(held.jobs))
    return Drained(queue, removed, len(stopped & set(held.jobs)), held.looked_at < held.length)
