"""What the CLI and the HTTP API do, as plain functions over settings: submit, follow, status, cancel, retry."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from sentq import jobs, keys, store
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
            client, settings, job_id, source, chunk_size=size, publish=lambda indexes: publish(job_id, indexes)
        )
    except redis.RedisError as exc:
        raise store.unavailable(settings.backend_url, exc) from None


def status(settings: Settings, job_id: str) -> tuple[jobs.JobRecord, dict[int, str]]:
    """A job's record and the errors of its failed chunks."""
    client = connect(settings)
    record = jobs.get(client, job_id)
    return record, jobs.failures(client, job_id) if record.chunks_failed else {}


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
        worker_module(settings).publisher(settings.queue)(job_id, indexes)
    return indexes


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    concurrency: int
    tasks_done: int
    active: int
    model: str
    last_task_at: float | None


def workers(settings: Settings, *, timeout_s: float = 1.0) -> tuple[list[WorkerInfo], dict[str, int]]:
    """Live workers (they answer a broadcast within ``timeout_s``) and the depth of sentq's queues."""
    client = connect(settings)
    check_broker(settings)
    app = worker_module(settings).app
    inspect = app.control.inspect(timeout=timeout_s)
    stats = inspect.stats() or {}
    active = inspect.active() or {}
    seen = {store.text(k): v for k, v in client.hgetall(keys.WORKER_STATS).items()}
    found = []
    for name, info in sorted(stats.items()):
        last = json.loads(seen[name]) if name in seen else {}
        found.append(
            WorkerInfo(
                name=name,
                concurrency=int(info.get("pool", {}).get("max-concurrency", 0)),
                tasks_done=sum(int(n) for n in info.get("total", {}).values()),
                active=len(active.get(name, [])),
                model=f"v{last['model'].split(':')[0]}" if last.get("model") else "-",
                last_task_at=last.get("at"),
            )
        )
    return found, queue_depths(settings)


def queue_depths(settings: Settings) -> dict[str, int]:
    """Messages waiting in each of sentq's queues."""
    from kombu.exceptions import ChannelError

    app = worker_module(settings).app
    depths = {}
    with app.connection_for_write() as conn:
        for queue in (settings.queue, settings.retrain_queue):
            channel = conn.channel()  # AMQP closes a channel whose passive declare fails: one per queue
            try:
                depths[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:  # no worker ever declared it: nothing is queued there
                depths[queue] = 0
            finally:
                try:
                    channel.close()
                except ChannelError:
                    pass
    return depths
