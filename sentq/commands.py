"""The ``sentq`` command line: thin Typer commands that parse, make one call into sentq, and render with Rich.

These signatures are the one declaration of every command's options. A command declared with ``body=`` (a function
of sentq.terminal taking the options by name) runs that body, and sentq.plain reads its plain command lines without
Typer from a table generated from this declaration (`make cli-table`).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from sentq import errors, terminal
from sentq.terminal import err, exit_code_for, load_settings, out, print_error

app = typer.Typer(
    name="sentq",
    help="Score files of texts for sentiment on Celery workers over Redis, and manage the model.\n\n"
    "Settings come from SENTQ_* environment variables (SENTQ_BROKER_URL, SENTQ_CHUNK_SIZE, ...); "
    "see the README for the full table.",
    epilog="Examples:  sentq worker  ·  JOB=$(sentq submit texts.txt)  ·  sentq wait $JOB -o rows.csv  ·  "
    "sentq submit reviews.csv --column body --wait  ·  sentq status  ·  sentq retrain --wait  ·  sentq model list\n\n"
    "Exit codes: 0 done, 1 failed chunks, 2 bad input or usage, 3 Redis/broker unreachable, 4 timed out, "
    "5 cancelled, 130 interrupted (the job keeps running).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

F = TypeVar("F", bound=Callable[..., Any])


def command(
    *args: Any, on: typer.Typer | None = None, body: Callable[..., None] | None = None, **kwargs: Any
) -> Callable[[F], F]:
    """``app.command`` (or ``on.command``) that turns a SentqError into one red line and its exit code. With ``body``
    the decorated function only declares (its signature and docstring) and ``body`` runs, taking the options by
    name: sentq.plain then reads the command without Typer."""

    def decorate(func: F) -> F:
        target = body or func

        @functools.wraps(func)
        def run(*a: Any, **kw: Any) -> Any:
            try:
                return target(*a, **kw)
            except errors.SentqError as exc:
                print_error(exc)
                raise typer.Exit(code=exit_code_for(exc)) from None

        run.sentq_body = body  # type: ignore[attr-defined]
        (on or app).command(*args, **kwargs)(run)
        return func

    return decorate


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
    from sentq import control

    settings = load_settings()
    control.check_login(settings)  # a wrong password is exit 3 now; a server still down is waited for by Celery
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
    Path | None, typer.Option("--output", "-o", help="Write rows here (.jsonl, .csv or .parquet) instead of stdout.")
]
OutFormat = Annotated[
    str | None, typer.Option("--out-format", help="jsonl, csv or parquet (default: by --output suffix).")
]
RawCsv = Annotated[
    bool,
    typer.Option(
        "--raw-csv",
        help="CSV: write texts exactly as submitted. By default a text starting with = + - @ or a tab gets a leading "
        "' so a spreadsheet shows it instead of running it as a formula.",
    ),
]
Timeout = Annotated[float | None, typer.Option("--timeout", help="Give up waiting after this many seconds (exit 4).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Forget = Annotated[
    bool,
    typer.Option("--forget", help="Once every row is written and the job is done, free its keys in Redis (forget)."),
]


@command(body=terminal.submit)
def submit(
    path: Annotated[str, typer.Argument(help="Input file (text, CSV/TSV, JSONL, optionally .gz), or - for stdin.")],
    fmt: Annotated[
        str | None, typer.Option("--format", "-f", help="text, csv, tsv or jsonl (default: by suffix).")
    ] = None,
    column: Annotated[str | None, typer.Option("--column", help="CSV/TSV column: header NAME or INDEX from 1.")] = None,
    field: Annotated[str | None, typer.Option("--field", help="JSONL field holding the text (default: text).")] = None,
    chunk_size: ChunkSize = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Score with this model version, e.g. v3 (default: current).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job and print its rows, like `sentq wait`.")] = False,
    output: Output = None,
    out_format: OutFormat = None,
    raw_csv: RawCsv = False,
    timeout: Timeout = None,
    forget: Forget = False,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="JOB",
            help="Continue JOB, whose submission stopped part-way (killed, interrupted, a bad line fixed since): the "
            "chunks it staged are read again and checked to be the same input, then the rest is staged. Read as the "
            "job read it (its format, column, chunk size).",
        ),
    ] = None,
) -> None:
    """Submit a file of texts as one job; prints its id at once (alone on stdout when piped)."""


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


@command(body=terminal.wait)
def wait(
    job_id: Annotated[str, typer.Argument(help="The job id `sentq submit` printed.")],
    output: Output = None,
    out_format: OutFormat = None,
    raw_csv: RawCsv = False,
    timeout: Timeout = None,
    forget: Forget = False,
) -> None:
    """Follow a job to its end, streaming its rows in input order (JSONL to stdout by default)."""


@command(body=terminal.status)
def status(
    job_id: Annotated[str | None, typer.Argument(help="A job id; without one, a table of recent jobs.")] = None,
    as_json: AsJson = False,
    limit: Annotated[int, typer.Option("--limit", help="How many recent jobs to list.")] = 20,
) -> None:
    """Show recent jobs, or one job's progress, speed, ETA and failed chunks."""


