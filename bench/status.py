"""Measures how long `sentq status JOB` takes on a job of 2,000 chunks, next to Python's own start-up.

6. `sentq status JOB` on a 2,000-chunk job queued where nobody consumes it (median of 5; --quick: 3), next to
   `python -c pass`: what status adds to starting Python.

Run alone: `python bench/status.py [--quick]` (its own redis-server and `sentq worker -c 2`; `--quick`: the same
2,000 chunks of 10 texts).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from common import NOBODY_QUEUE, Bench, Results, check, inputs, job_id_from, measure_alone, median_wall, ms, step


def measure(bench: Bench, results: Results) -> None:
    sizes = bench.sizes
    chunks_n = sizes.status_texts // sizes.status_chunk
    with step(f"6. sentq status on a {chunks_n:,}-chunk job"):
        check(
            bench.sentq(
                ["submit", str(inputs(bench).status), "--chunk-size", str(sizes.status_chunk)],
                env=bench.env(SENTQ_QUEUE=NOBODY_QUEUE),
                name="status-job",
            ),
            "sentq submit (status job)",
        )
        job = job_id_from(f"job {bench.tmp.joinpath('status-job.out').read_text().strip()}")
        status = median_wall(bench, ["status", job], "status")
        py = [sys.executable, "-c", "pass"]
        subprocess.run(py, check=True)
        starts = []
        for _ in range(sizes.repeats):
            t0 = time.perf_counter()
            subprocess.run(py, check=True)
            starts.append(time.perf_counter() - t0)
        py_start = statistics.median(starts)
        bench.drop_jobs()
    results.add(
        "6",
        f"sentq status JOB, {chunks_n:,} chunks (median of {sizes.repeats})",
        ms(status),
        f"python -c pass {ms(py_start)}; +{ms(status - py_start)}",
        "<= +100 ms",
        status - py_start <= 0.1,
    )


if __name__ == "__main__":
    sys.exit(measure_alone(__doc__, measure, noop_workers=False))
