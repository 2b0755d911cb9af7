"""Jobs: their records in Redis and staging their input as chunks; the chunks' accounting is the ledger's."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice
from typing import TYPE_CHECKING, Any

import redis

from sentq import keys, ledger
from sentq.errors import (
    BrokerUnavailableError,
    InputError,
    JobCancelledError,
    JobNotFoundError,
    JobStateError,
    PayloadTooLargeError,
    SentqError,
)
from sentq.rows import MAX_CHUNK_CHARS, encode_chunk, encode_raw, is_zipped, split_large
from sentq.settings import Settings
from sentq.store import text

if TYPE_CHECKING:
    from sentq.inputs import TextSource

# Texts staged per Redis pipeline (then their chunks are queued): ~3 MB a round trip, and what the producer holds.
STAGE_TEXTS = 40_000
# `submit --resume` checks the inputs of this many staged chunks at a time for one that Redis lost.
RESTAGE_BATCH = 64
# A stopped job's unscored inputs are dropped this many chunks a step (one step holds Redis that long).
DROP_BATCH = 1_000
# A producer refreshes the job's heartbeat every Settings.heartbeat_s while it lives, however slowly its input comes
# (`tail -f app.log | sentq submit -`), and at each staged batch; silent this long it is gone (killed, its host
# down). Generous: a stopped process (SIGSTOP, a laptop asleep) that comes back finds its job still open.
PRODUCER_SILENT_S = 300


class JobState(StrEnum):
    STAGING = "staging"  # the producer is still reading the input; nothing is queued yet (files)
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # finished, with failed chunks (their errors in the job's failed hash)
    CANCELLED = "cancelled"
    INVALID = "invalid"  # the input failed validation; nothing (files) or not all (streams) was scored

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.INVALID)


@dataclass(frozen=True)
class JobRecord:
    """A job as its Redis hash holds it (counts are what the workers have reported so far)."""

    id: str
    state: JobState
    source: str
    format: str
    created: float
    model: str  # the pinned model ref ("3:1a2b..."), "" until pinned
    chunk_size: int
    total_chunks: int | None  # None while the producer is still reading
    total_texts: int | None
    blank_lines: int
    chunks_done: int
    chunks_failed: int
    texts_done: int
    texts_failed: int  # texts that failed alone (their chunk's other rows are in the output)
    queue: str
    compute_s: float
    wait_s: float
    first_started: float | None
    heartbeat: float | None  # last sign of life of the producer while it reads the input
    finished_at: float | None
    error: str
    # The job's recent scoring (ledger._RECENT): texts scored in the window, when its oldest chunk started, when the
    # last one finished and how long that one took to score.
    recent_texts: int = 0
    recent_from: float | None = None
    recent_at: float | None = None
    recent_chunk_s: float = 0.0

    @classmethod
    def from_hash(cls, job_id: str, raw: Mapping[Any, Any]) -> JobRecord:
        h = {text(k): text(v) for k, v in raw.items()}

        def opt_int(name: str) -> int | None:
            return int(h[name]) if h.get(name) else None

        def opt_float(name: str) -> float | None:
            return float(h[name]) if h.get(name) else None

        return cls(
            id=job_id,
            state=JobState(h.get("state", "queued")),
            source=h.get("source", ""),
            format=h.get("format", ""),
            created=float(h.get("created", 0)),
            model=h.get("model", ""),
            chunk_size=int(h.get("chunk_size", 0)),
            total_chunks=opt_int("total_chunks"),
            total_texts=opt_int("total_texts"),
            blank_lines=int(h.get("blank_lines", 0)),
            chunks_done=int(h.get("chunks_done", 0)),
            chunks_failed=int(h.get("chunks_failed", 0)),
            texts_done=int(h.get("texts_done", 0)),
            texts_failed=int(h.get("texts_failed", 0)),
            queue=h.get("queue", ""),
            compute_s=float(h.get("compute_s", 0)),
            wait_s=float(h.get("wait_s", 0)),
            first_started=opt_float("first_started"),
            heartbeat=opt_float("heartbeat"),
            finished_at=opt_float("finished_at"),
            error=h.get("error", ""),
            recent_texts=int(h.get("recent_texts", 0)),
            recent_from=opt_float("recent_from"),
            recent_at=opt_float("recent_at"),
            recent_chunk_s=float(h.get("recent_chunk_s", 0)),
        )

    @property
    def orphaned(self) -> bool:
        """Still being read, but the producer has been silent too long: it died mid-file (kill -9, host lost)."""
        return (
            self.total_chunks is None
            and self.state in (JobState.STAGING, JobState.QUEUED, JobState.RUNNING)
            and self.heartbeat is not None
            and time.time() - self.heartbeat > PRODUCER_SILENT_S
        )

    @property
    def model_version(self) -> str:
        return f"v{self.model.split(':', 1)[0]}" if self.model else "-"

    @property
    def texts_per_s(self) -> float:
        """Texts scored per second of wall time since the job was created (what a stopwatch started at submit gives:
        reading, queueing and waiting for a worker count, not only scoring)."""
        if not self.created or not self.texts_done:
            return 0.0
        end = self.finished_at or time.time()
        return self.texts_done / max(end - self.created, 1e-3)

    @property
    def recent_texts_per_s(self) -> float:
        """Texts scored per second over the job's recent scoring (about the last ledger.RATE_WINDOW_S, from the end of
        its last pause): what its ETA comes from. 0 when none was scored lately (``waiting_for_worker``)."""
        if self.state.finished or self.recent_at is None or self.recent_from is None:
            return 0.0
        now = time.time()
        # Silent longer than the pause that restarts the window (or than a few of its chunks take): nothing is scored.
        if now - self.recent_at > max(ledger.RATE_GAP_S, 3 * self.recent_chunk_s):
            return 0.0
        return self.recent_texts / max(now - self.recent_from, 1e-3)

    @property
    def waiting_for_worker(self) -> bool:
        """Queued or running, with nothing of it scored lately: no live worker takes its chunks (or all are busy)."""
        return self.state in (JobState.QUEUED, JobState.RUNNING) and not self.recent_texts_per_s

    @property
    def eta_s(self) -> float | None:
        """Seconds to go at the recent rate; None when it is unknown (still reading, nothing scored lately, over)."""
        rate = self.recent_texts_per_s
        if self.total_texts is None or not rate or self.state.finished:
            return None
        return max(self.total_texts - self.texts_done, 0) / rate

    @property
    def duration_s(self) -> float | None:
        """A finished job's wall time, from submission to its end."""
        return max(self.finished_at - self.created, 0.0) if self.finished_at and self.created else None

    def to_dict(self) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in self.__dataclass_fields__}
        d["state"] = self.state.value
        d["model_version"] = self.model_version
        d["texts_per_s"] = round(self.texts_per_s, 1)
        d["recent_texts_per_s"] = round(self.recent_texts_per_s, 1)
        d["eta_s"] = None if self.eta_s is None else round(self.eta_s, 1)
        d["waiting_for_worker"] = self.waiting_for_worker
        d["duration_s"] = None if self.duration_s is None else round(self.duration_s, 3)
        return d


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


