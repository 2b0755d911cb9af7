"""What the CLI and the HTTP API do, as plain functions over settings: submit, follow, status, cancel, retry."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from sentq import jobs, keys, ledger, store
from sentq.errors import (
    BrokerUnavailableError,
    ConfigError,
    InputError,
    JobNotFoundError,
    JobStateError,
    ModelNotFoundError,
    UnknownNameError,
)
from sentq.settings import Settings
from sentq.store import text

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


def check_login(settings: Settings) -> None:
    """Refuse at once credentials that the backend Redis or the broker rejects (BrokerUnavailableError, URL masked).

    A server that does not answer passes: a worker started before its servers waits for them (Celery retries on
    startup). A wrong password never comes right by waiting; Celery would end in a traceback (RabbitMQ) or retry.
    """
    from amqp.exceptions import AccessRefused  # type: ignore[import-untyped]

    for check in (connect, check_broker):
        try:
            check(settings)
        except BrokerUnavailableError as exc:
            cause: BaseException | None = exc
            while cause is not None:  # the library's error is kept as the context of ours (``raise ... from None``)
                if isinstance(cause, redis.AuthenticationError | AccessRefused):
                    raise
                cause = cause.__cause__ or cause.__context__


def submit(
    settings: Settings,
    source: TextSource,
    *,
    chunk_size: int | None = None,
    model_version: str | None = None,
    on_created: Callable[[str], None] | None = None,
    idempotency_key: str | None = None,
) -> jobs.JobRecord:
    """Create a job for ``source``, stage its chunks in Redis and queue them; ``on_created`` gets the id once the job
    exists: just before its first chunk is staged (a file is checked whole first, a stream up to its first chunk), so
    an input refused before anything is queued creates no job and says no id.

    With ``idempotency_key`` the job is recorded as that key's (see ``idempotent_job``): the key is held from before the
    body is read, so a second upload with it meanwhile is a JobStateError; a refused upload lets it go.
    """
    from sentq import registry  # here, not at the top: `sentq status` need not import the model's stack

    client = connect(settings)
    check_broker(settings)
    size = chunk_size or settings.chunk_size
    if model_version is not None:
        ref: str | None = registry.get(client, registry.parse_version(model_version)).ref
    else:
        ref = registry.current(client)  # None on a fresh install: the first worker pins the bootstrapped v1
    job_id = jobs.new_job_id()
    if idempotency_key is not None:
        _claim_idempotency(client, settings, idempotency_key, job_id)
    created = False

    def create() -> None:
        nonlocal created
        jobs.create(client, settings, source=source, chunk_size=size, model_ref=ref, job_id=job_id)
        created = True
        if idempotency_key is not None:  # the key now names a job, for as long as the job lives
            client.set(_idempotency_key(idempotency_key), job_id, ex=settings.result_expires_s)
        if ref is not None and not registry.exists(client, registry.ref_version(ref)):
            # The retention removed it between the read above and the pin the job record carries (it keeps any
            # version pinned from then on): the job would fail on every chunk.
            why = f"model v{registry.ref_version(ref)} was removed meanwhile"
            jobs.mark_invalid(client, job_id, why, staged_chunks=0)
            raise ModelNotFoundError(
                f"model v{registry.ref_version(ref)} was removed from the registry (SENTQ_MODEL_KEEP) while job "
                f"{job_id} was submitted; submit again (see `sentq model list`)"
            )
        if on_created is not None:
            on_created(job_id)

    try:
        return _stage(settings, client, job_id, source, settings.queue, chunk_size=size, create=create)
    finally:
        if idempotency_key is not None and not created:  # refused before its job existed: the key is free again
            with contextlib.suppress(redis.RedisError):
                client.eval(_RELEASE, 1, _idempotency_key(idempotency_key), _READING + job_id)


def resume_source(
    settings: Settings,
    job_id: str,
    path: str,
    *,
    fmt: str | None = None,
    column: str | None = None,
    field: str | None = None,
    chunk_size: int | None = None,
    live: bool = False,
) -> tuple[TextSource, int]:
    """``path`` read as job ``job_id`` read its input (format, column, field), with its chunk size: what
    `submit --resume` and `retry --from` read again. An option given that differs from the job's is a ConfigError."""
    from sentq.inputs import TextSource

    client = connect(settings)
    record = jobs.get(client, job_id)
    read_as = client.hmget(keys.job(job_id), "column", "field")
    was_column, was_field = (text(v) if v is not None else None for v in read_as)
    for name, given, was in (
        ("--format", fmt, record.format),
        ("--column", column, was_column),
        ("--field", field, was_field or "text"),
        ("--chunk-size", chunk_size, record.chunk_size),
    ):
        if given is not None and str(given) != str(was):
            raise ConfigError(
                f"{name} {given} is not how job {job_id} read its input ({name} {was}); drop it: the input is read "
                "again exactly as the job first read it"
            )
    source = TextSource.from_settings(path, settings, live=live, fmt=record.format, column=was_column, field=was_field)
    return source, record.chunk_size


