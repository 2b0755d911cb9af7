"""Measures what a small job costs: a one-text task's round trip next to Celery no-ops, and the CLI's wall times.

5. small jobs: round trip p50/p99 of batch_score.delay(["great product"]).get() next to a bare Celery no-op task and
   the same no-op with task events on (as sentq runs), in interleaved blocks; `sentq submit two-lines.txt --wait`
   and `sentq --help` wall time (medians);
5b. a 10,000-line job: `sentq submit FILE --wait -o out.jsonl` against the running workers next to a one-process
   script's whole run on the same lines (`python bench/limit.py ... --passes 1 --score-only-texts 0`: start-up,
   the model's load from the registry, read, score, write the same JSONL rows), whole wall times from launch to
   exit, alternating, median of 5 each after one warm-up of each.

Run alone: `python bench/small_jobs.py [--quick]` (its own redis-server, `sentq worker -c 2` and the two Celery
no-op workers of bench/noop_app.py).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import (
    BENCH,
    Bench,
    Results,
    check,
    count_lines,
    head,
    inputs,
    measure_alone,
    median_wall,
    ms,
    noop_apps,
    sentq_tasks,
    step,
)

SMALL_JOB = 10_000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def round_trips(call: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def measure(bench: Bench, results: Results) -> None:
    sizes = bench.sizes
    add = results.add
    sentq_worker = sentq_tasks(bench)

    with step(f"5. round trips x {sizes.round_trips} (+ warm-up)"):
        noop_app = noop_apps(bench)

        def one_text() -> object:
            return sentq_worker.batch_score.delay(["great product"]).get(timeout=10)

        def noop() -> object:
            return noop_app.noop.delay().get(timeout=10)

        def noop_events() -> object:
            return noop_app.noop_events.delay().get(timeout=10)

        warm = round_trips(one_text, 20) + round_trips(noop, 20) + round_trips(noop_events, 20)
        print(f"[bench] warm-up round trips: {sum(warm):.2f} s, max {max(warm):.3f} s", file=sys.stderr)
        rt_sentq: list[float] = []
        rt_noop: list[float] = []
        rt_events: list[float] = []
        block = max(sizes.round_trips // 4, 1)
        for _ in range(4):  # interleaved blocks, so a burst of load elsewhere hits both sides alike
            rt_sentq += round_trips(one_text, block)
            rt_noop += round_trips(noop, block)
            rt_events += round_trips(noop_events, block)
        print(f"[bench] measured round trips: {sum(rt_sentq) + sum(rt_noop):.2f} s", file=sys.stderr)
        bench.drop_jobs()
    p50s, p50n, p50e = statistics.median(rt_sentq), statistics.median(rt_noop), statistics.median(rt_events)
    add(
        "5",
        f"batch_score.delay(['great product']).get() p50 / p99 (n={len(rt_sentq)})",
        f"{ms(p50s)} / {ms(percentile(rt_sentq, 99))}",
        f"{p50s / p50e:.2f}x no-op with events, {p50s / p50n:.2f}x bare no-op",
        "p50 <= 1.2x no-op with events",
        p50s <= 1.2 * p50e,
    )
    add(
        "5",
        f"bare Celery no-op .delay().get() p50 / p99 (n={len(rt_noop)})",
        f"{ms(p50n)} / {ms(percentile(rt_noop, 99))}",
    )
    add(
        "5",
        f"Celery no-op with task events on (as sentq runs) p50 / p99 (n={len(rt_events)})",
        f"{ms(p50e)} / {ms(percentile(rt_events, 99))}",
        f"{p50e / p50n:.2f}x no-op; sentq is {p50s / p50e:.2f}x this",
    )

    with step("5. CLI wall times"):
        two = median_wall(bench, ["submit", str(inputs(bench).two_lines), "--wait"], "two-lines")
        bench.drop_jobs()
        helps = median_wall(bench, ["--help"], "help")
    add("5", f"sentq submit two-lines.txt --wait (median of {sizes.repeats})", ms(two), "", "<= 300 ms", two <= 0.3)
    add("5", f"sentq --help (median of {sizes.repeats})", ms(helps), "", "<= 300 ms", helps <= 0.3)
    small_job(bench, results)


def script_wall(bench: Bench, src: Path, dst: Path) -> float:
    """A one-process script's whole run (bench/limit.py, one pass, no scoring-only rate), launch to exit."""
    cmd = [sys.executable, str(BENCH / "limit.py"), bench.url, str(src), str(dst), "--passes", "1"]
    started = time.perf_counter()
    proc = bench.procs.start(
        [*cmd, "--score-only-texts", "0"],
        env=bench.env(one_thread=True),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, err = proc.communicate()
    wall = time.perf_counter() - started
    bench.procs.procs.remove(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"bench/limit.py exited with {proc.returncode}:\n{err.decode()[-3000:]}")
    return wall


def small_job(bench: Bench, results: Results) -> None:
    """5b. `sentq submit FILE --wait -o` of 10,000 lines next to a one-process script's whole run on them."""
    tmp = bench.tmp
    src = head(inputs(bench).main, tmp / "small-job.txt", SMALL_JOB)
    out = tmp / "small-job.jsonl"
    script: list[float] = []
    sentq: list[float] = []
    with step(f"5b. {SMALL_JOB:,} lines: sentq submit --wait next to a one-process script, alternating"):
        for n in range(1 + bench.sizes.repeats):  # the first of each warms up (page cache, .pyc) and is not counted
            wall = script_wall(bench, src, out)
            if count_lines(out) != SMALL_JOB:
                raise RuntimeError(f"the one-process script wrote the wrong number of rows for {SMALL_JOB:,} lines")
            out.unlink()
            timed = check(bench.sentq(["submit", str(src), "--wait", "-o", str(out)], name="small-job"), "sentq submit")
            if count_lines(out) != SMALL_JOB:
                raise RuntimeError(f"sentq submit --wait wrote the wrong number of rows for {SMALL_JOB:,} lines")
            out.unlink()
            bench.drop_jobs()
            if n:
                script.append(wall)
                sentq.append(timed.wall_s)
    med_sentq, med_script = statistics.median(sentq), statistics.median(script)
    add = results.add
    add(
        "5",
        f"sentq submit --wait -o, {SMALL_JOB:,} lines / a one-process script's whole run (median of {len(sentq)})",
        f"{med_sentq / med_script:.2f}x",
        f"sentq {ms(med_sentq)}, script {ms(med_script)} (start-up, model load, read, score, write JSONL)",
        "<= 1.3x",
        med_sentq <= 1.3 * med_script,
    )


if __name__ == "__main__":
    sys.exit(measure_alone(__doc__, measure))
