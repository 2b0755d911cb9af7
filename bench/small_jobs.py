"""Measures what a small job costs: a one-text task's round trip next to Celery no-ops, and the CLI's wall times.

5. small jobs: round trip p50/p99 of batch_score.delay(["great product"]).get() next to a bare Celery no-op task and
   the same no-op with task events on (as sentq runs), in interleaved blocks; `sentq submit two-lines.txt --wait`
   and `sentq --help` wall time (medians).

Run alone: `python bench/small_jobs.py [--quick]` (its own redis-server, `sentq worker -c 2` and the two Celery
no-op workers of bench/noop_app.py).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

from common import Bench, Results, inputs, measure_alone, median_wall, ms, noop_apps, sentq_tasks, step


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


if __name__ == "__main__":
    sys.exit(measure_alone(__doc__, measure))