def resume(
    settings: Settings,
    job_id: str,
    source: TextSource,
    chunk_size: int,
    on_resumed: Callable[[str], None] | None = None,
) -> jobs.JobRecord:
    """Continue staging job ``job_id`` from ``source`` (see ``jobs.stage``'s ``resume``); returns the sealed record."""
    client = connect(settings)
    check_broker(settings)
    queue = jobs.get(client, job_id).queue or settings.queue
    return _stage(settings, client, job_id, source, queue, chunk_size=chunk_size, resume=True, on_resumed=on_resumed)


def _stage(
    settings: Settings, client: redis.Redis, job_id: str, source: TextSource, queue: str, **how: Any
) -> jobs.JobRecord:
    """``jobs.stage`` of ``source`` as job ``job_id`` (``how``: its options), its chunks' tasks sent on ``queue``."""
    publish = worker_module(settings).publisher(queue)

    def sent(indexes: list[int], at: float) -> None:
        publish(job_id, indexes, at)

    try:
        return jobs.stage(client, settings, job_id, source, publish=sent, **how)
    except redis.RedisError as exc:
        raise store.unavailable(settings.backend_url, exc) from None


def score_batch(settings: Settings, texts: list[str]) -> str:
    """Queue the seed's `sentq.batch_score` for ``texts``; returns its task id, recorded as issued (for 404s)."""
    from celery.utils import uuid
    from kombu.exceptions import OperationalError

    too_long = next((i for i, t in enumerate(texts) if len(t) > settings.max_text_chars), None)
    if too_long is not None:
        raise InputError(
            f"text #{too_long + 1} has {len(texts[too_long]):,} characters, over the limit of "
            f"{settings.max_text_chars:,} (SENTQ_MAX_TEXT_CHARS); shorten or split it"
        )
    from sentq.rows import MAX_CHUNK_CHARS

    total = sum(map(len, texts))
    if total > MAX_CHUNK_CHARS:  # the worker refuses such a batch (worker.batch_score): say so before queueing it
        raise InputError(
            f"the batch holds {total:,} characters, over the {MAX_CHUNK_CHARS:,} one task takes; split it, or submit "
            "a job for more (POST /v1/jobs, sentq submit)"
        )
    task_id = uuid()
    client = connect(settings)
    try:
        client.set(keys.batch_task(task_id), b"", ex=settings.result_expires_s)
    except redis.RedisError as exc:
        raise store.unavailable(settings.backend_url, exc) from None
    try:
        worker_module(settings).batch_score.apply_async((texts,), task_id=task_id, queue=settings.queue)
    except OperationalError as exc:
        raise store.unavailable(settings.broker_url, exc) from None
    return str(task_id)


