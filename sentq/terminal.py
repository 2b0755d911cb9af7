"""What every `sentq` command line shares, whichever way it was read (sentq.cli's plain reader or the Typer app in
sentq.commands): the consoles, the exit codes, the one-line error, settings, and the bodies of the commands both
ways run (submit, wait, status, cancel). Neither face owns it; it imports neither.

A body takes the command's options by the names its Typer declaration gives them and ends the process with
SystemExit where it must (what typer.Exit becomes), so it needs no Typer.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from sentq import errors
from sentq.settings import Settings

# The exit codes of DESIGN.md, one named table.
EXIT_OK = 0
EXIT_FAILED_CHUNKS = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_TIMEOUT = 4
EXIT_CANCELLED = 5
EXIT_INTERRUPTED = 130
EXIT_CODES: dict[type[errors.SentqError], int] = {
    errors.ConfigError: EXIT_USAGE,
    errors.InputError: EXIT_USAGE,
    errors.DatasetMissingError: EXIT_USAGE,
    errors.ModelError: EXIT_USAGE,
    errors.JobNotFoundError: EXIT_USAGE,
    errors.JobStateError: EXIT_USAGE,
    errors.BrokerUnavailableError: EXIT_CONNECT,
    errors.JobFailedError: EXIT_FAILED_CHUNKS,
    errors.JobTimeoutError: EXIT_TIMEOUT,
    errors.JobCancelledError: EXIT_CANCELLED,
}

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def exit_code_for(exc: errors.SentqError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_USAGE


def print_error(exc: errors.SentqError) -> None:
    """One red line on stderr (the message is escaped: Rich must not read "[...]" in it as markup)."""
    from rich.markup import escape

    err.print(f"[red]error:[/red] {escape(str(exc))}", markup=True, soft_wrap=True)


def load_settings(**overrides: Any) -> Settings:
    return Settings.from_env(**overrides)


class Quiet:
    """A stream whose flush ignores a closed pipe (the interpreter flushes stdout at exit)."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def flush(self) -> None:
        try:
            self.wrapped.flush()
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.wrapped, attr)


# ----- the bodies of the commands both ways run -----


def submit(
    *,
    path: str,
    fmt: str | None,
    column: str | None,
    field: str | None,
    chunk_size: int | None,
    model: str | None,
    wait: bool,
    output: Path | None,
    out_format: str | None,
    raw_csv: bool,
    timeout: float | None,
    forget: bool,
    resume: str | None = None,
) -> None:
    """`sentq submit`: one job, its id said at once; with ``wait``, followed like `sentq wait`. With ``resume``, the
    job whose submission stopped part-way is continued from this input instead."""
    from sentq import control
    from sentq.inputs import TextSource

    if forget and not wait:  # before anything is queued
        raise errors.ConfigError("--forget needs --wait (it frees the job once its rows are downloaded)")
    if resume is not None and model is not None:
        raise errors.ConfigError("--model does not apply with --resume: the job keeps the model it was submitted with")
    settings = load_settings()
    stage: Callable[[Callable[[str], None]], Any]
    if resume is not None:
        job = resume
        source, size = control.resume_source(
            settings, job, path, fmt=fmt, column=column, field=field, chunk_size=chunk_size, live=True
        )
        said = "resumed"
        stage = lambda told: control.resume(settings, job, source, size, on_resumed=told)  # noqa: E731
    else:
        settings = load_settings(chunk_size=chunk_size)
        source = TextSource.from_settings(path, settings, live=True, fmt=fmt, column=column, field=field)
        said = "submitted"
        stage = lambda told: control.submit(settings, source, model_version=model, on_created=told)  # noqa: E731
    if wait:
        announce: Callable[[str], None] = lambda job_id: err.print(f"job {job_id} {said}; following it")  # noqa: E731
    else:
        announce = print_job_id if resume is None else lambda job_id: err.print(f"job {job_id} resumed")
    follow: dict[str, Any] = dict(output=output, out_format=out_format, raw_csv=raw_csv, timeout=timeout, forget=forget)
    if wait and source.is_stream:
        _stage_following(settings, source, stage, announce, follow)
        return
    record = stage(announce)
    if wait:
        follow_job(settings, record.id, **follow)
    elif resume is not None:
        err.print(f"job {record.id}: all of its input is staged now; follow it with `sentq wait {record.id}`")


def _stage_following(
    settings: Settings,
    source: Any,
    stage: Callable[[Callable[[str], None]], Any],
    announce: Callable[[str], None],
    follow: dict[str, Any],
) -> None:
    """`sentq submit - --wait`: the stream is staged on a thread while its rows are followed here, so they come out
    as its lines arrive (with SENTQ_STREAM_IDLE, a quiet pipe's lines are queued without waiting for a whole chunk).
    An input error is told as the producer saw it (its line); Ctrl-C stops the reading: the job is marked invalid,
    its queued chunks run."""
    import threading

    created = threading.Event()
    outcome: dict[str, Any] = {}

    def on_created(job_id: str) -> None:
        outcome["job"] = job_id
        announce(job_id)
        created.set()

    def produce() -> None:
        try:
            stage(on_created)
        except BaseException as exc:  # noqa: BLE001 - told on the main thread
            outcome["error"] = exc
        finally:
            created.set()

    producer = threading.Thread(target=produce, name="sentq-producer", daemon=True)
    producer.start()
    created.wait()
    if "job" not in outcome:
        producer.join()
        raise outcome["error"]
    job_id = outcome["job"]

    def interrupted() -> str:
        if source.interrupt():
            producer.join(timeout=5)
        return f"interrupted; the rest of the input is not read: job {job_id} scores what was queued (`sentq wait`)"

    try:
        follow_job(settings, job_id, on_interrupt=interrupted, **follow)
    except (SystemExit, errors.SentqError):
        producer.join(timeout=5)  # the job ended because the producer failed: its error says where
        error = outcome.get("error")
        if isinstance(error, errors.SentqError):
            raise error from None
        raise
    producer.join()
    if isinstance(outcome.get("error"), BaseException):
        raise outcome["error"]