def create(
    client: redis.Redis,
    settings: Settings,
    *,
    source: TextSource,
    chunk_size: int,
    model_ref: str | None,
    job_id: str | None = None,
) -> str:
    """Write the job record (before any chunk exists) and index it; returns the job id (``job_id``, or a new one)."""
    job_id = job_id or new_job_id()
    now = time.time()
    record = {
        "state": JobState.STAGING.value,
        "source": source.name,
        "format": source.format,
        "created": f"{now:.3f}",
        "chunk_size": chunk_size,
        **source.options,  # how it was read (column, field): `submit --resume` reads it again the same way
        **({"model": model_ref} if model_ref else {}),  # absent until pinned: the first chunk pins it (HSETNX)
        "heartbeat": f"{now:.3f}",
        "queue": settings.queue,
        "broker": settings.broker_family,
    }
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.job(job_id), mapping=record)  # type: ignore[arg-type]
    pipe.expire(keys.job(job_id), settings.result_expires_s)
    ledger.track(pipe, job_id, now)
    pipe.hincrby(keys.STATS, "jobs_submitted", 1)
    pipe.zadd(keys.JOBS_INDEX, {job_id: now})
    pipe.zremrangebyscore(keys.JOBS_INDEX, "-inf", now - settings.result_expires_s)
    if model_ref:
        pin(pipe, model_ref, now + settings.result_expires_s)
    pipe.execute()
    return job_id