def batch_result(settings: Settings, task_id: str) -> tuple[bool, list[dict[str, Any]] | None, str | None]:
    """(ready, rows, error) of a `score_batch` task; JobNotFoundError for an id never issued (or expired)."""
    client = connect(settings)
    if not client.exists(keys.batch_task(task_id)):
        raise JobNotFoundError(f"no task {task_id!r}: it was never issued by POST /score-batch, or it expired")
    result = worker_module(settings).app.AsyncResult(task_id)
    if not result.ready():
        return False, None, None
    if result.failed():
        return True, None, f"{type(result.result).__name__}: {result.result}"
    return True, list(result.result), None


def _idempotency_key(key: str) -> str:
    import hashlib

    return keys.idempotency(hashlib.sha256(key.encode()).hexdigest())


# An Idempotency-Key is held from before its upload is read, as "reading:" and the id its job will have, for as long
# as a silent producer is taken for alive; once the job exists, by the job's id for as long as the job lives.
_READING = "reading:"
# Delete the key only if it still holds this upload's claim.
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def idempotent_job(settings: Settings, key: str) -> jobs.JobRecord | None:
    """The job an earlier upload with this Idempotency-Key created, unless that upload failed (then None: retry it)."""
    client = connect(settings)
    job_id = client.get(_idempotency_key(key))
    if job_id is None or store.text(job_id).startswith(_READING):
        return None
    try:
        record = jobs.get(client, store.text(job_id))
    except JobNotFoundError:
        return None
    return None if record.state == jobs.JobState.INVALID else record


def _claim_idempotency(client: redis.Redis, settings: Settings, key: str, job_id: str) -> None:
    name = _idempotency_key(key)
    if client.set(name, _READING + job_id, ex=jobs.PRODUCER_SILENT_S, nx=True):
        return
    holder = store.text(client.get(name) or b"")
    if holder.startswith(_READING):
        raise JobStateError(
            "another upload with this Idempotency-Key is being read now (its job is created with its first chunk); "
            "wait for it to answer, then GET the job it names, or use a new key for a new job"
        )
    try:
        replaced = jobs.get(client, holder).state == jobs.JobState.INVALID if holder else True
    except JobNotFoundError:
        replaced = True
    if replaced:  # the earlier upload with this key failed: this one takes the key over
        client.set(name, _READING + job_id, ex=jobs.PRODUCER_SILENT_S)
        return
    raise JobStateError(
        f"another upload with this Idempotency-Key created job {holder}; GET /v1/jobs/{holder} instead of "
        "uploading again (or use a new key for a new job)"
    )


def status(settings: Settings, job_id: str) -> tuple[jobs.JobRecord, dict[int, ledger.Failure]]:
    """A job's record and its failed chunks (why, and which input lines failed alone)."""
    client = connect(settings)
    record = jobs.get(client, job_id)
    return record, jobs.failures(client, job_id) if record.chunks_failed else {}


