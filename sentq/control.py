"""What the CLI and the HTTP API do, as plain functions over settings: submit, follow, status, cancel, retry."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from sentq import jobs, keys, ledger, store
from sentq.settings import Settings

if TYPE_CHECKING:
    from sentq.inputs import TextSource


def worker_module(settings: Settings) -> Any:
    """The Celery app module, pointed at ``settings`` (imported late: Celery is slow to import)."""
    from sentq import worker

    if worker.settings != settings:
        worker.configure(settings)
    return worker


def connect(settings: Settings) -> redis.Redis:
    """The backend Redis, checked to answer (BrokerUnavailableError within the connect timeout if not)."""
    return store.connect_checked(settings)


def check_broker(settings: Settings) -> None:
    """Make sure the broker answers too when it is not the backend Redis (e.g. RabbitMQ)."""
    if settings.broker_is_redis and settings.broker_url == settings.backend_url:
        return
    if settings.broker_is_redis:
        store.check(store.connect(settings, url=settings.broker_url), settings, url=settings.broker_url)
        return
    app = worker_module(settings).app
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.connect_timeout_s)
    except Exception as exc:  # kombu raises many types (OperationalError, socket errors, AccessRefused...)
        raise store.unavailable(settings.broker_url, exc) from None


def submit(
    settings: Settings,
    source: TextSource,
    *,
    chunk_size: int | None = None,
    model_version: str | None = None,
    on_created: Callable[[str], None] | None = None,
) -> jobs.JobRecord:
    """Create a job for ``source``, stage its chunks in Redis and queue them; ``on_created`` gets the id at once."""
    from sentq import registry  # here, not at the top: `sentq status` need not import the model's stack

    client = connect(settings)
    check_broker(settings)
    size = chunk_size or settings.chunk_size
    if model_version is not None:
        ref: str | None = registry.get(client, registry.parse_version(model_version)).ref
    else:
        ref = registry.current(client)  # None on a fresh install: the first worker pins the bootstrapped v1
    job_id = jobs.create(client, settings, source=source, chunk_size=size, model_ref=ref)
    if on_created is not None:
        on_created(job_id)
    publish = worker_module(settings).publisher(settings.queue)
    try:
        return jobs.stage(
            client, settings, job_id, source, chunk_size=size, publish=lambda indexes, at: publish(job_id, indexes, at)
        )
    except redis.RedisError as exc:
        raise store.unavailable(settings.backend_url, exc) from None


def status(settings: Settings, job_id: str) -> tuple[jobs.JobRecord, dict[int, ledger.Failure]]:
    """A job's record and its failed chunks (why, and which input lines failed alone)."""
    client = connect(settings)
    record = jobs.get(client, job_id)
    return record, jobs.failures(client, job_id) if record.chunks_failed else {}


def ledger_summary(settings: Settings, job_id: str) -> ledger.Ledger:
    """Where the job's unfinished chunks are: pending, leased (by whom), probed."""
    return ledger.summary(connect(settings), job_id)


def recent(settings: Settings, *, limit: int = 20) -> list[jobs.JobRecord]:
    return jobs.recent(connect(settings), settings, limit=limit)


def cancel(settings: Settings, job_id: str) -> jobs.JobRecord:
    return jobs.cancel(connect(settings), job_id)


def retry(settings: Settings, job_id: str) -> list[int]:
    """Queue the job's failed chunks again; returns their indexes."""
    client = connect(settings)
    check_broker(settings)
    indexes = jobs.reopen_failed(client, job_id)
    if indexes:
        sent_at = float(ledger.mark_sent(client, job_id, indexes))
        worker_module(settings).publisher(jobs.get(client, job_id).queue or settings.queue)(job_id, indexes, sent_at)
    return indexes


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    host: str
    pid: int
    concurrency: int
    queues: list[str]
    busy: int
    running: list[str]  # job:chunk items
    tasks_done: int
    model: str
    last_task_at: float | None
    beat_age_s: float


@dataclass(frozen=True)
class DeadWorker:
    name: str
    found_at: float
    chunks: list[str]  # job:chunk items it held, re-sent to live workers


def workers(settings: Settings) -> tuple[list[WorkerInfo], list[DeadWorker], dict[str, int]]:
    """Live workers (their heartbeats in Redis), the ones found dead holding chunks lately, and queue depths."""
    client = connect(settings)
    check_broker(settings)
    now = client.time()
    now_s = now[0] + now[1] / 1e6
    seen = {store.text(k): v for k, v in client.hgetall(keys.WORKER_STATS).items()}
    found = []
    for w in sorted(ledger.live_workers(client), key=lambda w: w.instance):
        name = w.instance.rsplit("/", 1)[0]
        last = json.loads(seen[name]) if name in seen else {}
        found.append(
            WorkerInfo(
                name=name,
                host=str(w.info.get("host", "")),
                pid=int(w.info.get("pid", 0)),
                concurrency=int(w.info.get("concurrency", 0)),
                queues=w.queues,
                busy=int(w.info.get("busy", 0)),
                running=w.running,
                tasks_done=int(w.info.get("tasks_done", 0)),
                model=f"v{last['model'].split(':')[0]}" if last.get("model") else "-",
                last_task_at=last.get("at"),
                beat_age_s=round(max(now_s - w.beat, 0.0), 1),
            )
        )
    dead = [
        DeadWorker(d["instance"].rsplit("/", 1)[0], float(d["found_at"]), list(d.get("chunks", [])))
        for d in ledger.dead_workers(client)
    ]
    return found, dead, queue_depths(settings)


def queue_depths(settings: Settings) -> dict[str, int]:
    """Messages waiting in each of sentq's queues."""
    from sentq import broker

    return broker.queue_depths(worker_module(settings).app, settings)
