"""`make faults`: run the fault scenarios that matter most N times (default 20) and print how many passed.

Each run is the real test (tests/test_faults.py) with the ledger's default clocks (the suite shortens them): its own
redis-server and `sentq worker` subprocesses, a real fault
(Redis restarted, Redis SIGKILLed and restarted from its AOF, a whole worker SIGKILLed), and an outcome decided by
the ledger and the rows, never by a sleep. Usage: python bench/faults.py [--runs N] [-k EXPR]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = {
    "redis restart": "test_redis_restart_mid_job_loses_nothing",
    "redis SIGKILL (AOF everysec)": "test_redis_sigkilled_mid_job_loses_nothing",
    "worker host vanishes (default settings)": "test_worker_host_vanishes_chunk_rescued_fast",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each scenario (default 20)")
    parser.add_argument("-k", default=None, help="only scenarios whose test name matches (pytest -k)")
    args = parser.parse_args()
    chosen = {name: test for name, test in SCENARIOS.items() if args.k is None or args.k in test}
    passed: Counter[str] = Counter()
    took: Counter[str] = Counter()
    expr = " or ".join(chosen.values())
    for run in range(1, args.runs + 1):
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "--default-clocks"]
            + ["tests/test_faults.py", "-k", expr],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        results = {m.group(2): m.group(1) for m in re.finditer(r"^(PASSED|FAILED|ERROR) \S+::(\w+)", proc.stdout, re.M)}
        line = []
        for name, test in chosen.items():
            ok = results.get(test) == "PASSED"
            passed[name] += ok
            line.append(f"{name}: {'pass' if ok else results.get(test, 'not run').lower()}")
        took["all"] += int(time.monotonic() - started)
        print(f"run {run}/{args.runs} ({time.monotonic() - started:.0f} s): " + "; ".join(line), flush=True)
        if proc.returncode not in (0, 1):
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        elif proc.returncode == 1:
            failed = re.findall(r"^E .*$", proc.stdout, re.M)
            print("  " + "\n  ".join(failed[:8]), flush=True)
    print(f"\nmake faults: {args.runs} runs of each scenario, {took['all']} s in all")
    print(f"{'scenario':<42} passed")
    for name in chosen:
        print(f"{name:<42} {passed[name]}/{args.runs}")
    return 0 if all(passed[name] == args.runs for name in chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