def results(
    settings: Settings,
    job_id: str,
    *,
    from_line: int = 1,
    yield_idle: bool = False,
    fmt: str = "jsonl",
    raw_csv: bool = False,
) -> Iterator[bytes]:
    """The job's rows as JSONL (or CSV lines, no header: ``fmt``, ``raw_csv`` as export.Sink takes them; or Arrow record
    batches for ``fmt`` parquet), chunk by chunk in input order as workers finish them, from input line ``from_line``.

    Checks the job exists before the first row (JobNotFoundError), so a caller can answer 404 before it streams.
    ``yield_idle``: ``b""`` instead of sleeping while no chunk is ready (see ``follow.follow``).
    """
    from sentq import export, follow

    client = connect(settings)
    record = jobs.get(client, job_id)
    start = _chunk_of_line(client, record, from_line) if from_line > 1 else 0

    if fmt == "parquet":
        from sentq import columnar

        columnar.need_pyarrow("Parquet output")

        def batches() -> Iterator[Any]:
            import pyarrow.compute as pc

            for batch in follow.follow(
                client, job_id, start_index=start, yield_idle=yield_idle, write=columnar.result_batch
            ):
                if isinstance(batch, bytes):
                    yield batch  # idle: the caller waits
                elif from_line > 1 and batch.num_rows and batch["line"][0].as_py() < from_line:
                    yield batch.filter(pc.greater_equal(batch["line"], from_line))
                else:
                    yield batch

        return batches()

    def rows() -> Iterator[bytes]:
        write = export.result_writer(fmt, raw_csv=raw_csv)
        for chunk in follow.follow(client, job_id, start_index=start, yield_idle=yield_idle, write=write):
            if not chunk:
                yield chunk  # idle: the caller waits
            elif from_line > 1 and export.line_of(chunk) < from_line:
                kept = export.rows_from_line(chunk, from_line)
                if kept or yield_idle:
                    yield kept
            else:
                yield chunk

    return rows()


def _chunk_of_line(client: redis.Redis, record: jobs.JobRecord, line: int) -> int:
    """The last finished chunk whose first line is at or before input ``line`` (one round trip, <100 bytes a chunk)."""
    from sentq.export import line_of
    from sentq.rows import first_line, is_packed, is_zipped, zipped_first_line

    total = record.total_chunks if record.total_chunks is not None else record.chunks_done + record.chunks_failed
    pipe = client.pipeline(transaction=False)
    for index in range(total):
        pipe.getrange(keys.chunk_output(record.id, index), 0, 23)
        pipe.getrange(keys.chunk_input(record.id, index), 0, 63)
    heads = pipe.execute()
    start = 0
    for index, (head, staged) in enumerate(zip(heads[0::2], heads[1::2], strict=True)):
        if not head:
            continue  # failed, or not finished yet: follow decides
        if is_zipped(head):
            first = zipped_first_line(head)
        else:
            first = (first_line(staged) if staged else 0) if is_packed(head) else line_of(head)
        if first > line:
            break
        start = index
    return start


def waiting(settings: Settings, record: jobs.JobRecord, where: ledger.Ledger) -> bool:
    """Whether the job waits for a worker (see ``follow.waiting``)."""
    from sentq import follow

    return follow.waiting(connect(settings), record, where)


def ledger_summary(settings: Settings, job_id: str) -> ledger.Ledger:
    """Where the job's unfinished chunks are: pending, leased (by whom), probed."""
    return ledger.summary(connect(settings), job_id)


def status_dict(settings: Settings, job_id: str) -> dict[str, Any]:
    """The job as `sentq status JOB --json` and `GET /v1/jobs/{id}` show it: record, failures, ledger."""
    from sentq import follow

    record, failed = status(settings, job_id)
    where = ledger_summary(settings, job_id)
    return record.to_dict() | {
        "waiting_for_worker": follow.waiting(connect(settings), record, where),
        "failures": {str(k): f.error for k, f in sorted(failed.items())},
        "failed_lines": {str(line): why for f in failed.values() for line, why in sorted(f.lines.items())},
        "ledger": {"pending": where.pending, "leased": {str(k): v for k, v in where.leased.items()}},
    }


def recent(settings: Settings, *, limit: int = 20) -> list[jobs.JobRecord]:
    return jobs.recent(connect(settings), settings, limit=limit)


# Index entries one listing request examines at most (each costs a record read): a filter that matches nothing, or
# only old jobs, answers a short page and a cursor to go on from, never a walk of every job in the result window.
LIST_SCAN = 1000