def pin(client: redis.Redis | redis.client.Pipeline, model_ref: str, until: float) -> None:
    """Keep the version of ``model_ref`` out of the registry's retention until ``until`` (a job record's expiry)."""
    client.zadd(keys.MODEL_PINS, {model_ref.split(":", 1)[0]: until}, gt=True)


def stage(
    client: redis.Redis,
    settings: Settings,
    job_id: str,
    source: TextSource,
    *,
    chunk_size: int,
    publish: Callable[[list[int], float], None],
    resume: bool = False,
    on_resumed: Callable[[str], None] | None = None,
    create: Callable[[], None] | None = None,
) -> JobRecord:
    """Read ``source`` chunk by chunk into Redis and queue one task per chunk; returns the sealed record.

    With ``create``, job ``job_id`` has no record yet: ``create()`` writes it just before the first chunk is staged, so
    an input refused before anything is queued (a bad file, a bad first chunk of a stream) leaves no job at all.

    A file is first validated whole in a fast pass that keeps nothing, so a bad file queues nothing; then its chunks
    are staged and queued as they are read, so workers start on chunk 0 while the rest is still being read. A stream
    (stdin) cannot be read twice: a bad line part-way marks the job invalid (workers skip what is left) instead of
    leaving it half-done. ``publish(indexes, sent_at)`` queues the chunks just recorded pending in the ledger.

    With ``resume``, ``job_id`` is a job whose submission stopped part-way: the chunks it staged are read again and
    checked against their digests (a different input is refused, the job unchanged), the ones not scored are sent
    again (re-staged if their input is gone), and the rest is staged as it would have been.
    """
    chunks = enumerate(payloads(source, chunk_size))
    first = 0
    if resume:
        _read_as_staged(source, _check_resumable(client, settings, job_id))
        first, again = _read_staged(client, settings, job_id, source, chunks)
        code, found = ledger.resume(
            client, job_id, again, heartbeat=time.time(), silent_before=time.time() - settings.heartbeat_ttl_s
        )
        if code != 0:
            raise _not_resumable(job_id, code, found, settings)
        publish(again, float(found))
        if on_resumed is not None:
            on_resumed(job_id)
    return _stage_from(
        client, settings, job_id, source, chunks, first=first, publish=publish, validate=not resume, create=create
    )


Chunks = Iterator[tuple[int, tuple[bytes, int]]]  # (index, (payload, texts)), as ``payloads`` enumerated


def _read_as_staged(source: TextSource, record: JobRecord) -> None:
    """Ready ``source`` to give the chunks ``record``'s job staged: a file validated (so its chunks are cut as then),
    and decoded, not staged raw, when the job read a pipe (its digests are of decoded chunks)."""
    if not source.is_stream:
        source.validate()
        if record.source == "<stdin>":
            source.raw_ok = False


def _check_resumable(client: redis.Redis, settings: Settings, job_id: str) -> JobRecord:
    """The job, if `submit --resume` may continue it (before its input is read again); else why not."""
    record = get(client, job_id)
    if record.total_chunks is not None:
        raise JobStateError(
            f"job {job_id} has all its input staged ({record.total_chunks:,} chunks): nothing to resume; "
            f"re-run its failed chunks with `sentq retry {job_id}` (--from FILE if their input was lost)"
        )
    if record.state == JobState.CANCELLED:
        raise JobStateError(f"job {job_id} was cancelled: it cannot be resumed; submit the file again")
    if record.heartbeat and record.heartbeat >= time.time() - settings.heartbeat_ttl_s:
        raise _not_resumable(job_id, -4, record.heartbeat, settings)
    return record


