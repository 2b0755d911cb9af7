"""Measures what submitting a big file costs the producer, and what waiting for its rows costs the waiter.

4. submit: time to the job id and enqueue rate of `sentq submit FILE` of 2M lines with nobody consuming, the
   producer's peak RSS and CPU per 1M lines (GNU time); then `sentq submit FILE` with the workers consuming and
   `sentq wait JOB -o out.jsonl` of the same 2M-line job: the waiter's peak RSS, launch to wait's exit next to the
   limit. Both runs also give Redis's memory per text in flight and per result row (bench/redis_memory.py).

Run alone: `python bench/producer.py [--quick]` (its own redis-server and `sentq worker -c 2`; `--quick`: 200k
lines).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

from common import (
    NOBODY_QUEUE,
    SENTQ,
    Bench,
    PeakRss,
    Results,
    Timed,
    check,
    count_lines,
    inputs,
    measure_alone,
    ms,
    per_bench,
    rate,
    reap,
    step,
)
from limit_vs_sentq import one_process_limit


@dataclass(frozen=True)
class Unconsumed:
    submit: Timed  # `sentq submit FILE` to a queue nobody consumes
    in_flight: float  # Redis bytes per text staged and queued


@per_bench
def submit_unconsumed(bench: Bench) -> Unconsumed:
    """`sentq submit` of the big input to a queue nobody consumes, and Redis's memory per text it left in flight."""
    sizes = bench.sizes
    with step(f"4. sentq submit {sizes.big:,} lines, nobody consuming"):
        before = bench.used_memory()
        timed = check(
            bench.sentq(
                ["submit", str(inputs(bench).big)],
                env=bench.env(SENTQ_QUEUE=NOBODY_QUEUE),
                first_line=True,
                name="submit",
            ),
            "sentq submit",
        )
        in_flight = (bench.used_memory() - before) / sizes.big
        bench.drop_jobs()
    return Unconsumed(timed, in_flight)


@dataclass(frozen=True)
class Consumed:
    waited: Timed  # `sentq wait JOB -o out.jsonl`
    wall_s: float  # submit's launch to wait's exit
    submit_rss_mb: float  # the producer's peak RSS with the workers consuming
    per_row: float  # Redis bytes per result row, the job done


@per_bench
def submit_and_wait(bench: Bench) -> Consumed:
    """`sentq submit` of the big input with the workers consuming, `sentq wait -o` of its job, Redis's memory after."""
    sizes, tmp = bench.sizes, bench.tmp
    with step(f"4. sentq submit + sentq wait -o, {sizes.big:,} lines, 2 workers"):
        before = bench.used_memory()
        started = time.perf_counter()
        producer = PeakRss(tmp / "producer.rss")
        submit = bench.procs.start(
            producer.wrap(SENTQ + ["submit", str(inputs(bench).big)]),
            env=bench.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        producer.watch(submit)
        assert submit.stdout is not None
        job = submit.stdout.readline().decode().strip()
        waited = check(bench.sentq(["wait", job, "-o", str(tmp / "big.jsonl")], name="wait"), "sentq wait")
        big_s = time.perf_counter() - started
        submit.stdout.close()
        submit_rc = reap(submit)
        submit_rss = producer.mb()
        bench.procs.procs.remove(submit)
        if submit_rc != 0:
            raise RuntimeError(f"sentq submit exited with {submit_rc}")
        lines = count_lines(tmp / "big.jsonl")
        if lines != sizes.big:
            raise RuntimeError(f"{lines:,} output lines for {sizes.big:,} texts")
        (tmp / "big.jsonl").unlink()
        per_row = (bench.used_memory() - before) / sizes.big
        bench.drop_jobs()
    return Consumed(waited, big_s, submit_rss, per_row)


def measure(bench: Bench, results: Results) -> None:
    sizes = bench.sizes
    add = results.add

    timed = submit_unconsumed(bench).submit
    assert timed.first_line_s is not None
    add("4", f"time to job id, {sizes.big:,} lines", ms(timed.first_line_s), "", "<= 500 ms", timed.first_line_s <= 0.5)
    enqueue = sizes.big / timed.wall_s
    add(
        "4",
        f"enqueue rate, {sizes.big:,} lines (launch to exit)",
        rate(enqueue),
        f"{timed.wall_s:.2f} s",
        ">= 400,000 texts/s",
        enqueue >= 400_000,
    )
    add("4", "producer peak RSS (sentq submit)", f"{timed.rss_mb:.0f} MB", "", "<= 150 MB", timed.rss_mb <= 150)
    per_million = timed.cpu_s / (sizes.big / 1_000_000)
    add(
        "4",
        "producer CPU per 1M lines (sentq submit, start-up included)",
        f"{per_million:.2f} CPU-s",
        f"{timed.cpu_s:.2f} CPU-s for {sizes.big:,} lines",
        "<= 0.5 CPU-s",
        per_million <= 0.5,
    )

    consumed = submit_and_wait(bench)
    waited, big_s = consumed.waited, consumed.wall_s
    limit_rate = float(one_process_limit(bench)["texts_per_s"])
    add("4", "waiter peak RSS (sentq wait -o)", f"{waited.rss_mb:.0f} MB", "", "<= 150 MB", waited.rss_mb <= 150)
    add(
        "4",
        f"submit + wait, {sizes.big:,} texts (launch to wait's exit)",
        rate(sizes.big / big_s),
        f"{sizes.big / big_s / limit_rate:.2f}x limit; producer RSS {consumed.submit_rss_mb:.0f} MB with workers "
        "consuming",
    )


if __name__ == "__main__":
    sys.exit(measure_alone(__doc__, measure, noop_workers=False))
