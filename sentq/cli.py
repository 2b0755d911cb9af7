"""The ``sentq`` command line: thin Typer commands that parse, make one call into sentq, and render with Rich."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
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
    errors.BrokerUnavailableError: EXIT_CONNECT,
    errors.JobTimeoutError: EXIT_TIMEOUT,
    errors.JobCancelledError: EXIT_CANCELLED,
}

app = typer.Typer(
    name="sentq",
    help="Score files of texts for sentiment on Celery workers over Redis, and manage the model.\n\n"
    "Settings come from SENTQ_* environment variables (SENTQ_BROKER_URL, SENTQ_CHUNK_SIZE, ...); "
    "see the README for the full table.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def exit_code_for(exc: errors.SentqError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_USAGE


def command(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """``app.command`` that turns a SentqError into one red line on stderr and its exit code."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def run(*a: Any, **kw: Any) -> Any:
            try:
                return func(*a, **kw)
            except errors.SentqError as exc:
                err.print(f"[red]error:[/red] {exc}", markup=True, soft_wrap=True)
                raise typer.Exit(code=exit_code_for(exc)) from None

        app.command(*args, **kwargs)(run)
        return func

    return decorate


def load_settings(**overrides: Any) -> Settings:
    return Settings.from_env(**overrides)


@command()
def version() -> None:
    """Print the versions of sentq, Celery and Python."""
    from importlib.metadata import version as pkg_version

    out.print(f"sentq {pkg_version('sentq')} (celery {pkg_version('celery')}, python {sys.version.split()[0]})")


@command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", help="Worker processes (default: one per CPU core).")
    ] = None,
    queues: Annotated[
        str | None, typer.Option("--queues", "-Q", help="Queues to consume (default: the scoring and retrain queues).")
    ] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", envvar="SENTQ_LOG_LEVEL", help="Log level.")] = "INFO",
    name: Annotated[str | None, typer.Option("--hostname", "-n", help="Worker node name, e.g. w1@%h.")] = None,
) -> None:
    """Run a Celery worker on sentq's app (prefork, one model per process).

    Extra options after -- go to `celery worker` as they are, e.g. `sentq worker -- --without-mingle`.
    """
    settings = load_settings()
    argv = [sys.executable, "-m", "celery", "-A", "sentq.worker", "worker", "--pool", "prefork", "--loglevel", loglevel]
    argv += ["--queues", queues or f"{settings.queue},{settings.retrain_queue}"]
    argv += ["--concurrency", str(concurrency or os.cpu_count() or 1)]
    if name:
        argv += ["--hostname", name]
    argv += list(ctx.args)
    sys.stdout.flush()
    os.execv(sys.executable, argv)