@command(body=terminal.cancel)
def cancel(job_id: Annotated[str, typer.Argument(help="The job to cancel.")]) -> None:
    """Cancel a job: queued chunks are skipped, running ones finish."""


@command()
def forget(job_ids: Annotated[list[str], typer.Argument(help="Finished jobs to forget.", metavar="JOB...")]) -> None:
    """Free finished jobs' keys in Redis now (record, rows, ledger) instead of after SENTQ_RESULT_EXPIRES.

    Their rows cannot be downloaded afterwards. A job still running is refused: cancel it first."""
    from sentq import control

    settings = load_settings()
    for job_id in job_ids:
        freed = control.forget(settings, job_id)
        err.print(f"forgot job {job_id}: {freed:,} keys freed")


@command()
def retry(
    job_id: Annotated[str, typer.Argument(help="A job that finished with failed chunks.")],
    from_path: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="FILE",
            help="The job's input again (- for stdin): failed chunks whose staged input Redis lost (e.g. with its "
            "last second of AOF) are staged again from it, after every chunk is checked to be the same.",
        ),
    ] = None,
) -> None:
    """Run a job's failed chunks again (the rows already scored are kept)."""
    from sentq import control

    indexes = control.retry(load_settings(), job_id, from_path=from_path)
    err.print(f"queued {len(indexes)} failed chunks of job {job_id} again; follow with `sentq wait {job_id}`")


@command()
def workers(as_json: AsJson = False) -> None:
    """List live workers (from their heartbeats: host, processes, queues, chunks running), the ones found dead
    holding chunks in the last hour (those chunks were re-sent), and queue depth."""
    from sentq import control, render

    found, dead, depths = control.workers(load_settings())
    if as_json:
        print(json.dumps({"workers": [vars(w) for w in found], "dead": [vars(d) for d in dead], "queues": depths}))
    else:
        render.print_workers(out, found, dead, depths)