def _read_staged(
    client: redis.Redis, settings: Settings, job_id: str, source: TextSource, chunks: Chunks
) -> tuple[int, list[int]]:
    """Read the chunks ``job_id`` staged from ``chunks``, checking each against its digest and re-staging any whose
    input is gone (Redis lost it, or the job was stopped); returns how many it staged and those to send again."""
    digests = _digests(client, job_id)
    staged = len(digests)
    done = sorted(int(i) for i in client.smembers(keys.job_done(job_id)))
    settled = {*done, *(int(i) for i in client.hkeys(keys.job_failed(job_id)))}
    if not staged and settled:
        raise JobStateError(f"job {job_id} was staged by a sentq that kept no digests: submit the file again")
    # Every staged input Redis lacks is staged again, but a done chunk's whose result holds its texts (the rows of the
    # others are made from it); the unsettled go out.
    pipe = client.pipeline(transaction=False)
    for index in done:
        pipe.getrange(keys.chunk_output(job_id, index), 0, 3)
    held = {index for index, head in zip(done, pipe.execute() if done else [], strict=True) if is_zipped(head)}
    _check_staged(client, settings, job_id, source, chunks, digests, only=set(range(staged)) - held)
    return staged, [index for index in range(staged) if index not in settled]


def restage_failed(client: redis.Redis, settings: Settings, job_id: str, source: TextSource, chunk_size: int) -> None:
    """`sentq retry JOB --from FILE`: read the job's whole input again, check every chunk against its digest, and
    stage again the inputs of its failed chunks that Redis lost."""
    record = get(client, job_id)
    if record.total_chunks is None:
        raise JobStateError(f"job {job_id} has not staged all its input: resume it with `sentq submit FILE --resume`")
    digests = _digests(client, job_id)
    if len(digests) != record.total_chunks:
        raise JobStateError(f"job {job_id} was staged by a sentq that kept no digests: submit the file again")
    _read_as_staged(source, record)
    failed = {int(i) for i in client.hkeys(keys.job_failed(job_id))}
    chunks = enumerate(payloads(source, chunk_size))
    _check_staged(client, settings, job_id, source, chunks, digests, only=failed)
    if next(chunks, None) is not None:
        raise InputError(
            f"{source.name} is not the input job {job_id} staged: it goes on past the {record.total_chunks:,} "
            "chunks the job has; retry with the same input and options"
        )


def _check_staged(
    client: redis.Redis,
    settings: Settings,
    job_id: str,
    source: TextSource,
    chunks: Chunks,
    digests: dict[int, bytes],
    *,
    only: Container[int] | None = None,
) -> None:
    """Read as many chunks as ``digests`` has from ``chunks``, each checked against its digest (InputError at the
    first that differs, or if the input ends before); their inputs (``only`` those, if given) are staged again where
    Redis lost them."""
    staged = len(digests)
    if sorted(digests) != list(range(staged)):
        raise JobStateError(f"job {job_id}'s staged chunks are not a run from 0 (see `sentq status`); submit again")
    batch: list[tuple[int, bytes]] = []
    read = 0
    for index, (payload, _) in islice(chunks, staged):
        read += 1
        if ledger.digest(payload) != digests[index]:
            raise InputError(
                f"{source.name} is not the input job {job_id} staged: its chunk {index} differs (of the {staged:,} "
                "staged); use the same input and options, or submit it as a new job"
            )
        if only is None or index in only:
            batch.append((index, payload))
            if len(batch) >= RESTAGE_BATCH:
                _restage_missing(client, settings, job_id, batch)
    _restage_missing(client, settings, job_id, batch)
    if read < staged:
        raise InputError(
            f"{source.name} is not the input job {job_id} staged: it ends after {read:,} chunks, the job staged "
            f"{staged:,}; use the same input and options, or submit it as a new job"
        )


