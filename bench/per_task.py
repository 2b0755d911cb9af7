"""Measures what sentq costs per task, past the scoring, at chunks of 1 to 20,000 texts, next to a Celery no-op.

8. per-task cost: a job's workers' span (first chunk started -> job done) per task and worker process (-c 2), less
   its scoring time (the limit's), at chunks of 100 / 1,000 / 5,000 / 20,000 (the chunk sweep's best runs,
   bench/limit_vs_sentq.py, and a job of chunks of 100), next to a burst of Celery no-op tasks with task events;
   a job of 1,000 one-text chunks is sentq's own cost per task. The job of chunks of 100 is also a row of its own
   (2: its rate next to the limit).

Run alone: `python bench/per_task.py [--quick]` (its own redis-server, `sentq worker -c 2` and the Celery no-op
workers of bench/noop_app.py; it runs the limit and the chunk sweep it builds on).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from common import (
    Bench,
    Results,
    Timed,
    check,
    count_lines,
    head,
    inputs,
    job_id_from,
    measure_alone,
    ms,
    noop_apps,
    per_bench,
    rate,
    step,
)
from limit_vs_sentq import chunk_sweep, one_process_limit


@dataclass(frozen=True)
class SmallChunks:
    timed: Timed  # `sentq submit --wait -o` of the status input in chunks of 100
    span: tuple[float, int, int]  # workers' span (s), chunks, texts


@per_bench
def chunks_of_100(bench: Bench) -> SmallChunks:
    """`sentq submit --wait -o` of the status input in chunks of 100, and the workers' span of that job."""
    sizes, tmp = bench.sizes, bench.tmp
    with step(f"2. sentq submit --wait, {sizes.status_texts:,} texts, chunk 100"):
        timed = check(
            bench.sentq(
                ["submit", str(inputs(bench).status), "--wait", "-o", str(tmp / "small.jsonl"), "--chunk-size", "100"],
                name="small-chunks",
            ),
            "sentq submit --wait (chunk 100)",
        )
        if count_lines(tmp / "small.jsonl") != sizes.status_texts:
            raise RuntimeError("chunk 100: wrong number of output lines")
        span = (*bench.span(job_id_from(timed.stderr)), sizes.status_texts)
        bench.drop_jobs()
    return SmallChunks(timed, span)


def small_chunks(bench: Bench, results: Results) -> None:
    """The row of the job of chunks of 100: its rate next to the limit, its wall time per task."""
    sizes = bench.sizes
    timed = chunks_of_100(bench).timed
    limit_rate = float(one_process_limit(bench)["texts_per_s"])
    small_rate = sizes.status_texts / timed.wall_s
    per_task = timed.wall_s / (sizes.status_texts / 100) * 2
    results.add(
        "2",
        f"sentq submit --wait, {sizes.status_texts:,} texts, chunk 100",
        rate(small_rate),
        f"{small_rate / limit_rate:.2f}x limit; {ms(per_task)} per task per worker process",
    )


def noop_burst(task: Any, n: int) -> float:
    """Seconds per task per worker process (-c 2) for ``n`` no-op tasks sent at once and all collected."""
    from celery.result import ResultSet

    started = time.perf_counter()
    results = ResultSet([task.delay() for _ in range(n)])
    results.get(timeout=300)
    return (time.perf_counter() - started) * 2 / n


def measure(bench: Bench, results: Results) -> None:
    # A job's workers' span (first chunk started -> job done) per task and worker process (-c 2), next to a burst of
    # Celery no-op tasks with events on the same kind of worker. A job of one-text chunks is sentq's own cost per task
    # (ledger claim and completion, model check, result write, a one-text score); at larger chunks the scoring share
    # is the limit's scoring time per text (one quiet process: a floor).
    add = results.add
    noop_app = noop_apps(bench)
    with step("8. Celery no-op burst (events on), 2 x 1,000 tasks"):
        noop_per_task = min(noop_burst(noop_app.noop_events, 1000) for _ in range(2))
    add("8", "Celery no-op with events, a burst of 1,000: per task per worker process", ms(noop_per_task))
    ones = 1000
    with step(f"8. sentq job of {ones:,} one-text chunks"):
        ones_file = head(inputs(bench).main, bench.tmp / "ones.txt", ones)
        best = float("inf")
        for _ in range(2):
            timed = check(
                bench.sentq(["submit", str(ones_file), "--wait", "--chunk-size", "1"], name="ones"),
                "sentq submit --wait (one-text chunks)",
            )
            span_s, chunks = bench.span(job_id_from(timed.stderr))
            best = min(best, span_s * 2 / chunks)
            bench.drop_jobs()
    own = best - noop_per_task
    add(
        "8",
        f"chunk 1: per task per worker process ({ones:,} tasks, best of 2)",
        ms(best),
        f"no-op {ms(noop_per_task)}: sentq's own {ms(own)} a task",
        "own <= 1 ms",
        own <= 0.001,
    )
    limit = one_process_limit(bench)
    per_text = limit["score_s"] / limit["texts"]
    spans = {**chunk_sweep(bench).spans, 100: chunks_of_100(bench).span}
    for size in sorted(spans):
        span_s, chunks, texts = spans[size]
        per_task = span_s * 2 / chunks
        scoring = per_text * texts / chunks
        add(
            "8",
            f"chunk {size:,}: per task per worker process ({chunks:,} tasks)",
            ms(per_task),
            f"scoring {ms(scoring)} of it (limit's rate); the rest {ms(per_task - scoring)}, no-op {ms(noop_per_task)}",
        )


if __name__ == "__main__":
    sys.exit(measure_alone(__doc__, small_chunks, measure))
