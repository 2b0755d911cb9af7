"""Measures what submitting a big file costs the producer, and what waiting for its rows costs the waiter.

4. submit: time to the job id and enqueue rate of `sentq submit FILE` of 2M lines with nobody consuming, the
   producer's peak RSS and CPU per 1M lines (GNU time); then `sentq submit FILE` with the workers consuming and
   `sentq wait JOB -o out.jsonl` of the same 2M-line job: the waiter's peak RSS, launch to wait's exit next to the
   limit. Both runs also give Redis's memory per text in flight and per result row (bench/redis_memory.py). The
   producer's rate and CPU with its start-up (a two-line file's submit) taken out, for the plain text and for the
   same lines as CSV and as JSONL.

Run alone: `python bench/producer.py [--quick]` (its own redis-server and `sentq worker -c 2`; `--quick`: 200k
lines).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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


TARGET_LINES_S = 2_500_000
TARGET_CPU_PER_M = 0.4


@per_bench
def startup(bench: Bench) -> Timed:
    """`sentq submit` of a two-line file to a queue nobody consumes, best wall of 3: what is not the reading."""
    runs = [
        check(
            bench.sentq(
                ["submit", str(inputs(bench).two_lines)], env=bench.env(SENTQ_QUEUE=NOBODY_QUEUE), name="submit-2"
            ),
            "sentq submit",
        )
        for _ in range(3)
    ]
    bench.drop_jobs()
    return min(runs, key=lambda timed: timed.wall_s)


def structured(bench: Bench) -> dict[str, tuple[Path, list[str]]]:
    """The big input as CSV (an id column and the text, quoted where csv.writer quotes) and as JSONL ({"id", "text"}),
    with the options that read its texts."""
    import csv
    import json

    lines = inputs(bench).big.read_text().splitlines()
    made = {}
    path = bench.tmp / "big.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([n, text] for n, text in enumerate(lines, 1))
    made["CSV"] = (path, ["--column", "text"])
    path = bench.tmp / "big.jsonl"
    with open(path, "w") as f:
        f.writelines(json.dumps({"id": n, "text": text}, ensure_ascii=False) + "\n" for n, text in enumerate(lines, 1))
    made["JSONL"] = (path, [])
    return made


@dataclass(frozen=True)
class Consumed:
    waited: Timed  # `sentq wait JOB -o out.jsonl`
    wall_s: float  # submit's launch to wait's exit
    submit_rss_mb: float  # the producer's peak RSS with the workers consuming
    per_row: float  # Redis bytes per result row, the job done
    redis_us: float  # Redis CPU per text over the whole job (staging, queue, ledger, results, download)


@per_bench
def submit_and_wait(bench: Bench) -> Consumed:
    """`sentq submit` of the big input with the workers consuming, `sentq wait -o` of its job, Redis's memory after."""
    sizes, tmp = bench.sizes, bench.tmp
    with step(f"4. sentq submit + sentq wait -o, {sizes.big:,} lines, 2 workers"):
        before = bench.used_memory()
        redis_before = redis_cpu(bench)
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
        redis_us = (redis_cpu(bench) - redis_before) / sizes.big * 1e6
        bench.drop_jobs()
    return Consumed(waited, big_s, submit_rss, per_row, redis_us)


def redis_cpu(bench: Bench) -> float:
    info = bench.client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


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
    fixed = startup(bench)
    reading = (timed.wall_s - fixed.wall_s, timed.cpu_s - fixed.cpu_s)
    scoring = float(one_process_limit(bench)["score_only_per_s"])
    add(
        "4",
        f"producer, plain text, start-up excluded ({sizes.big:,} lines)",
        f"{sizes.big / reading[0]:,.0f} lines/s",
        f"keeps up with {sizes.big / reading[0] / scoring:.1f} worker cores; "
        f"{reading[1] / (sizes.big / 1e6):.2f} CPU-s per 1M lines; the start-up (a two-line file) "
        f"{fixed.wall_s * 1000:.0f} ms, {fixed.cpu_s:.2f} CPU-s",
        f">= {TARGET_LINES_S:,} lines/s, <= {TARGET_CPU_PER_M} CPU-s per 1M",
        sizes.big / reading[0] >= TARGET_LINES_S and reading[1] / (sizes.big / 1e6) <= TARGET_CPU_PER_M,
    )
    with step(f"4. sentq submit of the {sizes.big:,} lines as CSV and as JSONL, nobody consuming"):
        for kind, (path, options) in structured(bench).items():
            got = check(
                bench.sentq(["submit", str(path), *options], env=bench.env(SENTQ_QUEUE=NOBODY_QUEUE), name="submit-s"),
                "sentq submit",
            )
            bench.drop_jobs()
            wall, cpu = got.wall_s - fixed.wall_s, got.cpu_s - fixed.cpu_s
            add(
                "4",
                f"producer, {kind} ({path.stat().st_size / sizes.big:.0f} B a line), start-up excluded",
                f"{sizes.big / wall:,.0f} lines/s",
                f"{cpu / (sizes.big / 1e6):.2f} CPU-s per 1M lines (measured, no target)",
            )
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
        "Redis CPU per text, that job (staging, queue, ledger, results, download: INFO cpu)",
        f"{consumed.redis_us:.2f} CPU-us",
        f"one Redis core keeps up with {1e6 / consumed.redis_us:,.0f} texts/s = "
        f"{1e6 / consumed.redis_us / scoring:.1f} worker cores",
        "<= 0.15 CPU-us",
        consumed.redis_us <= 0.15,
    )
    add(
        "4",
        f"submit + wait, {sizes.big:,} texts (launch to wait's exit)",
        rate(sizes.big / big_s),
        f"{sizes.big / big_s / limit_rate:.2f}x limit; producer RSS {consumed.submit_rss_mb:.0f} MB with workers "
        "consuming",
    )


if __name__ == "__main__":
    sys.exit(measure_alone(__doc__, measure, noop_workers=False))