def _digests(client: redis.Redis, job_id: str) -> dict[int, bytes]:
    raw = client.hgetall(keys.job_digests(job_id))
    return {int(k): v if isinstance(v, bytes) else v.encode() for k, v in raw.items()}


def _restage_missing(client: redis.Redis, settings: Settings, job_id: str, batch: list[tuple[int, bytes]]) -> None:
    """Stage again the inputs of ``batch`` that Redis no longer has (the batch is emptied). Done while nothing sends
    them: a job not yet resumed, or a failed chunk not yet retried."""
    if not batch:
        return
    present = _exists(client, job_id, [index for index, _ in batch])
    pipe = client.pipeline(transaction=False)
    for (index, payload), there in zip(batch, present, strict=True):
        if not there:
            pipe.set(keys.chunk_input(job_id, index), payload, ex=settings.result_expires_s)
    pipe.execute()
    batch.clear()


def _not_resumable(job_id: str, code: int, found: str | float, settings: Settings) -> SentqError:
    if code == -1:
        return JobNotFoundError(f"no job {job_id!r}: unknown id, or its records expired")
    if code == -2:
        return JobStateError(f"job {job_id} is {found}: it cannot be resumed")
    if code == -3:
        return JobStateError(f"job {job_id} has all its input staged: nothing to resume")
    ago = time.time() - float(found or 0)
    return JobStateError(
        f"job {job_id}'s submission is still running (its producer was heard {ago:.0f}s ago); stop it first, or "
        f"resume once it has been silent for {settings.heartbeat_ttl_s:g}s (SENTQ_HEARTBEAT_TTL)"
    )