def list_jobs(
    settings: Settings,
    *,
    state: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
    search: str | None = None,
) -> tuple[list[jobs.JobRecord], str | None]:
    """Recent jobs, newest first, ``limit`` a page, only those in ``state`` if given; and the next page's cursor.
    With ``search``, only jobs whose id starts with it or whose source name holds it (any case).

    The cursor is the last job examined: its index score and id ("1764000000.1234567:ab12cd34ef56"), so pages stay
    stable while new jobs arrive, and each request walks the index on from it. A request examines at most LIST_SCAN
    jobs: a filtered page may come back short, even empty, with a cursor (null only once the index is walked).
    """
    if state is not None and state not in {s.value for s in jobs.JobState}:
        raise ConfigError(f"unknown job state {state!r}; use one of: {', '.join(s.value for s in jobs.JobState)}")
    if not 1 <= limit <= 500:
        raise ConfigError(f"limit must be between 1 and 500, got {limit}")
    bound, after_id = _parse_cursor(cursor)
    client = connect(settings)
    wanted = (search or "").strip().casefold()
    if keys.is_job_id(wanted) and cursor is None:  # an exact id: that job, however old
        raw = client.hgetall(keys.job(wanted))
        record = jobs.JobRecord.from_hash(wanted, raw) if raw else None
        return ([record] if record is not None and state in (None, record.state.value) else []), None
    found: list[jobs.JobRecord] = []
    examined = 0
    last: tuple[float, str] | None = None
    skip = 0  # entries at exactly ``bound`` this request has passed (jobs created in the same instant)
    exhausted = False
    while len(found) < limit and examined < LIST_SCAN:
        num = min(max(2 * (limit - len(found)), 50), LIST_SCAN - examined)
        # Inclusive of the bound's time: jobs created in the same instant come in descending id order.
        ids: list[tuple[bytes, float]] = client.zrevrangebyscore(  # type: ignore[assignment]
            keys.JOBS_INDEX, bound, "-inf", start=skip, num=num, withscores=True
        )
        page = [(store.text(raw_id), float(score)) for raw_id, score in ids]
        # On the bound's own instant, at or before its job: an earlier page (or batch) had it.
        fresh = [(i, sc) for i, sc in page if after_id is None or repr(sc) != bound or i < after_id]
        examined += len(page) - len(fresh)
        if page:
            last = (page[-1][1], page[-1][0])
        pipe = client.pipeline(transaction=False)
        for job_id, _ in fresh:
            pipe.hgetall(keys.job(job_id))
        for (job_id, score), raw in zip(fresh, pipe.execute() if fresh else [], strict=True):
            examined += 1
            last = (score, job_id)
            record = jobs.JobRecord.from_hash(job_id, raw) if raw else None
            if record is not None and wanted and not _matches(record, wanted):
                continue
            if record is not None and (state is None or record.state.value == state):
                found.append(record)
                if len(found) == limit:
                    break
        if len(page) < num:  # the index holds nothing past this batch
            exhausted = True
            break
        tied = sum(1 for _, score in page if score == page[-1][1])
        skip = tied + (skip if repr(page[-1][1]) == bound else 0)
        bound, after_id = repr(page[-1][1]), page[-1][0]
    if last is None or (exhausted and len(found) < limit):
        return found, None
    return found, f"{last[0]!r}:{last[1]}"


def _matches(record: jobs.JobRecord, wanted: str) -> bool:
    """A search hit: the job's id starts with ``wanted`` (casefolded), or its source name holds it."""
    return record.id.startswith(wanted) or wanted in record.source.casefold()


# Jobs one bulk forget frees at most (each costs a scan of its keys): a bigger backlog takes more requests, each said.
FORGET_BATCH = 200


