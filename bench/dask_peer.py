"""The moonshot's peer: the same 1M-text job end to end on a tuned Dask `LocalCluster`, next to sentq in the same run.

2. (a peer row of sentq end to end) A `LocalCluster` of 2 worker processes x 1 thread (this box has 2 cores), tuned
   as issue #20 measured it: glibc malloc's defaults in its workers (Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536
   before it spawns them; here that key of `distributed.nanny.pre-spawn-environ` is None, so it is not set) and the
   worker's statistical profiler off (`distributed.worker.profile.enabled: False`); OMP/OPENBLAS/MKL_NUM_THREADS=1
   like every other row. Every other setting is Dask's default (the client gathers through the scheduler).

   Each worker loads the registry's current model once, as the sentq worker does (`sentq.registry.load` from the
   bench's Redis, the same artifact) and scores 100 texts to warm up, before the clock starts: its seconds are
   reported apart, as the sentq worker's model is loaded (and warm) before its rows too. The job: the client reads
   the input (the bench's main file, the one the sentq rows score) only to cut it on line ends into byte ranges of
   ~20,000 lines (16 ranges at least) and number their first lines; each task reads its range itself, scores it 5,000
   texts at a time with `predict_proba` and formats its own JSONL rows with `sentq.rows.format_rows`, as
   bench/limit.py does; the client writes the tasks' rows to a file in input order as they arrive. Timed from the
   job's start (before the client reads the file) to the file closed; the cluster's start-up is not in it, and no
   client start-up is either (the client is this process), while sentq's row includes its CLI's start-up (shown). One
   run at the end of each round of sentq's chunk sweep (bench/limit_vs_sentq.py), on a fresh cluster stopped after
   it, best of the 2: interleaved with sentq's runs, the ratio sees the same load. The output is checked: one row per
   text, lines 1..N in order, and its bytes against the limit's rows (same texts, same model, same formatting).

Dask is a bench-only dependency: bench/requirements.lock, which `make bench` installs into the venv (not
requirements.lock, which `make test` installs). Run alone: `python bench/dask_peer.py [--quick]` (its own
redis-server and `sentq worker -c 2`, the limit and sentq's chunk sweep, then the Dask rows).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from common import ONE_THREAD, Bench, Results, inputs, measure_alone, per_bench, rate, step
from limit_vs_sentq import chunk_sweep, one_process_limit, sha256_of, two_core_ceiling

WORKERS = 2
PART_LINES = 20_000  # lines per task: 50 tasks for 1M texts, so the two workers finish together
MIN_TASKS = 8 * WORKERS  # and no fewer (--quick's 100k texts: 16 tasks of 6,250)
# The two settings issue #20 tuned (and one thread of BLAS in each worker, as every other row has).
TUNED: dict[str, Any] = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,  # None: not set, glibc's own default
    "distributed.worker.profile.enabled": False,
    **{f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in ONE_THREAD.items()},
}


# ----- in each Dask worker ---------------------------------------------------------------------------------------

_state: dict[str, Any] = {}  # this worker process's model, loaded once


def load_model(url: str, version: int) -> dict[str, Any]:
    """Load model ``version`` from the registry into this worker process; what the worker runs with."""
    started = time.perf_counter()
    import dask
    import redis

    from sentq import registry, rows

    client = redis.Redis.from_url(url)
    try:
        model = _state["model"] = registry.load(client, version)
    finally:
        client.close()
    import limit  # noqa: F401  (bench/limit.py's CHUNK, imported once here too)

    texts = ["warm up, as the sentq workers are"] * 100
    rows.format_rows(list(range(1, 101)), texts, model.predict_proba(texts), f"v{version}")
    return {
        "load_s": time.perf_counter() - started,
        "pid": os.getpid(),
        "MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "profile": dask.config.get("distributed.worker.profile.enabled"),
    }


def score_part(path: str, start: int, end: int, first_line: int, label: str) -> bytes:
    """Bytes ``start``..``end`` of the file (whole lines, the first numbered ``first_line``) scored and formatted as
    sentq's JSONL rows, as bench/limit.py does it: blank lines skipped, 5,000 texts a predict_proba call."""
    from limit import CHUNK

    from sentq.rows import format_rows

    model = _state["model"]
    with open(path, "rb") as f:
        f.seek(start)
        raw = f.read(end - start).decode("utf-8").split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    out: list[bytes] = []
    for at in range(0, len(raw), CHUNK):
        texts = [t.strip() for t in raw[at : at + CHUNK]]
        lines = list(range(first_line + at, first_line + at + len(texts)))
        if not all(texts):
            kept = [(n, t) for n, t in zip(lines, texts, strict=True) if t]
            lines, texts = [n for n, _ in kept], [t for _, t in kept]
            if not texts:
                continue
        out.append(format_rows(lines, texts, model.predict_proba(texts), label))
    return b"".join(out)