def _stage_from(
    client: redis.Redis,
    settings: Settings,
    job_id: str,
    source: TextSource,
    chunks: Chunks,
    *,
    first: int,
    publish: Callable[[list[int], float], None],
    validate: bool,
    create: Callable[[], None] | None = None,
) -> JobRecord:
    """Stage ``chunks`` from index ``first`` on, then seal the job (see ``stage``)."""
    pending: list[bytes] = []
    pending_texts = staged_bytes = 0
    seen = first
    stop_beating = threading.Event()

    def beat() -> None:  # by time, not by data: a live producer is never taken for dead
        while not stop_beating.wait(settings.heartbeat_s):
            with contextlib.suppress(redis.RedisError):  # a Redis hiccup: the next beat, or the next flush, tells
                ledger.producer_beat(client, job_id, time.time())

    beating = threading.Thread(target=beat, name=f"sentq-producer-{job_id}", daemon=True)
    opened = create is None  # the job's record exists (else: written with its first chunk)
    if opened:
        beating.start()

    def open_job() -> None:
        nonlocal opened
        if not opened:
            assert create is not None
            create()
            opened = True
            beating.start()

    def flush() -> None:
        open_job()
        indexes = list(range(seen - len(pending), seen))
        code, found = ledger.stage(
            client,
            job_id,
            list(zip(indexes, pending, strict=True)),
            expire_s=settings.result_expires_s,
            heartbeat=time.time(),
        )
        if code == -1:
            raise JobNotFoundError(f"job {job_id} was forgotten while its input was being read; nothing more is queued")
        if code == -2:
            raise JobCancelledError(
                f"job {job_id} was {found} while its input was being read: the rest of the input is not queued"
                + (f" ({seen - len(pending):,} chunks were)" if seen > len(pending) else "")
            )
        publish(indexes, float(found))
        pending.clear()
        nonlocal pending_texts
        pending_texts = 0

    stopped = True
    # A live stream gone quiet between chunks: queue the whole chunks read so far (at a pause inside a chunk, the
    # short chunk comes with pause_cut). Called from within the read, where pending and seen are as last left.
    source.on_pause = lambda: flush() if pending else None
    try:
        if validate and not source.is_stream:
            source.validate()
        for index, (payload, texts) in chunks:
            staged_bytes = within_job_limit(settings, source, staged_bytes + len(payload))
            seen = index + 1
            pending.append(payload)
            pending_texts += texts
            # The first chunk goes out alone so a worker starts at once; then batches amortise round trips. A live
            # stream that went quiet hands on what it read (the chunk was cut short there): its rows come out now.
            if seen == 1 or pending_texts >= STAGE_TEXTS or source.pause_cut:
                flush()
        if pending:
            flush()
        open_job()  # an input with nothing to score (blank lines only) is still a job, done at once
        stopped = False
    except (JobCancelledError, JobNotFoundError):
        raise  # stopped from outside (cancel, forget): the job is as that left it
    except InputError as exc:
        if opened:  # refused before its first chunk was staged: there is no job to mark
            mark_invalid(client, job_id, str(exc), staged_chunks=seen)
        raise
    except KeyboardInterrupt:
        queued = "chunks already queued still run" if seen else "nothing was queued"
        if opened:
            why = f"submission interrupted while reading the input ({queued})"
            mark_invalid(client, job_id, why, staged_chunks=seen)
        raise
    except BrokerUnavailableError as exc:
        if opened:
            mark_invalid(client, job_id, f"could not queue the input: {exc}", staged_chunks=seen)
        raise
    except BaseException as exc:  # the input's own reader failed (a caller's generator, a cancelled upload...)
        why = f"{type(exc).__name__}: {str(exc)[:300]}".rstrip(": ")
        if opened:
            with contextlib.suppress(redis.RedisError):  # the original error is the one to tell
                why = f"the submission stopped while reading the input ({why})"
                mark_invalid(client, job_id, why, staged_chunks=seen)
        raise
    finally:
        stop_beating.set()
        if stopped and opened:  # say this producer is gone, so `submit --resume` need not wait for its heartbeat
            beating.join(timeout=5)
            with contextlib.suppress(redis.RedisError):
                ledger.producer_beat(client, job_id, 0.0)
    ledger.seal(client, job_id, chunks=seen, texts=source.texts, blank_lines=source.blank_lines)
    return get(client, job_id)


def payloads(source: TextSource, chunk_size: int) -> Iterator[tuple[bytes, int]]:
    """The input's chunks as staged for workers, with how many texts each holds.

    A file the fast check passed goes as runs of its lines' bytes (the producer then costs a few C-level scans per
    line; workers split and strip them); anything else is read, decoded and stripped here.
    """
    if source.raw_ok:
        for run in source.raw_lines(chunk_size, max_bytes=MAX_CHUNK_CHARS):
            yield encode_raw(run), run.texts
        return
    for chunk in split_large(source.chunks(chunk_size)):
        yield encode_chunk(chunk), len(chunk.texts)


def within_job_limit(settings: Settings, source: TextSource, staged_bytes: int) -> int:
    """``staged_bytes`` (the job's input staged so far and the chunk about to be), if within SENTQ_JOB_MAX_BYTES.

    Checked for each chunk before it joins a batch, so the batch that would pass the limit is never written: with
    noeviction, one job (a gzip bomb) filling Redis would fail every other job's writes.
    """
    if staged_bytes > settings.job_max_bytes:
        raise PayloadTooLargeError(
            f"{source.name}: the job's input is more than {settings.job_max_bytes:,} bytes staged in Redis, the limit "
            f"(SENTQ_JOB_MAX_BYTES), after {source.texts:,} texts; split the input into several jobs, or raise it"
        )
    return staged_bytes


