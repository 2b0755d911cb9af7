"""The Python face: submit texts, follow, wait, cancel and retry jobs from Python, over the functions the CLI calls."""

from __future__ import annotations

import io
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import redis

from sentq import control, follow, jobs, rows
from sentq.errors import InputError, JobCancelledError, JobFailedError
from sentq.inputs import TextSource
from sentq.jobs import JobRecord, JobState
from sentq.settings import Settings, mask_url

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from _typeshed import WriteableBuffer

    from sentq.ledger import Failure

# What an iterable of texts is called in messages and in the job record's source.
ITERABLE_NAME = "<iterable>"
# How often ``Job.wait`` looks at the job (one HGETALL); a short timeout polls faster so it is kept to.
WAIT_POLL_S = 0.5

_quote = json.JSONEncoder(ensure_ascii=False).encode


def submit(
    source: str | os.PathLike[str] | Iterable[str],
    *,
    format: str | None = None,
    column: str | None = None,
    field: str | None = None,
    chunk_size: int | None = None,
    model: str | None = None,
    settings: Settings | None = None,
    resume: str | None = None,
) -> Job:
    """Submit a file of texts, or an iterable of texts, as one job; returns once its last chunk is queued.

    ``source`` is a path (str or path-like; read and checked exactly as ``sentq submit`` reads it, with ``format``,
    ``column`` and ``field``) or an iterable of str, one text per item (a list, a generator, a pandas column),
    streamed without being held in memory. For an iterable, an item's ``line`` (in rows and messages) is its 1-based
    position; blank texts are skipped and counted, and an item that is not a str, or longer than
    ``SENTQ_MAX_TEXT_CHARS``, is an InputError that stops the job (workers skip its chunks already queued); one
    refused before the first chunk is queued leaves no job. Workers start on chunk 0 while the rest is read.
    ``model`` pins a version (``"v3"``; default: the current one).
    ``settings`` default to ``Settings.from_env()``. Raises InputError, ConfigError, BrokerUnavailableError.

    ``resume`` (a job id) continues that job, whose submission stopped part-way, from the path ``source`` (as
    `sentq submit FILE --resume JOB`): its staged chunks are checked against the file, then the rest is staged. A
    different file, or options other than the job's, is refused (InputError, ConfigError) with the job unchanged.
    """
    settings = Settings.from_env() if settings is None else settings
    if resume is not None:
        if not isinstance(source, str | os.PathLike) or model is not None:
            raise TypeError("resume takes the path of the job's input again (and no model: the job keeps its own)")
        again, size = control.resume_source(
            settings, resume, os.fspath(source), fmt=format, column=column, field=field, chunk_size=chunk_size
        )
        return Job(control.resume(settings, resume, again, size).id, settings=settings)
    if chunk_size is not None:
        settings.replace(chunk_size=chunk_size)  # validated as SENTQ_CHUNK_SIZE is (ConfigError)
    text_source = _text_source(source, settings, fmt=format, column=column, field=field)
    # A caller's generator that raises marks the job invalid (jobs.stage): nobody waits for a producer that is gone.
    record = control.submit(settings, text_source, chunk_size=chunk_size, model_version=model)
    return Job(record.id, settings=settings)


def job(job_id: str, *, settings: Settings | None = None) -> Job:
    """Reattach to a job by its id (from ``Job.id``, ``sentq submit`` or ``sentq status``); JobNotFoundError if none."""
    found = Job(job_id, settings=Settings.from_env() if settings is None else settings)
    jobs.get(found._client, job_id)
    return found