# ----- in the client (this process) ------------------------------------------------------------------------------


def ranges(data: bytes, part_lines: int) -> list[tuple[int, int, int]]:
    """(start, end, first line) of byte ranges of about ``part_lines`` lines each, cut on line ends."""
    n_lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    parts = max(1, min(n_lines, max(MIN_TASKS, round(n_lines / part_lines))))
    cuts = [0]
    for i in range(1, parts):
        at = data.find(b"\n", max(len(data) * i // parts, cuts[-1]))
        if at < 0:
            break
        cuts.append(at + 1)
    if cuts[-1] != len(data):
        cuts.append(len(data))
    out, line = [], 1
    for start, end in zip(cuts, cuts[1:], strict=False):
        out.append((start, end, line))
        line += data.count(b"\n", start, end)
    return out


def run_job(client: Any, src: Path, dst: Path, label: str) -> tuple[float, int]:
    """The job on the cluster, from reading the input to the output file closed; its wall seconds and tasks."""
    from distributed import as_completed

    started = time.perf_counter()
    data = src.read_bytes()
    parts = ranges(data, PART_LINES)
    del data
    futures = [
        client.submit(score_part, str(src), a, b, first, label, pure=False, key=f"score-{i}-{time.time_ns()}")
        for i, (a, b, first) in enumerate(parts)
    ]
    index = {f.key: i for i, f in enumerate(futures)}
    pending: dict[int, bytes] = {}
    nxt = 0
    with open(dst, "wb") as out:
        for future, rows in as_completed(futures, with_results=True):
            pending[index[future.key]] = rows
            while nxt in pending:  # in input order, as soon as the next range's rows are here
                out.write(pending.pop(nxt))
                nxt += 1
    wall = time.perf_counter() - started
    client.cancel(futures)
    if nxt != len(parts):
        raise RuntimeError(f"Dask: {nxt} of {len(parts)} ranges written")
    return wall, len(parts)


def check_rows(path: Path, n: int) -> None:
    """One row per text, numbered 1..n in order (the input has no blank line)."""
    expected = count(1)
    with open(path, "rb") as f:
        for row in f:
            if not row.startswith(b'{"line":') or int(row[8 : row.index(b",", 8)]) != next(expected):
                raise RuntimeError(f"Dask output out of order or malformed near: {row[:120]!r}")
    if next(expected) != n + 1:
        raise RuntimeError(f"Dask output: wrong number of rows for {n:,} texts")


@contextmanager
def tuned_cluster(bench: Bench) -> Iterator[tuple[Any, dict[str, float]]]:
    """A tuned LocalCluster and its client; the environment this process had is given back after (Dask's nanny
    writes its pre-spawn variables into the environment of the process that runs it, this one)."""
    import dask
    from distributed import Client, LocalCluster

    saved = dict(os.environ)
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)  # the nanny would hand it on to its workers
    timings: dict[str, float] = {}
    try:
        with dask.config.set(TUNED):
            started = time.perf_counter()
            with (
                LocalCluster(
                    n_workers=WORKERS,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                    local_directory=str(bench.tmp / "dask"),
                ) as cluster,
                Client(cluster) as client,
            ):
                client.wait_for_workers(WORKERS, timeout=120)
                timings["start_s"] = time.perf_counter() - started
                yield client, timings
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class DaskRuns:
    """The Dask job's runs in this bench, one in each round of the chunk sweep."""

    enlisted: bool = False
    runs: list[float] = field(default_factory=list)  # texts/s, in order
    tasks: int = 0
    start_s: list[float] = field(default_factory=list)  # each round's cluster start-up (not timed)
    load_s: list[float] = field(default_factory=list)  # each round's model load in both workers (not timed)
    same_bytes: bool = True  # every run's output equals the limit's rows, byte for byte


@per_bench
def dask_runs(bench: Bench) -> DaskRuns:
    return DaskRuns()


def one_round(bench: Bench, round_no: int) -> None:
    """A fresh tuned cluster, the model loaded and warmed up in each worker, one timed run of the job, output
    checked, the cluster stopped (so it does not idle beside sentq's runs)."""
    from sentq import registry

    sizes, tmp = bench.sizes, bench.tmp
    done = dask_runs(bench)
    ref = registry.current(bench.client)
    if ref is None:
        raise RuntimeError("no current model in the bench's registry")
    version = registry.ref_version(ref)
    with step(f"2. tuned Dask LocalCluster, {sizes.main:,} texts (round {round_no})"):
        with tuned_cluster(bench) as (client, timings):
            started = time.perf_counter()
            workers = list(client.run(load_model, bench.url, version).values())
            done.load_s.append(time.perf_counter() - started)
            done.start_s.append(timings["start_s"])
            for w in workers:
                if w["MALLOC_TRIM_THRESHOLD_"] is not None or w["profile"] or w["OPENBLAS_NUM_THREADS"] != "1":
                    raise RuntimeError(f"a Dask worker is not tuned as meant: {w}")
            out_path = tmp / "dask.jsonl"
            wall, done.tasks = run_job(client, inputs(bench).main, out_path, f"v{version}")
        done.runs.append(sizes.main / wall)
        check_rows(out_path, sizes.main)
        done.same_bytes = done.same_bytes and sha256_of(out_path) == one_process_limit(bench)["sha256"]
        out_path.unlink()


def _dask_versions() -> tuple[str, str]:
    try:
        import dask
        import distributed
    except ImportError:
        raise SystemExit(
            "Dask is not installed: `make bench` installs bench/requirements.lock (or: .venv/bin/uv pip install "
            "--python .venv/bin/python -r bench/requirements.lock)"
        ) from None
    return dask.__version__, distributed.__version__


def enlist(bench: Bench) -> None:
    """Run the Dask job once in each round of the chunk sweep (before the sweep starts)."""
    _dask_versions()
    dask_runs(bench).enlisted = True
    bench.peers.append(functools.partial(one_round, bench))


def measure(bench: Bench, results: Results) -> None:
    """The Dask rows of 2, next to sentq's default chunk in the same sweep (enlisted before it: run alone, this
    enlists itself; if the sweep ran without it, two rounds of Dask right after)."""
    dask_v, distributed_v = _dask_versions()
    sizes = bench.sizes
    done = dask_runs(bench)
    if not done.enlisted:
        enlist(bench)
    limit_rate = float(one_process_limit(bench)["texts_per_s"])
    ceiling = two_core_ceiling(bench)
    sweep = chunk_sweep(bench)
    while len(done.runs) < 2:
        one_round(bench, len(done.runs) + 1)
    sentq_rate = sweep.rates[sweep.default]
    best = max(done.runs)
    add = results.add
    add(
        "2",
        f"tuned Dask LocalCluster ({WORKERS} processes x 1 thread), {sizes.main:,} texts in {done.tasks} tasks "
        f"(best of {len(done.runs)}, one a round of the sweep)",
        rate(best),
        f"{best / limit_rate:.2f}x limit, {best / ceiling:.0%} of the ceiling; lines ok, "
        + ("bytes = the limit's" if done.same_bytes else "bytes differ from the limit's"),
    )
    startup = sweep.startups[sweep.default]
    without = sizes.main / (sizes.main / sentq_rate - startup)
    add(
        "2",
        f"sentq / tuned Dask, {sizes.main:,} texts (sentq's default chunk {sweep.default:,})",
        f"{sentq_rate / best:.2f}x",
        f"sentq {rate(sentq_rate)} incl. its CLI start-up ({startup:.2f} s to the job record; without it "
        f"{without / best:.2f}x); Dask's client was already up",
        ">= 1.0x",
        sentq_rate / best >= 1.0,
    )
    results.notes.append(
        f"tuned Dask (dask {dask_v}, distributed {distributed_v}): LocalCluster of {WORKERS} worker processes x 1 "
        "thread, MALLOC_TRIM_THRESHOLD_ unset in its workers (Dask sets 65536), profiler off, "
        "OMP/OPENBLAS/MKL_NUM_THREADS=1, all else default, a fresh cluster in each round; not timed: cluster start-up "
        f"{', '.join(f'{t:.2f}' for t in done.start_s)} s, the model's load and warm-up in both workers "
        f"(sentq.registry.load, the sentq worker's artifact) {', '.join(f'{t:.2f}' for t in done.load_s)} s; runs "
        f"{', '.join(f'{r:,.0f}' for r in done.runs)} texts/s"
    )


if __name__ == "__main__":
    sys.exit(measure_alone(__doc__, measure, noop_workers=False))
