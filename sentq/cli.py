"""The ``sentq`` entry point: the plain forms of `sentq status` and `sentq submit` run without Typer, every other
command line goes to the Typer app (sentq.commands).

Typer builds every command and coerces each value with pydantic before it runs one: ~100 ms, more than `sentq status`
itself. A command line this module does not fully understand (``--help``, an unknown or repeated option, a value
that looks like an option, anything Typer would validate or refuse) goes to Typer as it is, so both ways behave alike.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
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


# The bodies of `sentq submit` and `sentq status`, run by either way in. They end the process with SystemExit
# (what typer.Exit becomes), so they need no Typer.


def submit_file(
    path: str,
    *,
    fmt: str | None,
    column: str | None,
    field: str | None,
    chunk_size: int | None,
    model: str | None,
    wait: bool,
) -> tuple[Settings, str]:
    """Submit ``path`` as one job, saying its id at once; returns the settings it used and the job's id."""
    from sentq import control
    from sentq.inputs import TextSource

    settings = load_settings(chunk_size=chunk_size)
    source = TextSource(path, fmt=fmt, column=column, field=field, max_chars=settings.max_text_chars)
    announce = print_job_id if not wait else lambda job_id: err.print(f"job {job_id} submitted; following it")
    record = control.submit(settings, source, model_version=model, on_created=announce)
    return settings, record.id


def print_job_id(job_id: str) -> None:
    if out.is_terminal:
        out.print(
            f"job [bold]{job_id}[/bold] submitted. Follow it: [bold]sentq wait {job_id}[/bold] "
            f"(rows to stdout, or -o rows.csv) · [bold]sentq status {job_id}[/bold]"
        )
    else:
        print(job_id, flush=True)


def follow_job(
    settings: Settings,
    job_id: str,
    *,
    output: Path | None,
    out_format: str | None,
    timeout: float | None,
    forget: bool = False,
) -> None:
    from rich.markup import escape

    from sentq import control, follow
    from sentq.export import Sink, format_for
    from sentq.render import ProgressView

    sink = Sink(output, format_for(output, out_format))
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
        ):
            sink.write(rows)
    except KeyboardInterrupt:
        view.close()
        err.print(f"interrupted; job {job_id} keeps running: reattach with `sentq wait {job_id}`")
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
        f"({record.texts_per_s:,.0f} texts/s since it was submitted, model {record.model_version})"
    )
    if forget and record.state.value == "done":
        freed = control.forget(settings, job_id)
        err.print(f"forgot job {job_id}: {freed:,} keys freed")


def show_status(job_id: str | None, *, as_json: bool, limit: int) -> None:
    """Recent jobs (a table, or JSON), or one job's progress, speed, ETA and failed chunks."""
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
    render.print_job(out, record, failures, control.ledger_summary(settings, job_id))


# ----- the plain command lines, read without Typer -----


def parse_plain(
    args: list[str], *, flags: dict[str, str], options: dict[str, str], max_args: int
) -> tuple[list[str], dict[str, Any]] | None:
    """``args`` as (arguments, {name: value or True}) when they are only the given flags and options, each at most
    once, and at most ``max_args`` arguments; None for anything else (Typer reads it then)."""
    positional: list[str] = []
    named: dict[str, Any] = {}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "-" or not arg.startswith("-"):
            positional.append(arg)
            continue
        opt, eq, value = arg.partition("=")
        given: str | bool
        if opt in flags and not eq:
            name, given = flags[opt], True
        elif opt in options and opt.startswith("--") and eq:
            name, given = options[opt], value
        elif opt in options and not eq and rest and not rest[0].startswith("-"):
            name, given = options[opt], rest.pop(0)
        else:
            return None  # --help, "--", -oFILE, an unknown option, a value that looks like an option...
        if name in named:
            return None
        named[name] = given
    return (positional, named) if len(positional) <= max_args else None