@command()
def drain(
    queue: Annotated[
        str, typer.Argument(help="The queue (`sentq workers` lists them; the console's queues page too).")
    ],
    job_id: Annotated[
        str | None, typer.Option("--job", metavar="JOB", help="Only this stopped job's messages.")
    ] = None,
) -> None:
    """Remove the leftover messages of stopped jobs (done, failed, cancelled, invalid or forgotten) from a queue of a
    Redis broker now, instead of workers dropping each as they take it. A running job's messages are never removed."""
    from sentq import queues

    done = queues.drain(load_settings(), queue, job_id=job_id)
    more = "; the queue is longer than one drain reads: run it again" if done.more else ""
    err.print(f"removed {done.messages:,} leftover messages of {done.jobs:,} stopped jobs from queue {queue}{more}")


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@command()
def api(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: all).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", "-w", help="API processes (uvicorn workers).")] = 1,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", envvar="SENTQ_LOG_LEVEL", help="Log level.")] = "INFO",
) -> None:
    """Serve the HTTP API, the operator console (/) and Prometheus metrics (/metrics) with uvicorn.

    Auth: bearer tokens from SENTQ_API_TOKENS (comma-separated; "ro:TOKEN" is read-only). Without tokens there is no auth, so it listens on loopback only. OpenAPI docs at /docs.
    """  # noqa: E501 - one line: Rich keeps a docstring's line breaks in --help
    from importlib.util import find_spec

    settings = load_settings()
    # The CLI does not import the HTTP face (uvicorn does, by name): it only checks the api extra is there.
    missing = [
        name for name in ("fastapi", "uvicorn", "jinja2", "multipart", "prometheus_client") if not find_spec(name)
    ]
    if missing:
        raise errors.ConfigError(
            f"`sentq api` needs the api extra ({', '.join(missing)} missing): pip install 'sentq[api]'"
        )
    import uvicorn

    kinds = settings.api_token_kinds
    if not kinds and host not in LOOPBACK:
        raise errors.ConfigError(
            f"refusing to listen on {host} without auth: set SENTQ_API_TOKENS (e.g. "
            "SENTQ_API_TOKENS=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')), or use --host 127.0.0.1"
        )
    if not 1 <= port <= 65535 or workers < 1:
        raise errors.ConfigError("--port must be 1-65535 and --workers at least 1")
    from sentq.settings import mask_url

    if kinds:
        read_only = sum(1 for kind in kinds.values() if kind == "read")
        how = f"bearer tokens required ({len(kinds)} configured, {read_only} read-only)"
    else:
        how = "no SENTQ_API_TOKENS: no auth, so listening on loopback only"
    shown = f"[{host}]" if ":" in host else host
    err.print(
        f"sentq api on http://{shown}:{port} ({workers} process{'es' if workers != 1 else ''}); {how}; "
        f"Redis {mask_url(settings.backend_url)}, broker {mask_url(settings.broker_url)}. "
        f"Console: http://{shown}:{port}/ · docs: /docs · metrics: /metrics",
        soft_wrap=True,
        markup=False,
    )
    uvicorn.run(
        "sentq.web.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=loglevel.lower(),
        # Only a proxy named in SENTQ_API_FORWARDED_ALLOW_IPS may say the client's scheme and address (https makes
        # the console's cookie Secure); anyone else's X-Forwarded-* headers are ignored.
        proxy_headers=bool(settings.api_proxies),
        forwarded_allow_ips=settings.api_proxies or None,
    )


# Model lifecycle: `sentq model ...` (a sub-app), `sentq retrain`, `sentq beat`.

model_app = typer.Typer(
    name="model",
    help="The model registry: list versions, show one, make one current (rollback), export and import.",
    no_args_is_help=True,
)
app.add_typer(model_app, name="model")
VersionArg = Annotated[str, typer.Argument(help="A model version, e.g. 3 or v3 (see `sentq model list`).")]


