"""How long a dead worker host's chunk waits, with default settings: a worker holding a chunk is SIGKILLed (its whole
process group, as a host that vanishes) while another lives; we time, from the kill, until the ledger re-sends the
chunk, until the other worker leases it, and until the job is done. Its own redis-server and workers.

Usage: python bench/recovery_time.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import RedisServer, Worker, run_sentq  # noqa: E402


def one_run(tmp: Path) -> tuple[float, float, float]:
    server = RedisServer(tmp, appendonly=True)
    server.start()
    src = tmp / "t.txt"
    with open(src, "w") as f:
        for i in range(400_000):
            f.write(f"text number {i} is rather good and not bad at all\n")
    doomed = Worker(server.url, tmp / "doomed.log", name="doomed@%h", concurrency=1)
    rescuer = Worker(server.url, tmp / "rescuer.log", name="rescuer@%h", concurrency=1)
    try:
        doomed.start()
        rescuer.start()
        job = run_sentq(["submit", str(src), "--chunk-size", "100000"], server.url).stdout.strip()
        client = server.client()
        leases = f"sentq:job:{job}:leases"
        deadline = time.monotonic() + 60
        held = None
        while held is None and time.monotonic() < deadline:
            for index, lease in client.hgetall(leases).items():
                if lease.startswith(b"doomed@"):
                    held = index
            time.sleep(0.005)
        assert held is not None and doomed.proc is not None, "the doomed worker never leased a chunk"
        os.killpg(doomed.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        resent = leased = done = None
        while done is None and time.monotonic() - killed < 120:
            lease = client.hget(leases, held)
            now = time.monotonic() - killed
            if resent is None and (lease is None or not lease.startswith(b"doomed@")):
                resent = now
            if leased is None and lease is not None and lease.startswith(b"rescuer@"):
                leased = now
            if client.sismember(f"sentq:job:{job}:done", held):
                leased = leased or now
                if client.hget(f"sentq:job:{job}", "state") == b"done":
                    done = now
            time.sleep(0.05)
        assert resent is not None and leased is not None and done is not None, "the chunk was not recovered"
        return resent, leased, done
    finally:
        doomed.stop()
        rescuer.stop()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="sentq-recovery-") as tmp:
            resent, leased, done = one_run(Path(tmp))
        results.append((resent, leased, done))
        print(
            f"run {run + 1}: re-sent {resent:.1f} s after the kill, scored by the live worker from {leased:.1f} s, "
            f"job done at {done:.1f} s",
            flush=True,
        )
    print(
        "recovery after a worker host's death (default settings): re-sent median "
        f"{statistics.median(r[0] for r in results):.1f} s (max {max(r[0] for r in results):.1f} s); "
        f"scored elsewhere from median {statistics.median(r[1] for r in results):.1f} s "
        f"(max {max(r[1] for r in results):.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
