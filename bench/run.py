"""make bench: how fast sentq is, next to the one-process limit and next to plain Celery, in one run.

Starts its own redis-server (temp dir, free port, no persistence, noeviction), a `sentq worker -c 2` and a bare
Celery no-op worker (-c 2), makes its own input (seeded: real VADER sentences resampled and recombined into
3-30 word texts, ~10% carrying an accented/CJK/emoji word), and measures on this machine, side by side (each module's
docstring says how; each runs alone as `python bench/MODULE.py [--quick]`):

1. the one-process limit, and two copies of it side by side (bench/limit_vs_sentq.py);
2. sentq end to end (`sentq submit FILE --wait -o`) of 1M texts at chunk sizes 1k / 5k / 20k, and to CSV next to
   JSONL (bench/limit_vs_sentq.py); the same job on a tuned Dask `LocalCluster` (2 processes x 1 thread, glibc
   malloc defaults, profiler off; Dask is bench-only, bench/requirements.lock) as a peer row (bench/dask_peer.py);
3. the seed's way (a Celery group of `sentq.batch_score` chunks of 5,000), and 3b a mid-size job of 100,000 texts
   (bench/limit_vs_sentq.py);
4. submit of 2M lines with nobody consuming (time to the job id, enqueue rate, producer RSS and CPU), and the
   waiter's peak RSS (bench/producer.py);
5. small jobs: a one-text task's round trip next to Celery no-ops, CLI wall times, a 10,000-line `submit --wait`
   next to a one-process script's whole run (bench/small_jobs.py);
6. `sentq status JOB` on a 2,000-chunk job, next to `python -c pass` (bench/status.py);
7. Redis memory per text in flight and per result row (bench/redis_memory.py);
8. per-task cost at chunks of 1 to 20,000 next to a burst of Celery no-op tasks (bench/per_task.py, which also
   runs the job of chunks of 100 whose rate is a row of 2);
9. the downloader: a finished 2M-row job downloaded again by `sentq wait -o` (JSONL, CSV), `job.rows()` and the API's
   /results, as rates and as the worker cores each keeps up with (bench/download.py).

It prints one table with the issue's targets (PASS/MISS) and writes it to bench/RESULTS.md (`--quick`: a tenth of
the sizes, written to bench/out/RESULTS-quick.md). Everything it starts is stopped, even on Ctrl-C.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import dask_peer
import download
import limit_vs_sentq
import per_task
import producer
import redis_memory
import small_jobs
import status
from common import (
    BENCH,
    FULL,
    QUICK,
    REPO,
    Bench,
    Results,
    arguments,
    machine,
    markdown,
    print_table,
    run_session,
    start,
)


def run(bench: Bench, results: Results) -> None:
    """Every measurement, in the table's order, against one bench (what one builds on, the next reuses)."""
    start(bench, results)
    dask_peer.enlist(bench)  # once in each round of 2's sweep
    limit_vs_sentq.limit_and_end_to_end(bench, results)
    dask_peer.measure(bench, results)  # its rows, peers of 2's
    limit_vs_sentq.seed_and_mid_size(bench, results)
    producer.measure(bench, results)
    small_jobs.measure(bench, results)
    status.measure(bench, results)
    per_task.small_chunks(bench, results)  # a row of 2 (chunks of 100), in its place after 6
    redis_memory.measure(bench, results)
    per_task.measure(bench, results)
    download.measure(bench, results)


def main() -> int:
    parser = arguments(__doc__)
    parser.add_argument("--results", type=Path, help="where to write the markdown table")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    target = args.results or (BENCH / "out" / "RESULTS-quick.md" if args.quick else BENCH / "RESULTS.md")

    done = run_session(sizes, run)
    if done is None:
        return 130
    results, wall = done
    info = machine()
    command = "make bench QUICK=1" if args.quick else "make bench"
    title = f"sentq bench ({'quick' if args.quick else 'full'}), {wall:.0f} s"
    print_table(results, title)
    header = [
        f"# sentq benchmark{' (quick)' if args.quick else ''}",
        "",
        f"- date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- command: `{command}` (`.venv/bin/python bench/run.py{' --quick' if args.quick else ''}`), {wall:.0f} s",
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['ram']} RAM, {info['os']}",
        f"- versions: python {info['python']}, celery {info['celery']}, redis-server {info['redis-server']}, "
        f"redis-py {info['redis-py']}",
        "- workers: `sentq worker -c 2`, a bare Celery no-op worker `-c 2` and the same with task events (-E) "
        "(bench/noop_app.py), "
        "OMP/OPENBLAS_NUM_THREADS=1 for them and for the limit",
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(markdown(results, header))
    print(f"written to {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