def model_command(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """`command` for the `sentq model ...` sub-app."""
    return command(*args, on=model_app, **kwargs)


@model_command("list")
def model_list(as_json: AsJson = False) -> None:
    """List model versions (* marks the current one)."""
    from sentq import lifecycle

    found, current = lifecycle.versions(load_settings())
    if as_json:
        print(json.dumps([lifecycle.version_dict(v, current) for v in found], indent=2))
        return
    print_versions(found, current)


@model_command("show")
def model_show(version: VersionArg, as_json: AsJson = False) -> None:
    """Show one version's metadata and check its artifact's sha256."""
    from sentq import lifecycle

    meta, is_current, check = lifecycle.show(load_settings(), version)
    if as_json:
        print(json.dumps(lifecycle.version_dict(meta, meta.version if is_current else None) | {"artifact": check}))
        return
    for name, value in [
        ("version", f"v{meta.version}" + (" (current)" if is_current else "")),
        ("created", _when(meta.created)),
        ("source", meta.source),
        ("trained on", f"{meta.n_train:,} texts; held-out {meta.n_test:,}"),
        ("accuracy", f"{meta.accuracy:.4f} (held-out)"),
        ("vocabulary", f"{meta.vocab_size:,} tokens"),
        ("sha256", meta.sha256),
        ("size", f"{meta.size_bytes:,} bytes"),
        ("artifact", check),
    ]:
        out.print(f"{name:>11}: {value}", soft_wrap=True, markup=False)


@model_command("use")
def model_use(version: VersionArg) -> None:
    """Make a version current (rollback or roll forward); new jobs and batch_score use it from their next task."""
    from sentq import lifecycle

    meta, before = lifecycle.use(load_settings(), version)
    was = f" (was v{before})" if before and before != meta.version else ""
    err.print(
        f"v{meta.version} is current{was}: accuracy {meta.accuracy:.4f}, {meta.source}", soft_wrap=True, markup=False
    )


@model_command("export")
def model_export(
    version: VersionArg, path: Annotated[Path, typer.Argument(help="File to write (a zip: metadata + model).")]
) -> None:
    """Write a version to a file, for `sentq model import` on another installation."""
    from sentq import lifecycle

    meta = lifecycle.export(load_settings(), version, path)
    err.print(
        f"exported v{meta.version} (sha256 {meta.sha256[:12]}, accuracy {meta.accuracy:.4f}) to {path}",
        soft_wrap=True,
        markup=False,
    )


@model_command("import")
def model_import(
    path: Annotated[Path, typer.Argument(help="A file written by `sentq model export`.")],
    use: Annotated[bool, typer.Option("--use", help="Make it current too.")] = False,
) -> None:
    """Add an exported model to this registry as its next version (checked against its sha256)."""
    from sentq import lifecycle

    meta, new, is_current = lifecycle.import_file(load_settings(), path, make_current=use)
    what = f"imported {path} as v{meta.version}" if new else f"{path} is already in the registry as v{meta.version}"
    hint = "it is current" if is_current else f"make it current with `sentq model use {meta.version}`"
    err.print(f"{what} (sha256 {meta.sha256[:12]}, accuracy {meta.accuracy:.4f}); {hint}", soft_wrap=True, markup=False)


# The default training data: `sentq data ...` (a sub-app). An installed sentq has no Makefile: these are its setup.

data_app = typer.Typer(
    name="data",
    help="The default training data (VADER ground truth): fetch it into the data dir, show where it is.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Where to put it (default: SENTQ_DATA_DIR, else sentq's data dir).", show_default=False
    ),
]


def data_command(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """`command` for the `sentq data ...` sub-app."""
    return command(*args, on=data_app, **kwargs)


@data_command("fetch")
def data_fetch(
    data_dir: DataDir = None,
    sdist: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="A local vaderSentiment-3.3.2.tar.gz (from `pip download --no-deps --no-binary :all: "
            "vaderSentiment==3.3.2` on a connected machine), for hosts without internet access; checked by sha256.",
            show_default=False,
        ),
    ] = None,
    upload: Annotated[
        bool, typer.Option("--upload", help="Also put the set in Redis: workers on every host train from it.")
    ] = False,
) -> None:
    """Download (or unpack --from) the default training data into the data dir, verified by sha256; idempotent.

    Workers fetch it themselves when they must train the first model; this is for hosts that cannot.
    """
    from sentq import dataset

    settings = load_settings(data_dir=data_dir)
    directory = dataset.fetch(settings.data_dir, sdist=sdist)
    print(dataset.report(directory, dataset.label_counts(settings.data_dir)))
    if upload:
        from sentq import control, registry
        from sentq.settings import mask_url

        loaded = dataset.load_dataset(settings.data_dir)
        registry.share_default_dataset(control.connect(settings), loaded)
        err.print(
            f"put the default training set ({len(loaded.texts):,} texts) in Redis at {mask_url(settings.backend_url)}:"
            " workers on every host train from it",
            soft_wrap=True,
            markup=False,
        )