def forget_finished(settings: Settings, state: str) -> tuple[int, bool]:
    """Forget up to FORGET_BATCH jobs finished in ``state`` (done, failed, cancelled or invalid), newest first; returns
    how many, and whether more of them remain. A job that is not finished is never touched."""
    if state not in {s.value for s in jobs.JobState if s.finished}:
        raise ConfigError(f"only finished jobs can be forgotten: pick done, failed, cancelled or invalid ({state!r})")
    forgotten, cursor = 0, None
    while forgotten < FORGET_BATCH:
        found, cursor = list_jobs(settings, state=state, limit=min(100, FORGET_BATCH - forgotten), cursor=cursor)
        for record in found:
            try:
                forget(settings, record.id)  # checks it is finished, afresh
            except (JobStateError, JobNotFoundError):
                continue  # retried, or gone, since it was listed
            forgotten += 1
        if cursor is None:
            return forgotten, False
    more, _ = list_jobs(settings, state=state, limit=1)
    return forgotten, bool(more)


def _parse_cursor(cursor: str | None) -> tuple[str, str | None]:
    if not cursor:
        return "+inf", None
    created, _, job_id = cursor.partition(":")
    try:
        created = repr(float(created))
    except ValueError:
        raise ConfigError(f"bad cursor {cursor!r}: pass the next_cursor of the previous page as it is") from None
    return created, job_id or None


def cancel(settings: Settings, job_id: str) -> jobs.JobRecord:
    """Cancel a job that has not finished (JobStateError if it has: nothing to cancel)."""
    client = connect(settings)
    before = jobs.get(client, job_id)
    if before.state.finished:
        raise JobStateError(f"job {job_id} is already {before.state.value}; there is nothing to cancel")
    return jobs.cancel(client, job_id)


def forget(settings: Settings, job_id: str) -> int:
    """Free a finished job's keys at once (record, rows, ledger); JobStateError while it runs. Returns keys freed."""
    client = connect(settings)
    record = jobs.get(client, job_id)
    if not record.state.finished:
        raise JobStateError(
            f"job {job_id} is {record.state.value}; only a finished job can be forgotten (cancel it first: "
            f"`sentq cancel {job_id}`)"
        )
    return jobs.forget(client, job_id)


def retry(settings: Settings, job_id: str, *, from_path: str | None = None) -> list[int]:
    """Queue the job's failed chunks again; returns their indexes (JobStateError if it has none). With
    ``from_path``, the inputs of failed chunks that Redis lost are staged again from it first (checked by digest)."""
    client = connect(settings)
    check_broker(settings)
    if from_path is not None:
        source, size = resume_source(settings, job_id, from_path)
        jobs.restage_failed(client, settings, job_id, source, size)
    indexes, sent_at = jobs.reopen_failed(client, job_id)
    # Were this process to die here, the chunks are pending and sent: the reconciler re-sends their messages.
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
    live = sorted(ledger.live_workers(client), key=lambda w: w.instance)
    seen = ledger.worker_stats(client, sorted({w.instance.rsplit("/", 1)[0] for w in live}))
    found = []
    for w in live:
        name = w.instance.rsplit("/", 1)[0]
        last = seen.get(name, {})
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


def shutdown_worker(settings: Settings, name: str) -> WorkerInfo:
    """Ask one live worker (by its node name, as `sentq workers` lists it) to shut down gracefully, as Flower does:
    Celery's remote control `shutdown` to that worker alone, a warm shutdown: it stops taking messages, finishes the
    tasks it runs (acks late: a chunk it has not started goes back to the queue) and exits, saying goodbye to the
    ledger. Asked only once it answers a ping (UnknownNameError if it is not live, BrokerUnavailableError if it does
    not answer); it leaves the live list when it is gone."""
    found = {w.name: w for w in workers(settings)[0]}
    if name not in found:
        raise UnknownNameError(f"no live worker is named {name!r}: see `sentq workers` (it may have stopped already)")
    control = worker_module(settings).app.control
    if not control.ping(destination=[name], timeout=settings.connect_timeout_s):
        raise BrokerUnavailableError(
            f"worker {name} does not answer remote control (its heartbeat is live): it may be busy starting or "
            "stopping, or run with remote control off; stop it on its host with SIGTERM (a warm shutdown too)"
        )
    control.shutdown(destination=[name])
    return found[name]
