"""What one text costs each part of a job, in CPU: the producer (`sentq submit`), Redis, the workers (scoring and
their bookkeeping), the downloader (`sentq wait -o`), and Redis's memory per finished row. docs/scaling.md turns
these into how fast a job goes with N worker hosts of C cores, and which part is the next wall.

Every part runs as a user runs it, against the bench's own redis-server and `sentq worker -c 2` (one BLAS thread).
CPU is read from the processes themselves (getrusage of the commands, /proc of the worker and its pool, Redis's
INFO cpu), so the parts' costs add up to the job's whole CPU.

Usage: python bench/costs.py [--texts 500000] [--append FILE.md]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, make_pool, report, sentq_env, write_texts  # noqa: E402
from sentq import keys  # noqa: E402
from tests.conftest import RedisServer, stop_process  # noqa: E402

SENTQ = [sys.executable, "-m", "sentq.cli"]
TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and its live descendants, from /proc."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / TICK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def redis_cpu(client: object) -> float:
    info = client.info("cpu")  # type: ignore[attr-defined]
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str], url: str) -> tuple[float, str]:
    """Run a sentq command; its CPU seconds (start-up included) and stdout."""
    before = children_cpu()
    done = subprocess.run([*SENTQ, *args], env=sentq_env(url), capture_output=True, text=True, check=True)
    return children_cpu() - before, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=500_000)
    parser.add_argument("--append", type=Path, default=None, help="also append the lines to this markdown file")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sentq-costs-"))
    server = RedisServer(tmp)
    server.start()
    worker = None
    try:
        client = server.client()
        url = server.url
        log = open(tmp / "worker.log", "wb")  # noqa: SIM115 - closed with the process
        worker = subprocess.Popen([*SENTQ, "worker", "-c", "2"], env=sentq_env(url), cwd=REPO, stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while client.zcard(keys.WORKERS_LIVE) < 1:
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start: {(tmp / 'worker.log').read_text()[-2000:]}")
            time.sleep(0.05)
        texts = make_pool(args.texts, seed=30)
        path = tmp / "texts.txt"
        write_texts(path, texts)
        warm = tmp / "warm.txt"
        write_texts(warm, texts[:10_000])
        timed(["submit", str(warm), "--wait", "-o", str(tmp / "warm.jsonl")], url)  # models loaded, caches warm
        # What each command costs before its work: the same command on a one-text job.
        one = tmp / "one.txt"
        write_texts(one, texts[:1])
        submit_startup, out = timed(["submit", str(one)], url)
        tiny = out.strip()
        while client.hget(keys.job(tiny), "state") != b"done":
            time.sleep(0.05)
        wait_startup, _ = timed(["wait", tiny, "-o", str(tmp / "one.jsonl")], url)

        memory_before = int(client.info("memory")["used_memory"])
        client.config_resetstat()
        redis_before, worker_before = redis_cpu(client), tree_cpu(worker.pid)
        producer, out = timed(["submit", str(path)], url)
        job = out.strip()
        while client.hget(keys.job(job), "state") not in (b"done", b"failed", b"invalid", b"cancelled"):
            time.sleep(0.05)
        state = client.hget(keys.job(job), "state")
        if state != b"done":
            raise SystemExit(f"job {job} ended {state!r}")
        memory_done = int(client.info("memory")["used_memory"])
        downloader, _ = timed(["wait", job, "-o", str(tmp / "rows.jsonl")], url)
        redis_used, worker_used = redis_cpu(client) - redis_before, tree_cpu(worker.pid) - worker_before

        n = args.texts
        stats = sorted(client.info("commandstats").items(), key=lambda kv: -kv[1]["usec"])
        redis_top = ", ".join(
            f"{name.removeprefix('cmdstat_')} {v['calls']:,} calls {v['usec'] / n:.3f} us/text" for name, v in stats[:8]
        )
        us = {
            "producer (sentq submit)": (producer - submit_startup) / n * 1e6,
            "Redis (staging, queue, ledger, results, download)": redis_used / n * 1e6,
            "workers (scoring and their bookkeeping)": worker_used / n * 1e6,
            "downloader (sentq wait -o rows.jsonl)": (downloader - wait_startup) / n * 1e6,
        }
        lines = [
            f"CPU per text of one job of {n:,} texts (`sentq worker -c 2`; each command's start-up, the same command "
            f"on a one-text job, left out: submit {submit_startup * 1000:.0f} ms, wait {wait_startup * 1000:.0f} ms):",
            *[
                f"- {part}: {cost:.2f} CPU-us per text: one core keeps up with {1e6 / cost:,.0f} texts/s"
                for part, cost in us.items()
            ],  # fmt: skip
            f"- Redis memory per finished row: {(memory_done - memory_before) / n:.0f} B",
            f"- Redis's busiest commands (INFO commandstats, their own time; the rest is I/O and the event loop): "
            f"{redis_top}",
        ]
        report(lines, "CPU per text, by part (`python bench/costs.py`)", args.append)
    finally:
        stop_process(worker, timeout=30)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
