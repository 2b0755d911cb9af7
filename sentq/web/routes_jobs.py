"""Jobs over HTTP: what `sentq submit / status / wait / cancel / retry` do, through the same control functions."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, BinaryIO, Literal, cast

import anyio
import anyio.to_thread
import redis
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sentq import columnar, control, errors
from sentq.inputs import TextSource
from sentq.settings import Settings, mask_secrets
from sentq.web import problems
from sentq.web.auth import can_read, can_write, settings_of
from sentq.web.schemas import Job, JobDetail, JobPage, Retried, raw_body
from sentq.web.upload import BodyStream, too_large

log = logging.getLogger("sentq.api")
# How often an open download or event stream looks at Redis while the job runs.
POLL_S = 0.1
EVENTS_POLL_S = 0.5
KEEPALIVE_S = 15.0
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
SettingsDep = Annotated[Settings, Depends(settings_of)]

# Content-Type -> input format (a ?format= query wins).
CONTENT_TYPES = {
    "text/plain": "text",
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/octet-stream": "text",
    "application/gzip": "text",
    "application/x-gzip": "text",
}
CURSOR = r"^[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?:[0-9a-f]*$"
ENCODINGS = ("", "identity", "gzip", "x-gzip")
UPLOAD_DOC = """The request body is the file, read as a stream: chunks are staged and queued as they arrive, never
the whole body in memory. Format from Content-Type (text/plain, text/csv, text/tab-separated-values,
application/x-ndjson, application/jsonl) or ?format=; gzip by Content-Encoding or by its magic bytes.
A body that turns out bad part-way marks its job invalid (422, the job id in the problem); one refused before its
first chunk is queued makes no job (no id in the problem). An Idempotency-Key header makes a retried upload answer
with the same job (200) instead of creating another; a second upload with the key while the first is read is a 409."""


def input_format(content_type: str | None, fmt: str | None, encoding: str | None) -> str:
    if (encoding or "").strip().lower() not in ENCODINGS:
        raise errors.UnsupportedFormatError(
            f"Content-Encoding {encoding!r} is not supported; send it as it is or gzipped (Content-Encoding: gzip)"
        )
    if fmt is not None:
        return fmt
    media = (content_type or "text/plain").split(";", 1)[0].strip().lower()
    if media not in CONTENT_TYPES:
        raise errors.UnsupportedFormatError(
            f"Content-Type {media!r} is not an input format sentq reads; use one of: "
            f"{', '.join(t for t in CONTENT_TYPES if not t.startswith('application/o'))}, or ?format=text|csv|tsv|jsonl"
        )
    return CONTENT_TYPES[media]


@router.post(
    "",
    status_code=202,
    response_model=Job,
    dependencies=[Depends(can_write)],
    description=UPLOAD_DOC,
    responses={200: {"model": Job, "description": "An earlier upload with the same Idempotency-Key made this job."}},
    openapi_extra=raw_body(CONTENT_TYPES, required=True),
)
async def submit(
    request: Request,
    settings: SettingsDep,
    format: Annotated[
        Literal["text", "csv", "tsv", "jsonl"] | None, Query(description="Wins over Content-Type.")
    ] = None,
    column: Annotated[str | None, Query(description="CSV/TSV column: header name or index from 1.")] = None,
    field: Annotated[str | None, Query(description="JSONL field holding the text (default: text).")] = None,
    chunk_size: Annotated[int | None, Query(description="Texts per task.")] = None,
    model: Annotated[str | None, Query(description="Score with this model version, e.g. v3.")] = None,
    name: Annotated[str | None, Query(max_length=200, description="Shown as the job's source.")] = None,
    content_type: Annotated[str | None, Header()] = None,
    content_encoding: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    fmt = input_format(content_type, format, content_encoding)
    shown = name or "<upload>"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.api_max_bytes:
        raise errors.PayloadTooLargeError(too_large(shown, settings.api_max_bytes))
    if chunk_size is not None:
        settings = settings.replace(chunk_size=chunk_size)
    if idempotency_key:
        earlier = await anyio.to_thread.run_sync(control.idempotent_job, settings, idempotency_key)
        if earlier is not None:
            return _job_response(earlier.to_dict(), 200, replayed=True)
    body = BodyStream(request.stream(), max_bytes=settings.api_max_bytes, name=shown)
    source = TextSource.from_settings(
        "-", settings, fmt=fmt, column=column, field=field, stdin=cast(BinaryIO, body), name=shown
    )

    def created(job_id: str) -> None:
        request.state.job_id = job_id  # named in the problem if the body turns out bad

    def run() -> dict[str, Any]:
        record = control.submit(
            settings, source, model_version=model, on_created=created, idempotency_key=idempotency_key
        )
        return record.to_dict()

    return _job_response(await anyio.to_thread.run_sync(run), 202)


def _job_response(job: dict[str, Any], status: int, *, replayed: bool = False) -> JSONResponse:
    headers = {"Location": f"/v1/jobs/{job['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(Job.model_validate(job).model_dump(), status_code=status, headers=headers)


@router.get("", response_model=JobPage, dependencies=[Depends(can_read)])
def list_jobs(
    settings: SettingsDep,
    state: Annotated[
        Literal["staging", "queued", "running", "done", "failed", "cancelled", "invalid"] | None, Query()
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR, max_length=100, description="next_cursor of the previous page.")
    ] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Only jobs whose id starts with it or whose source holds it.")
    ] = None,
) -> dict[str, Any]:
    """Recent jobs, newest first, a page at a time (optionally only those in one state, or matching a search)."""
    found, next_cursor = control.list_jobs(settings, state=state, limit=limit, cursor=cursor, search=q)
    return {"jobs": [r.to_dict() for r in found], "next_cursor": next_cursor}


@router.get("/{job_id}", response_model=JobDetail, dependencies=[Depends(can_read)])
def status(job_id: str, settings: SettingsDep) -> dict[str, Any]:
    """The job's record, failed chunks and lines, and where its unfinished chunks are (`sentq status JOB --json`)."""
    return control.status_dict(settings, job_id)


