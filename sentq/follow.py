"""Following a job: progress and its rows in input order, as workers finish chunks (never all in memory)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar, cast

import redis

from sentq import keys, ledger, rows
from sentq.errors import (
    BrokerUnavailableError,
    InputError,
    JobCancelledError,
    JobFailedError,
    JobLostError,
    JobNotFoundError,
    JobTimeoutError,
)
from sentq.jobs import PRODUCER_SILENT_S, JobRecord, JobState, failures, mark_invalid
from sentq.settings import mask_secrets

# A waiter fetches the next chunks' results in one round trip, about this many texts' worth (at least 2 chunks), then
# the staged texts of those that are done, up to FOLLOW_BYTES: enough to keep up with many workers.
FOLLOW_TEXTS = 40_000
# ...and what it holds at once is bounded in bytes, not only in texts: a chunk may stage up to rows.MAX_CHUNK_CHARS
# (8M characters, up to 4 bytes each), so 8 chunks' texts were 100-200 MB a round trip. The staged texts of the done
# chunks are fetched up to this many bytes (their sizes come with the results' poll), always at least one chunk so
# a download moves; the rest wait for the next poll, which comes at once.
FOLLOW_BYTES = 16 * 1024 * 1024
# ...and at most this many chunks: a job of tiny chunks (--chunk-size 1) polled 40,000 keys a round trip (measured:
# 482,000 GETs to follow a job of 1,000 one-text chunks). A follower that moves polls again at once, so this is no cap
# on its speed.
FOLLOW_CHUNKS = 256
# An idle follower polls again after this, then twice as late each time up to its poll_s: a small job's rows are
# written tens of milliseconds after it is queued, so a first wait of a whole poll_s would be most of its wall time.
FIRST_POLL_S = 0.01

T = TypeVar("T")


@dataclass
class Progress:
    """What a follower reports after each poll."""

    record: JobRecord
    chunks_written: int


def follow(
    client: redis.Redis,
    job_id: str,
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.1,
    on_progress: Callable[[Progress], None] | None = None,
    reconnect_s: float = 30.0,
    on_disconnect: Callable[[Exception], None] | None = None,
    stall_after_s: float = 15.0,  # Settings.stall_after_s (the CLI passes it)
    on_stall: Callable[[str], None] | None = None,
    start_index: int = 0,
    yield_idle: bool = False,
    write: Callable[[bytes, bytes | None], T] = rows.result_rows,  # type: ignore[assignment]  # T is bytes then
) -> Iterator[T]:
    """Yield the job's rows chunk by chunk, in input order, as workers finish them (never all in memory): what
    ``write`` makes of each chunk's stored result and staged input (default: JSONL bytes, rows.result_rows;
    export.result_csv makes CSV lines, rows.result_dicts dicts), so each format is built from the columns once.

    Returns when every chunk is written or recorded failed; raises JobCancelledError if the job is cancelled,
    JobTimeoutError past ``timeout_s``, JobNotFoundError if it expired. Each poll is one pipelined round trip.
    A Redis that goes away (a restart) is waited for up to ``reconnect_s``, then it is BrokerUnavailableError; a job
    whose records vanish meanwhile (a Redis restarted without persistence) is JobLostError, never "done". A job that
    makes no progress for ``stall_after_s`` gets ``on_stall`` with why, in words (no worker on its queue?).
    ``start_index`` skips the chunks before it (a resumed download). With ``yield_idle`` it never sleeps: it yields
    ``b""`` where it would wait, so an async caller can wait without holding a thread (a bytes ``write`` only).
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    next_index = start_index
    window = 2
    failed: dict[int, ledger.Failure] = {}
    skipped: list[int] = []  # failed chunks with no rows at all, left out of what was yielded
    lost_at: float | None = None
    seen: JobRecord | None = None
    moved_at = time.monotonic()
    last_mark: tuple[int, int, int, int] | None = None
    said_stall = False
    idle_s = min(FIRST_POLL_S, poll_s)
    while True:
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(keys.job(job_id))
        polled_from = next_index
        for index in range(next_index, next_index + window):
            pipe.getrange(keys.chunk_output(job_id, index), 0, rows.ZIPPED_HEAD - 1)
            pipe.strlen(keys.chunk_output(job_id, index))
            pipe.strlen(keys.chunk_input(job_id, index))
        try:
            raw, *replies = pipe.execute()
            heads, stored, sizes = replies[0::3], replies[1::3], replies[2::3]
            # The finished chunks in input order, fetched (with the staged texts of a result that needs them) up to
            # FOLLOW_BYTES held (at least one chunk), planned from their heads and sizes.
            ready: list[int] = []
            budget = FOLLOW_BYTES
            for k, head in enumerate(heads):
                if not head:
                    if next_index + k in failed:
                        continue
                    break  # not done: this poll writes nothing past it
                held = rows.held_size(head, int(stored[k])) + (int(sizes[k]) if rows.is_packed(head) else 0)
                if ready and held > budget:
                    break
                ready.append(next_index + k)
                budget -= held
            packed = [i for i in ready if rows.is_packed(heads[i - next_index])]
            names = [keys.chunk_output(job_id, i) for i in ready] + [keys.chunk_input(job_id, i) for i in packed]
            fetched = cast("list[bytes | None]", client.mget(names)) if names else []
            outputs = dict(zip(ready, fetched[: len(ready)], strict=True))
            staged = dict(zip(packed, fetched[len(ready) :], strict=True))
            lost_at = None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if lost_at is None:
                lost_at = time.monotonic()
                if on_disconnect is not None:
                    on_disconnect(exc)
            if time.monotonic() - lost_at > reconnect_s:
                raise BrokerUnavailableError(
                    f"lost Redis for over {reconnect_s:g}s while following job {job_id} ({mask_secrets(str(exc))}); "
                    "the job keeps its "
                    f"state in Redis: once it is back, reattach with `sentq wait {job_id}`"
                ) from None
            if yield_idle:
                yield cast(T, b"")
            else:
                time.sleep(1.0)
            continue
        if not raw:
            if seen is not None and not seen.state.finished:
                raise JobLostError(
                    f"job {job_id} vanished from Redis while it ran ({seen.texts_done:,} texts had been scored): "
                    "Redis lost its data (restarted without persistence? flushed?). Submit the input again; run Redis "
                    "with appendonly yes so a restart keeps jobs"
                )
            raise JobNotFoundError(f"no job {job_id!r}: unknown id, or its records expired (see `sentq status`)")
        record = seen = JobRecord.from_hash(job_id, raw)
        if record.chunks_failed and len(failed) < record.chunks_failed:
            failed = failures(client, job_id)
        moved = False
        for head in heads:
            if record.total_chunks is not None and next_index >= record.total_chunks:
                break
            if head and next_index not in outputs:
                break  # done, but past this poll's byte budget: the next poll fetches it
            output = outputs.pop(next_index, None)
            if output is not None:
                yield chunk_rows(job_id, next_index, output, staged.pop(next_index, None), write)
            elif next_index in failed:
                # Recorded failed after this poll read its output? A chunk with lines that failed alone keeps the
                # rows of its other texts: only one with no rows at all is left out.
                late, texts = cast(
                    "list[bytes | None]",
                    client.mget([keys.chunk_output(job_id, next_index), keys.chunk_input(job_id, next_index)]),
                )
                if late is not None and (rows.is_packed(late) or rows.is_zipped(late)):
                    yield chunk_rows(job_id, next_index, late, texts, write)
                else:
                    skipped.append(next_index)  # the job ends failed and `sentq status JOB` shows why
            elif record.state in (JobState.DONE, JobState.FAILED):  # every chunk accounted for, this one gone
                raise JobNotFoundError(f"the results of chunk {next_index} of job {job_id} expired")
            else:
                break
            next_index += 1
            moved = True
        # The next poll asks for twice what was ready in this one (a backlog doubles it each poll), within the caps,
        # never past the last chunk.
        window = max(2, min(2 * (next_index - polled_from), FOLLOW_TEXTS // max(record.chunk_size, 1), FOLLOW_CHUNKS))
        if record.total_chunks is not None:
            window = max(1, min(window, record.total_chunks - next_index))
        if on_progress is not None:
            on_progress(Progress(record, next_index))
        if record.total_chunks is not None and next_index >= record.total_chunks:
            retried = sorted(set(skipped) - set(failures(client, job_id))) if skipped else []
            if retried:  # run again (`sentq retry`) after this download passed them: their rows are not in it
                raise JobFailedError(
                    f"chunk(s) {', '.join(map(str, retried[:10]))} of job {job_id} were retried while this download "
                    f"ran and their rows are not in it; download the job again: `sentq wait {job_id}`"
                )
            return
        if record.state == JobState.CANCELLED:
            raise JobCancelledError(f"job {job_id} was cancelled ({record.texts_done} texts were scored)")
        if record.state == JobState.INVALID:
            raise InputError(f"job {job_id} stopped: {record.error}")
        if record.orphaned and not moved:  # deliver every row that was scored first
            reason = (
                f"the submitting process stopped while reading the input (no sign of it for {PRODUCER_SILENT_S}s; "
                f"killed?) after {record.texts_done:,} texts were scored; submit the input again"
            )
            mark_invalid(client, job_id, reason, staged_chunks=0)
            raise JobFailedError(f"job {job_id} failed: {reason}")
        mark = (record.texts_done, record.chunks_done, record.chunks_failed, next_index)
        if mark != last_mark:
            last_mark, moved_at, said_stall = mark, time.monotonic(), False
        elif on_stall is not None and not said_stall and time.monotonic() - moved_at > stall_after_s:
            said_stall = True
            why = stall_reason(client, record, time.monotonic() - moved_at)
            if why:
                on_stall(why)
        if deadline is not None and time.monotonic() > deadline:
            raise JobTimeoutError(
                f"job {job_id} is still running after {timeout_s:g}s ({record.texts_done} texts done); "
                f"it keeps running: reattach with `sentq wait {job_id}`"
            )
        if moved:
            idle_s = min(FIRST_POLL_S, poll_s)
        elif yield_idle:
            yield cast(T, b"")
        else:
            time.sleep(idle_s)
            idle_s = min(idle_s * 2, poll_s)


def chunk_rows(
    job_id: str, index: int, output: bytes, staged: bytes | None, write: Callable[[bytes, bytes | None], T]
) -> T:
    """A finished chunk's rows as ``write`` makes them from its result and staged texts (JobNotFoundError if they do
    not match)."""
    try:
        return write(output, staged)
    except ValueError as exc:
        raise JobNotFoundError(f"the rows of chunk {index} of job {job_id} are lost: {exc}") from None


def no_worker(queue: str) -> str:
    """What to say of a queue no live worker consumes (`sentq wait`, the console's job and jobs pages)."""
    hint = "" if queue == "sentq" else f" with SENTQ_QUEUE={queue}"
    return f"no live worker consumes its queue {queue!r}. Start one: `sentq worker`{hint}"


def unserved(client: redis.Redis, record: JobRecord) -> str:
    """``no_worker`` for a job still to be scored whose queue no live worker consumes; "" otherwise."""
    if not record.queue or record.state not in (JobState.QUEUED, JobState.RUNNING, JobState.STAGING):
        return ""
    return "" if ledger.consumers(client, record.queue) else no_worker(record.queue)


def waiting(client: redis.Redis, record: JobRecord, where: ledger.Ledger) -> bool:
    """The job waits for a worker: nothing of it scored lately (``JobRecord.waiting_for_worker``) and no chunk of it
    held by a live worker (its first chunk being scored is no wait; one a dead worker held is, until re-sent)."""
    if not record.waiting_for_worker:
        return False
    holders = sorted(set(where.leased.values()))
    if not holders:
        return True
    pipe = client.pipeline(transaction=False)
    for holder in holders:
        pipe.exists(keys.worker_beat(holder))
    return not any(pipe.execute())


def stall_reason(client: redis.Redis, record: JobRecord, idle_s: float) -> str | None:
    """Why a job has not moved for ``idle_s``, in words an operator can act on; None when it is just slow."""
    if not record.queue or record.state not in (JobState.QUEUED, JobState.RUNNING, JobState.STAGING):
        return None
    live = ledger.consumers(client, record.queue)
    if not live:
        return f"job {record.id} has made no progress for {idle_s:.0f}s: {no_worker(record.queue)} (still following)"
    where = ledger.summary(client, record.id)
    if not where.leased:
        return (
            f"job {record.id} has made no progress for {idle_s:.0f}s: {len(live)} worker(s) consume {record.queue!r} "
            "but none holds a chunk of it (busy with other jobs? see `sentq workers`); still following"
        )
    return None


def watch(
    client: redis.Redis, job_id: str, *, timeout_s: float | None = None, poll_s: float = 0.5, every_poll: bool = False
) -> Iterator[JobRecord]:
    """Yield the job's record whenever it changes, and once more when it ends (any final state); never its rows.

    For progress views (SSE, ``Job.wait``): the caller decides what a final state means. Raises JobNotFoundError for an
    unknown id, JobLostError if the job vanishes while it runs, JobTimeoutError past ``timeout_s``. A producer that died
    mid-input is detected as ``follow`` does (the job is marked invalid, and that record is yielded). With
    ``every_poll`` it yields each poll's record, changed or not, and never sleeps (an async caller waits between).
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last: JobRecord | None = None
    while True:
        raw = client.hgetall(keys.job(job_id))
        if not raw:
            if last is not None and not last.state.finished:
                raise JobLostError(
                    f"job {job_id} vanished from Redis while it ran ({last.texts_done:,} texts had been scored): "
                    "Redis lost its data (restarted without persistence? flushed?). Submit the input again"
                )
            raise JobNotFoundError(f"no job {job_id!r}: unknown id, or its records expired (see `sentq status`)")
        record = JobRecord.from_hash(job_id, raw)
        if record.orphaned:
            reason = (
                f"the submitting process stopped while reading the input (no sign of it for {PRODUCER_SILENT_S}s; "
                f"killed?) after {record.texts_done:,} texts were scored; submit the input again"
            )
            mark_invalid(client, job_id, reason, staged_chunks=0)
            continue
        if record != last or every_poll:
            yield record
        last = record
        if record.state.finished:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise JobTimeoutError(
                f"job {job_id} is still running after {timeout_s:g}s ({record.texts_done} texts done); "
                f"it keeps running: reattach with `sentq wait {job_id}`"
            )
        if not every_poll:
            time.sleep(poll_s)
