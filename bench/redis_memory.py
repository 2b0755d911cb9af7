"""Measures Redis's memory per text in flight and per result row, from the producer's runs of a 2M-line job.

7. Redis memory: used_memory's growth over `sentq submit` of 2M lines to a queue nobody consumes, per text (staged
   and queued), and over a 2M-line job run to the end (`sentq submit` + `sentq wait -o`), per result row
   (bench/producer.py runs both).

Run alone: `python bench/redis_memory.py [--quick]` (its own redis-server and `sentq worker -c 2`; `--quick`: 200k
lines).
"""

from __future__ import annotations

import sys

from common import Bench, Results, measure_alone
from producer import submit_and_wait, submit_unconsumed


def measure(bench: Bench, results: Results) -> None:
    sizes = bench.sizes
    in_flight = submit_unconsumed(bench).in_flight
    per_row = submit_and_wait(bench).per_row
    results.add("7", "Redis memory per text in flight (staged, queued)", f"{in_flight:,.0f} B", f"{sizes.big:,} texts")
    results.add(
        "7",
        "Redis memory per result row (job done)",
        f"{per_row:,.0f} B",
        f"{sizes.big:,} rows",
        "<= 40 B",
        per_row <= 40,
    )


if __name__ == "__main__":
    sys.exit(measure_alone(__doc__, measure, noop_workers=False))