def mark_invalid(client: redis.Redis, job_id: str, reason: str, *, staged_chunks: int) -> None:
    """The input failed validation: record why, stop workers, drop the staged inputs of chunks not scored (a scored
    chunk's rows are made from its input; a job already finished, e.g. cancelled, keeps its state; the step counts the
    job finished only when it changes it). Inputs go in one step after the stop, sparing any chunk done, failed or
    being scored then (a leased chunk finishes, and its rows need its texts)."""
    ledger.stop(client, job_id, JobState.INVALID.value, error=reason)
    for start in range(0, staged_chunks, DROP_BATCH):
        ledger.drop_inputs(client, job_id, range(start, min(start + DROP_BATCH, staged_chunks)))


def get(client: redis.Redis, job_id: str) -> JobRecord:
    """The job's record; JobNotFoundError if the id is unknown or its records expired."""
    raw = client.hgetall(keys.job(job_id))
    if not raw:
        raise JobNotFoundError(f"no job {job_id!r}: unknown id, or its records expired (see `sentq status`)")
    return JobRecord.from_hash(job_id, raw)


def recent(client: redis.Redis, settings: Settings, *, limit: int = 20) -> list[JobRecord]:
    """The most recent jobs, newest first (two Redis round trips)."""
    client.zremrangebyscore(keys.JOBS_INDEX, "-inf", time.time() - settings.result_expires_s)
    ids = [text(raw) for raw in client.zrevrange(keys.JOBS_INDEX, 0, limit - 1)]  # type: ignore[arg-type]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(keys.job(job_id))
    return [JobRecord.from_hash(job_id, raw) for job_id, raw in zip(ids, pipe.execute(), strict=True) if raw]


def failures(client: redis.Redis, job_id: str) -> dict[int, ledger.Failure]:
    """Chunk index -> why it failed, for the job's failed chunks."""
    return ledger.failures(client, job_id)


@dataclass(frozen=True)
class FailureGroup:
    """Failed chunks that failed for one reason, with what to do about it where sentq knows."""

    reason: str
    chunks: list[int]
    lines: int  # input lines of those chunks that failed alone
    advice: str


# What sentq knows of a failure's reason: the words it is told in, and what to do.
_ADVICE = (
    (
        ("ModelError", "is refused", "sha256", "not in the registry"),
        "retrying cannot help until a version that verifies is current (`sentq model list`, `sentq model use N`, or "
        "`sentq retrain`); then retry",
    ),
    (
        ("staged texts are gone", "input is gone", "expired"),
        "its staged input is gone from Redis: `sentq retry JOB --from FILE` stages it again from the input",
    ),
    (
        ("TimeLimitExceeded", "time limit"),
        "a chunk took longer than SENTQ_TASK_TIME_LIMIT: submit with a smaller --chunk-size, or raise the limit",
    ),
    (
        ("WorkerLostError", "killed", "signal"),
        "the scoring process died on these texts (the lines that kill it fail alone): retrying runs them again",
    ),
)


def group_failures(failed: Mapping[int, ledger.Failure]) -> list[FailureGroup]:
    """The failed chunks grouped by reason, biggest group first, each with sentq's advice where it has some."""
    groups: dict[str, list[int]] = {}
    for index, failure in sorted(failed.items()):
        groups.setdefault(failure.error, []).append(index)
    found = []
    for reason, chunks in groups.items():
        advice = next((said for words, said in _ADVICE if any(w in reason for w in words)), "")
        lines = sum(len(failed[i].lines) for i in chunks)
        found.append(FailureGroup(reason, chunks, lines, advice))
    return sorted(found, key=lambda g: -len(g.chunks))


def describe_failures(failed: Mapping[int, ledger.Failure]) -> str:
    """ "2 input lines failed alone (left out of the rows) and 1 failed chunk": what a finished job lost, in words."""
    lines = sum(len(f.lines) for f in failed.values())
    whole = sum(1 for f in failed.values() if not f.lines)
    parts = [
        f"{lines:,} input line{'s' if lines != 1 else ''} failed alone (left out of the rows)" if lines else "",
        f"{whole:,} failed chunk{'s' if whole != 1 else ''}" if whole else "",
    ]
    return " and ".join(part for part in parts if part) or "failed chunks"