ChunkSize = Annotated[
    int | None, typer.Option("--chunk-size", envvar="SENTQ_CHUNK_SIZE", help="Texts per task.", show_default=False)
]
Output = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write rows here (.jsonl or .csv) instead of stdout.")
]
OutFormat = Annotated[str | None, typer.Option("--out-format", help="jsonl or csv (default: by --output suffix).")]
Timeout = Annotated[float | None, typer.Option("--timeout", help="Give up waiting after this many seconds (exit 4).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@command()
def submit(
    path: Annotated[str, typer.Argument(help="Input file (text, CSV/TSV, JSONL, optionally .gz), or - for stdin.")],
    fmt: Annotated[
        str | None, typer.Option("--format", "-f", help="text, csv, tsv or jsonl (default: by suffix).")
    ] = None,
    column: Annotated[str | None, typer.Option("--column", help="CSV/TSV column: header NAME or INDEX from 1.")] = None,
    field: Annotated[str | None, typer.Option("--field", help="JSONL field holding the text [default: text].")] = None,
    chunk_size: ChunkSize = None,
    model: Annotated[
        int | None, typer.Option("--model", help="Score with this model version (default: current).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job and print its rows, like `sentq wait`.")] = False,
    output: Output = None,
    out_format: OutFormat = None,
    timeout: Timeout = None,
) -> None:
    """Submit a file of texts as one job; prints its id at once (alone on stdout when piped)."""
    from sentq import control
    from sentq.inputs import TextSource

    settings = load_settings(chunk_size=chunk_size)
    source = TextSource(path, fmt=fmt, column=column, field=field, max_chars=settings.max_text_chars)
    announce = print_job_id if not wait else lambda job_id: err.print(f"job {job_id} submitted; following it")
    record = control.submit(settings, source, model_version=model, on_created=announce)
    if wait:
        follow_job(settings, record.id, output=output, out_format=out_format, timeout=timeout)


def print_job_id(job_id: str) -> None:
    if out.is_terminal:
        out.print(
            f"job [bold]{job_id}[/bold] submitted. Follow it: [bold]sentq wait {job_id}[/bold] "
            f"(rows to stdout, or -o rows.csv) · [bold]sentq status {job_id}[/bold]"
        )
    else:
        print(job_id, flush=True)


@command()
def wait(
    job_id: Annotated[str, typer.Argument(help="The job id `sentq submit` printed.")],
    output: Output = None,
    out_format: OutFormat = None,
    timeout: Timeout = None,
) -> None:
    """Follow a job to its end, streaming its rows in input order (JSONL to stdout by default)."""
    follow_job(load_settings(), job_id, output=output, out_format=out_format, timeout=timeout)


def follow_job(
    settings: Settings, job_id: str, *, output: Path | None, out_format: str | None, timeout: float | None
) -> None:
    from sentq import control, jobs
    from sentq.export import Sink, format_for
    from sentq.render import ProgressView

    sink = Sink(output, format_for(output, out_format))
    view = ProgressView(err, job_id)
    try:
        for rows in jobs.follow(control.connect(settings), job_id, timeout_s=timeout, on_progress=view.update):
            sink.write(rows)
    except KeyboardInterrupt:
        view.close()
        err.print(f"interrupted; job {job_id} keeps running: reattach with `sentq wait {job_id}`")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        view.close()
        sink.close()
    record, failures = control.status(settings, job_id)
    where = f" to {output}" if output else ""
    if failures:
        err.print(
            f"[red]job {job_id} finished with {len(failures)} failed chunks[/red]; {sink.rows:,} rows{where}. "
            f"See `sentq status {job_id}`, re-run them with `sentq retry {job_id}`"
        )
        raise typer.Exit(EXIT_FAILED_CHUNKS)
    err.print(
        f"job {job_id} {record.state.value}: {sink.rows:,} rows{where} "
        f"({record.texts_per_s:,.0f} texts/s, model {record.model_version})"
    )


@command()
def status(
    job_id: Annotated[str | None, typer.Argument(help="A job id; without one, a table of recent jobs.")] = None,
    as_json: AsJson = False,
    limit: Annotated[int, typer.Option("--limit", help="How many recent jobs to list.")] = 20,
) -> None:
    """Show recent jobs, or one job's progress, speed, ETA and failed chunks."""
    from sentq import control, render

    settings = load_settings()
    if job_id is None:
        records = control.recent(settings, limit=limit)
        if as_json:
            print(json.dumps([r.to_dict() for r in records], indent=2))
        else:
            render.print_jobs(out, records)
        return
    record, failures = control.status(settings, job_id)
    if as_json:
        print(json.dumps(record.to_dict() | {"failures": {str(k): v for k, v in failures.items()}}, indent=2))
    else:
        render.print_job(out, record, failures)


@command()
def cancel(job_id: Annotated[str, typer.Argument(help="The job to cancel.")]) -> None:
    """Cancel a job: queued chunks are skipped, running ones finish."""
    from sentq import control

    record = control.cancel(load_settings(), job_id)
    err.print(f"job {job_id} is {record.state.value} ({record.texts_done:,} texts were scored)")


@command()
def retry(job_id: Annotated[str, typer.Argument(help="A job that finished with failed chunks.")]) -> None:
    """Run a job's failed chunks again (the rows already scored are kept)."""
    from sentq import control

    indexes = control.retry(load_settings(), job_id)
    if not indexes:
        err.print(f"job {job_id} has no failed chunks")
        return
    err.print(f"queued {len(indexes)} failed chunks of job {job_id} again; follow with `sentq wait {job_id}`")


@command()
def workers(as_json: AsJson = False) -> None:
    """List live workers (host, processes, model, tasks done) and queue depth."""
    from sentq import control, render

    found, depths = control.workers(load_settings())
    if as_json:
        print(json.dumps({"workers": [vars(w) for w in found], "queues": depths}, indent=2))
    else:
        render.print_workers(out, found, depths)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except errors.SentqError as exc:  # raised outside a command, e.g. by settings at import
        err.print(f"[red]error:[/red] {exc}", markup=True, soft_wrap=True)
        raise SystemExit(exit_code_for(exc)) from None


if __name__ == "__main__":
    main()