class Job:
    """A job on the workers, by id: every method reads Redis afresh (nothing is cached), so any process may hold one.

    Get one from ``sentq.submit`` or ``sentq.job``. Its methods raise the ``SentqError`` tree as the CLI does
    (JobNotFoundError once the job's records expired, BrokerUnavailableError when Redis does not answer).
    """

    def __init__(self, job_id: str, *, settings: Settings) -> None:
        self.id = job_id
        self.settings = settings
        self._client: redis.Redis = control.connect(settings)

    def __repr__(self) -> str:
        return f"<sentq.Job {self.id} on {mask_url(self.settings.backend_url)}>"

    def status(self) -> JobRecord:
        """The job's record now: state, counts, speed (``texts_per_s``), ``eta_s``, pinned model."""
        return control.status(self.settings, self.id)[0]

    def failures(self) -> dict[int, Failure]:
        """Chunk index -> why it failed and which input lines failed alone; empty unless the job has failed chunks."""
        return control.status(self.settings, self.id)[1]

    def rows(self, *, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield the job's rows in input order, as workers finish its chunks (never all in memory).

        Each row: ``{"line": 3, "text": ..., "score": 0.9731, "label": "positive", "model": "v1"}``. Ends when every
        chunk is accounted for; if some failed, raises JobFailedError after the last row, so a loop never takes a
        partial result for a whole one (``failures()`` says which lines are missing). Raises JobCancelledError,
        InputError (the input went bad part-way), JobTimeoutError past ``timeout`` seconds (the job keeps running).
        """
        for chunk in follow.follow(self._client, self.id, timeout_s=timeout, write=rows.result_dicts):
            yield from chunk
        record, failed = control.status(self.settings, self.id)
        if failed:
            raise _failed(record, failed)

    def batches(self, *, timeout: float | None = None) -> Iterator[pa.RecordBatch]:
        """Yield the job's rows as Arrow record batches (one per finished chunk), in input order, as workers finish.

        Columns: ``line`` (int64), ``text`` (string), ``score`` (float64), ``label`` and ``model`` (dictionary of
        string). Built from the stored columns, never row by row; the same rows as ``rows()``, and the same errors
        (JobFailedError after the last batch if chunks failed). Needs pyarrow: ``pip install 'sentq[arrow]'``.
        """
        from sentq import columnar

        columnar.need_pyarrow("job.batches()")
        yield from follow.follow(self._client, self.id, timeout_s=timeout, write=columnar.result_batch)
        record, failed = control.status(self.settings, self.id)
        if failed:
            raise _failed(record, failed)

    def to_arrow(self, *, timeout: float | None = None) -> pa.Table:
        """The job's rows as one Arrow table, once every chunk is in (see ``batches()``)."""
        import pyarrow as pa

        from sentq import columnar

        columnar.need_pyarrow("job.to_arrow()")
        return pa.Table.from_batches(list(self.batches(timeout=timeout)), schema=columnar.schema())

    def to_pandas(self, *, timeout: float | None = None) -> pd.DataFrame:
        """The job's rows as a pandas DataFrame (``label`` and ``model`` categorical); needs pandas and pyarrow."""
        return self.to_arrow(timeout=timeout).to_pandas()

    def wait(self, timeout: float | None = None) -> JobRecord:
        """Wait for the job to end and return its final record (state ``done``), without fetching its rows.

        Raises JobFailedError if chunks failed (``retry()`` runs them again), JobCancelledError, InputError if the
        input went bad part-way, JobTimeoutError past ``timeout`` seconds (the job keeps running: wait again).
        """
        poll_s = WAIT_POLL_S if timeout is None else max(min(WAIT_POLL_S, timeout), 0.01)
        # The last record watch yields is the final one (it yields at least once, or raises).
        record = deque(follow.watch(self._client, self.id, timeout_s=timeout, poll_s=poll_s), maxlen=1)[0]
        if record.state == JobState.DONE:
            return record
        if record.state == JobState.FAILED:
            raise _failed(record, control.status(self.settings, self.id)[1])
        if record.state == JobState.CANCELLED:
            raise JobCancelledError(f"job {self.id} was cancelled ({record.texts_done:,} texts were scored)")
        raise InputError(f"job {self.id} stopped: {record.error}")

    def cancel(self) -> JobRecord:
        """Flag the job cancelled (workers skip its queued chunks; running ones finish); returns its record.

        Raises JobStateError if the job has already finished.
        """
        return control.cancel(self.settings, self.id)

    def forget(self) -> int:
        """Free the finished job's keys in Redis now (its rows cannot be read afterwards); returns how many.

        Raises JobStateError while the job runs (cancel it first)."""
        return control.forget(self.settings, self.id)

    def retry(self) -> list[int]:
        """Queue the job's failed chunks again (each scored whole), then ``wait`` again; returns their indexes.

        Raises JobStateError if the job has no failed chunks.
        """
        return control.retry(self.settings, self.id)


def _text_source(
    source: object, settings: Settings, *, fmt: str | None, column: str | None, field: str | None
) -> TextSource:
    """The TextSource for a path, as ``sentq submit`` builds it, or for an iterable of texts, as a JSONL stream."""
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        if not isinstance(path, str):
            raise TypeError(f"sentq.submit takes a str path, got a bytes path {path!r}; decode it first")
        return TextSource.from_settings(path, settings, fmt=fmt, column=column, field=field)
    if isinstance(source, bytes | bytearray | memoryview) or not isinstance(source, Iterable):
        raise TypeError(
            f"sentq.submit takes a path or an iterable of str texts, not {type(source).__name__}"
            + ("; decode bytes first, or write them to a file and pass its path" if isinstance(source, bytes) else "")
        )
    given = [name for name, value in (("format", fmt), ("column", column), ("field", field)) if value is not None]
    if given:
        raise TypeError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to a path, not to an iterable")
    stream = io.BufferedReader(_JsonlTexts(source))
    return TextSource("-", stdin=stream, fmt="jsonl", name=ITERABLE_NAME, max_chars=settings.max_text_chars)


class _JsonlTexts(io.RawIOBase):
    """An iterable of texts read as JSONL bytes, one ``{"text": ...}`` line per item, made as the reader asks.

    The reader then applies its own checks, so an iterable is held to the same rules as a file (and the same
    messages), and item N is line N. A non-str item, or one that is not valid Unicode, is an InputError here.
    """

    def __init__(self, texts: Iterable[object]) -> None:
        super().__init__()
        self._items = iter(texts)
        self._position = 0
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if not self._pending:
            self._pending = memoryview(self._lines(len(view)))
        size = min(len(view), len(self._pending))
        view[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _lines(self, want: int) -> bytes:
        """At least ``want`` bytes of lines (fewer at the end of the items): a few KiB per call, not one item."""
        parts: list[bytes] = []
        size = 0
        for item in self._items:
            self._position += 1
            if not isinstance(item, str):
                raise InputError(
                    f"{ITERABLE_NAME}: line {self._position} is {type(item).__name__}, not str; "
                    "give each text as a str" + (" (decode bytes first)" if isinstance(item, bytes) else "")
                )
            try:
                line = f'{{"text":{_quote(item)}}}\n'.encode()
            except UnicodeEncodeError:
                at = next(i for i, c in enumerate(item) if 0xD800 <= ord(c) <= 0xDFFF)
                raise InputError(
                    f"{ITERABLE_NAME}: line {self._position} is not valid Unicode (a lone surrogate at column "
                    f"{at + 1}); fix how the text was decoded (e.g. errors='replace')"
                ) from None
            parts.append(line)
            size += len(line)
            if size >= want:
                break
        return b"".join(parts)


def _failed(record: JobRecord, failed: dict[int, Failure]) -> JobFailedError:
    """The JobFailedError of a job that finished with failed chunks, saying how much failed and how to re-run it."""
    return JobFailedError(
        f"job {record.id} finished with {jobs.describe_failures(failed)}; job.failures() says why, "
        f"job.retry() runs them again (then wait again)"
    )