def whole_number(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() else None


def plain_status(args: list[str]) -> Callable[[], None] | None:
    """`sentq status [JOB] [--json] [--limit N]`."""
    parsed = parse_plain(args, flags={"--json": "as_json"}, options={"--limit": "limit"}, max_args=1)
    if parsed is None:
        return None
    positional, named = parsed
    limit = whole_number(named.get("limit", "20"))
    if limit is None:
        return None
    job_id = positional[0] if positional else None
    return lambda: show_status(job_id, as_json=bool(named.get("as_json")), limit=limit)


SUBMIT_OPTIONS = {
    "--format": "fmt",
    "-f": "fmt",
    "--column": "column",
    "--field": "field",
    "--chunk-size": "chunk_size",
    "--model": "model",
    "--output": "output",
    "-o": "output",
    "--out-format": "out_format",
    "--timeout": "timeout",
}


def plain_submit(args: list[str]) -> Callable[[], None] | None:
    """`sentq submit PATH [--wait [--forget]] [-o FILE] [--chunk-size N] [--timeout S] [...]`."""
    parsed = parse_plain(args, flags={"--wait": "wait", "--forget": "forget"}, options=SUBMIT_OPTIONS, max_args=1)
    if parsed is None or len(parsed[0]) != 1:
        return None
    (path,), named = parsed
    wait, forget = bool(named.pop("wait", False)), bool(named.pop("forget", False))
    if forget and not wait:
        return None  # Typer's message for it
    # --chunk-size falls back to SENTQ_CHUNK_SIZE as Typer reads it (an empty variable is unset).
    raw_size = named.pop("chunk_size", None)
    if raw_size is None:
        raw_size = os.environ.get("SENTQ_CHUNK_SIZE") or None
    chunk_size = whole_number(raw_size) if raw_size is not None else None
    raw_timeout = named.pop("timeout", None)
    timeout = plain_seconds(raw_timeout) if raw_timeout is not None else None
    output = named.pop("output", None)
    if (raw_size is not None and chunk_size is None) or (raw_timeout is not None and timeout is None) or output == "":
        return None

    def run() -> None:
        settings, job_id = submit_file(
            path,
            fmt=named.get("fmt"),
            column=named.get("column"),
            field=named.get("field"),
            chunk_size=chunk_size,
            model=named.get("model"),
            wait=wait,
        )
        if wait:
            to = Path(output) if output is not None else None
            follow_job(settings, job_id, output=to, out_format=named.get("out_format"), timeout=timeout, forget=forget)

    return run


def plain_seconds(value: str) -> float | None:
    """``12`` or ``2.5``: a number of seconds every reading agrees on."""
    return float(value) if re.fullmatch(r"[0-9]+(\.[0-9]+)?", value) else None


PLAIN_COMMANDS = {"status": plain_status, "submit": plain_submit}


def plain_command(argv: list[str]) -> Callable[[], None] | None:
    """What to run for ``argv`` without Typer, or None."""
    if not argv or argv[0] not in PLAIN_COMMANDS or "_SENTQ_COMPLETE" in os.environ:
        return None
    return PLAIN_COMMANDS[argv[0]](argv[1:])


def main() -> None:
    """Console-script entry point."""
    try:
        run = plain_command(sys.argv[1:])
        if run is None:
            from sentq.commands import app

            app()
            return
        try:
            run()
        except errors.SentqError as exc:
            print_error(exc)
            raise SystemExit(exit_code_for(exc)) from None
        except KeyboardInterrupt:  # as Typer ends a command interrupted: no message
            raise SystemExit(EXIT_INTERRUPTED) from None
        except OSError as exc:  # as Typer does: a closed pipe (`sentq status | head -1`) is exit 1, quietly
            if exc.errno != errno.EPIPE:
                raise
            sys.stdout = Quiet(sys.stdout)
            sys.stderr = Quiet(sys.stderr)
            raise SystemExit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except errors.SentqError as exc:  # raised outside a command, e.g. by settings at import
        print_error(exc)
        raise SystemExit(exit_code_for(exc)) from None


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


if __name__ == "__main__":
    main()