def cancel(client: redis.Redis, job_id: str) -> JobRecord:
    """Flag the job cancelled: workers skip its queued chunks; running ones finish."""
    record = get(client, job_id)
    if not record.state.finished:
        ledger.stop(client, job_id, JobState.CANCELLED.value)  # atomic: a job that just finished stays finished
    return get(client, job_id)


def reopen_failed(client: redis.Redis, job_id: str) -> tuple[list[int], float]:
    """Put a job that finished with failed chunks back to run exactly those again, sent now (one atomic step: see
    ledger.reopen); returns their indexes and the send stamp (the caller publishes their messages). Refuses, with
    JobStateError, a job that is not finished with failed chunks, or whose failed chunks change meanwhile.

    The rows a chunk kept when some of its texts failed alone are dropped with it: the chunk is scored whole again.
    """
    record = get(client, job_id)
    if record.state in (JobState.CANCELLED, JobState.INVALID):
        why = "it was cancelled" if record.state == JobState.CANCELLED else f"its input was invalid ({record.error})"
        raise JobStateError(f"job {job_id} cannot be retried: {why}; submit the file again")
    if not record.state.finished:
        raise JobStateError(
            f"job {job_id} is still {record.state.value}: only a finished job's failed chunks can be retried; "
            f"let it finish (`sentq wait {job_id}`), then retry"
        )
    seen = {
        int(k): v if isinstance(v, bytes) else v.encode() for k, v in client.hgetall(keys.job_failed(job_id)).items()
    }
    if record.state != JobState.FAILED or not seen:
        raise JobStateError(
            f"job {job_id} has no failed chunks to retry (it is {record.state.value}); "
            "only a job that finished with failed chunks can be retried"
        )
    indexes = sorted(seen)
    missing = [i for i, there in zip(indexes, _exists(client, job_id, indexes), strict=True) if not there]
    if missing:
        raise JobNotFoundError(f"the inputs of chunks {missing} of job {job_id} expired; submit the file again")
    code, found = ledger.reopen(client, job_id, seen)
    if code == -1:
        raise JobNotFoundError(f"no job {job_id!r}: its records expired")
    if code == -2:
        raise JobStateError(f"job {job_id} is now {found}: it was retried meanwhile; follow it with `sentq wait`")
    if code == -3:
        raise JobStateError(f"job {job_id}'s failed chunks changed while it was being retried; see `sentq status`")
    return indexes, float(found)


def _exists(client: redis.Redis, job_id: str, indexes: list[int]) -> list[bool]:
    pipe = client.pipeline(transaction=False)
    for index in indexes:
        pipe.exists(keys.chunk_input(job_id, index))
    return [bool(n) for n in pipe.execute()]


def pin_model(client: redis.Redis, job_id: str, ref: str) -> str:
    """Pin ``ref`` on a job submitted before any model existed; the first chunk to get here decides."""
    client.hsetnx(keys.job(job_id), "model", ref)
    pinned = text(client.hget(keys.job(job_id), "model") or ref)
    pin(client, pinned, time.time() + max(int(client.ttl(keys.job(job_id))), 0))
    return pinned


def forget(client: redis.Redis, job_id: str) -> int:
    """Delete every key of a job now (its record first, so a late delivery of one of its chunks finds no job and
    writes nothing), and drop it from the job index; returns how many keys were freed."""
    freed = int(client.unlink(keys.job(job_id)))
    pipe = client.pipeline(transaction=False)
    pipe.zrem(keys.JOBS_INDEX, job_id)
    pipe.zrem(keys.ACTIVE_JOBS, job_id)
    pipe.execute()
    batch: list[str | bytes] = []
    for name in client.scan_iter(match=keys.job(job_id) + ":*", count=10_000):
        batch.append(name)
        if len(batch) >= 1_000:
            freed += int(client.unlink(*batch))
            batch.clear()
    if batch:
        freed += int(client.unlink(*batch))
    return freed