def wait(
    *,
    job_id: str,
    output: Path | None,
    out_format: str | None,
    raw_csv: bool,
    timeout: float | None,
    forget: bool,
) -> None:
    """`sentq wait`: follow a job to its end, its rows in input order."""
    follow_job(
        load_settings(),
        job_id,
        output=output,
        out_format=out_format,
        raw_csv=raw_csv,
        timeout=timeout,
        forget=forget,
    )


def status(*, job_id: str | None, as_json: bool, limit: int) -> None:
    """`sentq status`: recent jobs (a table, or JSON), or one job's progress, speed, ETA and failed chunks."""
    from sentq import control, render

    settings = load_settings()
    if job_id is None:
        records = control.recent(settings, limit=limit)
        if as_json:
            print(json.dumps([r.to_dict() for r in records], indent=2))
        else:
            render.print_jobs(out, records)
        return
    if as_json:
        print(json.dumps(control.status_dict(settings, job_id), indent=2))
        return
    record, failures = control.status(settings, job_id)
    where = control.ledger_summary(settings, job_id)
    render.print_job(out, record, failures, where, waiting=control.waiting(settings, record, where))


def cancel(*, job_id: str) -> None:
    """`sentq cancel`: queued chunks are skipped, running ones finish."""
    from sentq import control

    record = control.cancel(load_settings(), job_id)
    err.print(f"job {job_id} is {record.state.value} ({record.texts_done:,} texts were scored)")


def print_job_id(job_id: str) -> None:
    if out.is_terminal:
        out.print(
            f"job [bold]{job_id}[/bold] submitted. Follow it: [bold]sentq wait {job_id}[/bold] "
            f"(rows to stdout, or -o rows.csv) · [bold]sentq status {job_id}[/bold]"
        )
    else:
        print(job_id, flush=True)


# glibc gives freed heap back to the OS once 2x the largest block freed so far is free at its top, and maps each
# block over 128 KB (at first) afresh: a waiter frees ~1.5 MB of buffers a chunk (its texts, their copies, its rows),
# so every byte of a download was faulted in anew (87,000 page faults, a fifth of `sentq wait -o x.jsonl`'s CPU for 2M
# rows). Kept up to these sizes instead (the waiter's peak RSS is unchanged: bench/download.py, bench/producer.py).
_MALLOC_TRIM_BYTES = 64 << 20
_MALLOC_MMAP_BYTES = 4 << 20


def keep_freed_memory() -> None:
    """Have glibc's malloc keep freed memory for reuse in this process (a no-op elsewhere: another allocator)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-1, _MALLOC_TRIM_BYTES)  # M_TRIM_THRESHOLD
    mallopt(-3, _MALLOC_MMAP_BYTES)  # M_MMAP_THRESHOLD


def follow_job(
    settings: Settings,
    job_id: str,
    *,
    output: Path | None,
    out_format: str | None,
    timeout: float | None,
    raw_csv: bool = False,
    forget: bool = False,
    on_interrupt: Callable[[], str] | None = None,
) -> None:
    """Follow ``job_id`` with a progress view on stderr, its rows to ``output`` (or stdout); exit as DESIGN.md says.
    On Ctrl-C, ``on_interrupt`` (if given) acts and says what became of the job."""
    from rich.markup import escape

    from sentq import control, follow, jobs
    from sentq.export import Sink, format_for
    from sentq.render import ProgressView, duration

    sink = Sink(output, format_for(output, out_format), raw_csv=raw_csv)
    keep_freed_memory()
    view = ProgressView(err, job_id)
    try:
        lost = lambda exc: view.say(f"[yellow]lost Redis ({escape(str(exc))}); retrying for 30 s[/yellow]")  # noqa: E731
        stalled = lambda why: view.say(f"[yellow]{escape(why)}[/yellow]")  # noqa: E731
        client = control.connect(settings)
        for rows in follow.follow(
            client,
            job_id,
            timeout_s=timeout,
            on_progress=view.update,
            on_disconnect=lost,
            on_stall=stalled,
            stall_after_s=settings.stall_after_s,
            write=sink.rows_of,
        ):
            sink.write(rows)
        # The bar ends on the job's final record (the last poll may have read it a chunk early).
        view.update(follow.Progress(jobs.get(client, job_id), 0))
    except KeyboardInterrupt:
        view.close()
        said = f"interrupted; job {job_id} keeps running: reattach with `sentq wait {job_id}`"
        said = on_interrupt() if on_interrupt else said
        err.print(said, markup=False)
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        view.close()
        sink.close()
    record, failures = control.status(settings, job_id)
    where = f" to {output}" if output else ""
    if failures:
        from sentq.jobs import describe_failures

        err.print(
            f"[red]job {job_id} finished with {escape(describe_failures(failures))}[/red]; {sink.rows:,} rows{where}. "
            f"See `sentq status {job_id}`, re-run them with `sentq retry {job_id}`"
            + (" (not forgotten: --forget frees only a job that is done)" if forget else "")
        )
        raise SystemExit(EXIT_FAILED_CHUNKS)
    err.print(
        f"job {job_id} {record.state.value}: {sink.rows:,} rows{where} "
        f"in {duration(record.duration_s)} ({record.texts_per_s:,.0f} texts/s since it was submitted, model "
        f"{record.model_version})"
    )
    if forget and record.state.value == "done":
        freed = control.forget(settings, job_id)
        err.print(f"forgot job {job_id}: {freed:,} keys freed")