@data_command("show")
def data_show(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Where the data dir is, whether the files are there and verified, whether Redis holds the default set."""
    from sentq import control, dataset, registry
    from sentq.settings import checkout_root, mask_url

    settings = load_settings(data_dir=data_dir)
    if data_dir is not None:
        origin = "--data-dir"
    elif os.environ.get("SENTQ_DATA_DIR"):
        origin = "SENTQ_DATA_DIR"
    elif checkout_root() is not None:
        origin = "the checkout's data dir; SENTQ_DATA_DIR overrides it"
    else:
        origin = "the user data dir; SENTQ_DATA_DIR overrides it"
    states = dataset.file_states(settings.data_dir)
    info: dict[str, Any] = {
        "data_dir": str(settings.data_dir),
        "data_dir_from": origin,
        "files": states,
        "verified": all(state == "ok" for state in states.values()),
        "redis": {"url": mask_url(settings.backend_url), "reachable": False},
    }
    unreachable: errors.SentqError | None = None
    try:
        client = control.connect(settings)
        stored = registry.stored_default_dataset(client)
        ref = registry.current(client)
        info["redis"] |= {
            "reachable": True,
            "dataset": {"texts": len(stored.texts), "source": stored.source} if stored is not None else None,
            "current_model": f"v{registry.ref_version(ref)}" if ref else None,
        }
    except errors.BrokerUnavailableError as exc:
        unreachable = exc
        info["redis"]["error"] = str(exc)
    except errors.DatasetMissingError as exc:  # a key that does not decode: say so, it is what workers would read
        info["redis"] |= {"reachable": True, "dataset": {"error": str(exc)}}
    if as_json:
        print(json.dumps(info, indent=2))
    else:
        print_data_status(info)
    if unreachable is not None:
        raise typer.Exit(code=exit_code_for(unreachable))


def print_data_status(info: dict[str, Any]) -> None:
    files = info["files"]
    if info["verified"]:
        state = f"all {len(files)} verified (sha256) in {Path(info['data_dir']) / 'vader'}"
    else:
        bad = [f"{name} ({state})" for name, state in files.items() if state != "ok"]
        state = f"NOT ready: {', '.join(bad)}; run `sentq data fetch`"
    redis_info = info["redis"]
    if not redis_info["reachable"]:
        in_redis = f"unknown: {redis_info['error']}"
        model = "unknown"
    else:
        stored = redis_info["dataset"]
        if stored is None:
            in_redis = f"no (at {redis_info['url']}; `sentq data fetch --upload` puts it there)"
        elif "error" in stored:
            in_redis = f"UNREADABLE: {stored['error']}"
        else:
            in_redis = f"yes, {stored['texts']:,} texts ({stored['source']}) at {redis_info['url']}"
        current = redis_info["current_model"]
        model = (
            f"{current} is current (workers need no training data to score)"
            if current
            else "none yet: the first worker trains v1 from the default set (from Redis, its data dir or a download)"
        )
    for name, value in [
        ("data dir", f"{info['data_dir']} ({info['data_dir_from']})"),
        ("files", state),
        ("in Redis", in_redis),
        ("model", model),
    ]:
        out.print(f"{name:>8}: {value}", soft_wrap=True, markup=False)


@command()
def retrain(
    data: Annotated[
        Path | None, typer.Option("--data", help="Labelled CSV (text,label header) or JSONL to train on.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the new version and print its metrics.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Make it current even if it is less accurate.")] = False,
    timeout: Timeout = None,
    as_json: AsJson = False,
) -> None:
    """Train a new model version on a worker (default data, or --data FILE); it becomes current unless it is
    worse than the current one by more than SENTQ_PROMOTE_MARGIN (then it is stored aside; exit 0, with a warning)."""
    from sentq import lifecycle

    settings = load_settings()
    task_id = lifecycle.submit_retrain(settings, data=data, force=force)
    if not wait:
        print(json.dumps({"task_id": task_id}) if as_json else task_id, flush=True)
        err.print(
            f"retrain {task_id} queued on {settings.retrain_queue}; `sentq model list` shows the new version",
            soft_wrap=True,
        )
        return
    err.print(f"retrain {task_id} queued; waiting for a worker to train and publish it", soft_wrap=True, markup=False)
    result = lifecycle.wait_retrain(settings, task_id, timeout_s=timeout)
    if as_json:
        print(json.dumps(result, indent=2))
    print_retrained(result)


@command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(
    ctx: typer.Context,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", envvar="SENTQ_LOG_LEVEL", help="Log level.")] = "INFO",
) -> None:
    """Run Celery beat: `sentq.retrain` on SENTQ_RETRAIN_SCHEDULE (cron, UTC, or seconds).

    Run one on each of several hosts: one holds a lock in Redis and schedules, the others wait and take over
    when it dies. A beat that loses Redis or its lock (a restart, a failover) starts again as a standby once
    Redis answers. Extra options after -- go to `celery beat` as they are.
    """
    from sentq import lifecycle

    settings = load_settings()
    argv = lifecycle.beat_argv(settings, loglevel=loglevel, extra=list(ctx.args))
    sys.stdout.flush()
    raise typer.Exit(lifecycle.run_beat(settings, argv))


def _when(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def print_versions(found: list[Any], current: int | None) -> None:
    from rich.table import Table
    from rich.text import Text

    if not found:
        err.print("no model versions yet: a worker or `sentq retrain` trains v1 from the default data", soft_wrap=True)
        return
    rows = [
        [
            "*" if v.version == current else "",
            f"v{v.version}",
            _when(v.created)[:16],
            f"{v.accuracy:.4f}",
            f"{v.n_train:,}",
            f"{v.vocab_size:,}",
            v.sha256[:8],
            v.source,
        ]
        for v in found
    ]
    table = Table(box=None, header_style="bold")
    names = ("", "version", "created", "accuracy", "trained on", "vocab", "sha256")
    for i, column in enumerate(names):
        width = max(len(column), *(len(row[i]) for row in rows))
        table.add_column(column, justify="right" if i in (3, 4, 5) else "left", min_width=width, no_wrap=True)
    used = sum(max(len(c), *(len(row[i]) for row in rows)) + 2 for i, c in enumerate(names))
    table.add_column("source", no_wrap=True, overflow="ellipsis", max_width=max(12, out.width - used - 2))
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    out.print(table)


def print_retrained(result: dict[str, Any]) -> None:
    from rich.markup import escape

    line = (
        f"v{result['version']}: held-out accuracy {result['accuracy']:.4f} on {result['n_test']:,} texts, "
        f"vocab {result['vocab_size']:,}, trained on {result['n_train']:,} from {result['source']}"
    )
    if result.get("unchanged"):
        err.print(f"retrained: {result['reason']}; nothing new stored", soft_wrap=True, markup=False)
    elif result.get("promoted", True):
        err.print(f"retrained {line}; it is current ({result.get('reason', '')})", soft_wrap=True, markup=False)
    else:
        err.print(
            f"[yellow]warning: stored {escape(line)}, but NOT made current: {escape(result['reason'])}. "
            f"Make it current anyway with `sentq model use {result['version']}` (or retrain with --force)[/yellow]",
            markup=True,
            soft_wrap=True,
        )