@router.get(
    "/{job_id}/results",
    dependencies=[Depends(can_read)],
    responses={
        200: {
            "description": "The rows in input order, streamed as chunks finish (JSONL; CSV by Accept or ?format; "
            "?format=parquet: one Parquet file, if the API's host has pyarrow). "
            "A download that ends before the job is done (cancelled, invalid input, its producer gone) is never a "
            'clean end: JSONL ends with one line {"problem": {...problem+json...}}; a CSV response is cut short.',
            "content": {"application/x-ndjson": {}, "text/csv": {}, "application/vnd.apache.parquet": {}},
        }
    },
    response_class=StreamingResponse,
)
def results(
    job_id: str,
    settings: SettingsDep,
    format: Annotated[Literal["jsonl", "csv", "parquet"] | None, Query()] = None,
    from_line: Annotated[int, Query(ge=1, description="Resume: only rows of this input line and later.")] = 1,
    raw_csv: Annotated[
        bool,
        Query(
            description="CSV: texts exactly as submitted. By default a text starting with = + - @ or a tab gets a "
            "leading ' so a spreadsheet shows it instead of running it as a formula."
        ),
    ] = False,
    accept: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The job's rows in input order, streamed as workers finish chunks (the response ends when the job does)."""
    from sentq import export

    fmt = format or ("csv" if accept and "text/csv" in accept and "x-ndjson" not in accept else "jsonl")
    if fmt == "parquet" and not columnar.available():
        raise errors.InputError("?format=parquet needs pyarrow on the API's host: pip install 'sentq[arrow]'")
    chunks = control.results(settings, job_id, from_line=from_line, yield_idle=True, fmt=fmt, raw_csv=raw_csv)
    parquet = _ParquetStream() if fmt == "parquet" else None

    async def body() -> AsyncIterator[bytes]:
        # A thread only for each short step, never while waiting for workers: thousands of open downloads (and
        # console pages' event streams) cost no threads, and never starve the pool the other routes run in.
        if fmt == "csv":
            yield export.CSV_HEADER
        try:
            while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
                if isinstance(chunk, bytes) and not chunk:
                    await anyio.sleep(POLL_S)
                elif parquet is not None:
                    if made := await anyio.to_thread.run_sync(parquet.add, chunk):
                        yield made
                else:
                    yield chunk
            if parquet is not None:
                yield await anyio.to_thread.run_sync(parquet.end)
        except (errors.JobCancelledError, errors.InputError, errors.JobFailedError, errors.JobNotFoundError) as exc:
            # The rows there are, then never a clean-looking end: JSONL ends with a problem line; CSV and Parquet
            # have no place for one, so the response is cut short (no final chunk; a Parquet file without its
            # footer), which every HTTP client reports as an error.
            log.info("results of job %s end early: %s", job_id, exc)
            if fmt != "jsonl":
                raise
            problem = problems.problem_body(problems.status_for(exc), mask_secrets(str(exc)), job=job_id)
            yield json.dumps({"problem": problem}).encode() + b"\n"

    media = {"csv": "text/csv; charset=utf-8", "parquet": PARQUET_MEDIA}.get(fmt, "application/x-ndjson")
    return StreamingResponse(body(), media_type=media, headers={"Cache-Control": "no-store"})


PARQUET_MEDIA = "application/vnd.apache.parquet"


class _ParquetStream(io.RawIOBase):
    """A Parquet file written as it streams: each call hands back the bytes written since the last one."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[bytes] = []
        self._sink = columnar.ParquetSink(self)  # type: ignore[arg-type]

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._pending.append(bytes(data))
        return len(data)

    def _taken(self) -> bytes:
        made, self._pending = b"".join(self._pending), []
        return made

    def add(self, batch: Any) -> bytes:
        self._sink.write(batch)
        return self._taken()

    def end(self) -> bytes:
        self._sink.close()
        return self._taken()


@router.get(
    "/{job_id}/events",
    dependencies=[Depends(can_read)],
    responses={
        200: {
            "description": "Server-Sent Events: `progress` (the job record) on each change, then `end`; `problem` "
            "if the job cannot be followed (Redis lost, the job vanished).",
            "content": {"text/event-stream": {}},
        }
    },  # fmt: skip
    response_class=StreamingResponse,
)
def events(job_id: str, settings: SettingsDep) -> StreamingResponse:
    """Progress as Server-Sent Events (the job record on each change), until the job ends (an `end` event)."""
    from sentq import follow, ledger
    from sentq.jobs import JobRecord

    client = control.connect(settings)
    control.status(settings, job_id)  # 404 before the stream starts
    polls = follow.watch(client, job_id, every_poll=True)

    def poll() -> tuple[JobRecord, dict[str, Any]] | None:
        """The next record, with where its chunks are and whether a worker serves its queue (the job page's
        "in flight" and "no worker" lines), unless it is over."""
        record = next(polls, None)
        if record is None or record.state.finished:
            return None if record is None else (record, {})
        where = ledger.summary(client, job_id)
        return record, {
            "in_flight": {"pending": where.pending, "being_scored": len(where.leased)},
            "no_worker": follow.unserved(client, record),
            "waiting_for_worker": follow.waiting(client, record, where),
        }

    async def stream() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        last: JobRecord | None = None
        said: tuple[Any, ...] = ()
        quiet_since = time.monotonic()
        try:
            while (polled := await anyio.to_thread.run_sync(poll)) is not None:
                record, extra = polled
                # The record, and what changes without it: its chunks leased or waiting, a worker gone or back.
                now = (record, json.dumps(extra, sort_keys=True))
                if now != said:
                    last, said, quiet_since = record, now, time.monotonic()
                    yield f"event: progress\ndata: {json.dumps(record.to_dict() | extra)}\n\n".encode()
                elif time.monotonic() - quiet_since > KEEPALIVE_S:  # proxies close a silent stream
                    quiet_since = time.monotonic()
                    yield b": still running\n\n"
                if not record.state.finished:
                    await anyio.sleep(EVENTS_POLL_S)
        except (errors.SentqError, redis.RedisError) as exc:
            yield f"event: problem\ndata: {json.dumps({'detail': mask_secrets(str(exc))})}\n\n".encode()
            return
        if last is not None:
            yield f"event: end\ndata: {json.dumps(last.to_dict())}\n\n".encode()

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


@router.post("/{job_id}/cancel", response_model=Job, dependencies=[Depends(can_write)])
def cancel(job_id: str, settings: SettingsDep) -> dict[str, Any]:
    """Cancel a job that has not finished: its queued chunks are skipped, running ones finish (409 if finished)."""
    return control.cancel(settings, job_id).to_dict()


@router.delete("/{job_id}", status_code=204, dependencies=[Depends(can_write)])
def forget(job_id: str, settings: SettingsDep) -> Response:
    """Free a finished job's keys now (record, rows, ledger): `sentq forget`. 409 while it runs (cancel it first)."""
    control.forget(settings, job_id)
    return Response(status_code=204)


@router.post("/{job_id}/retry", response_model=Retried, dependencies=[Depends(can_write)])
def retry(job_id: str, settings: SettingsDep) -> dict[str, Any]:
    """Queue the job's failed chunks again (409 if it has none); the rows already scored are kept."""
    indexes = control.retry(settings, job_id)
    record, _ = control.status(settings, job_id)
    return {"job": record.to_dict(), "chunks": indexes}
