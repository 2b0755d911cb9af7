"""One job on one worker host, then on two: does the job's scoring rate grow with the hosts (nothing central
serialising them)? Each host is a network namespace with its own `sentq worker -c 1`, reaching the bench's own
redis-server over a bridge (tests/netns.py), as a worker on another machine would.

The rate is the job's own: its texts over the span from its first chunk's start to its end, read from the job record
(the download is another central step, measured by bench/run.py). On this 2-core box two hosts of one process each
are the most it can show; past it, docs/scaling.md says what the per-text costs predict.

Usage (root, iproute2): python bench/hosts.py [--texts 300000] [--append FILE.md]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, make_pool, report, sentq_env, write_texts  # noqa: E402
from sentq import keys  # noqa: E402
from tests import netns  # noqa: E402
from tests.conftest import RedisServer, stop_process, wait_until  # noqa: E402

SENTQ = [sys.executable, "-m", "sentq.cli"]


def run_job(url: str, client: redis.Redis, path: Path) -> float:
    """Submit ``path``, wait for the job to end, and return its scoring rate (texts/s)."""
    done = subprocess.run([*SENTQ, "submit", str(path)], env=sentq_env(url), capture_output=True, text=True, check=True)
    job = done.stdout.strip()
    ended = (b"done", b"failed", b"invalid", b"cancelled")
    wait_until(lambda: client.hget(keys.job(job), "state") in ended, 600, f"job {job} ends")
    record = {k.decode(): v.decode() for k, v in client.hgetall(keys.job(job)).items()}
    if record["state"] != "done":
        raise SystemExit(f"job {job} ended {record['state']}: {record.get('error', '')}")
    return int(record["total_texts"]) / (float(record["finished_at"]) - float(record["first_started"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=300_000)
    parser.add_argument("--append", type=Path, default=None, help="also append the lines to this markdown file")
    args = parser.parse_args()
    why = netns.unavailable()
    if why:
        print(f"skipped: {why}")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="sentq-hosts-"))
    network = netns.Network().up()
    server = RedisServer(tmp, bind=f"127.0.0.1 {network.gateway}")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        server.start()
        client = server.client()
        local_url, host_url = server.url, f"redis://{network.gateway}:{server.port}/0"
        texts = make_pool(args.texts, seed=20)
        job_file, warm = tmp / "texts.txt", tmp / "warm.txt"
        write_texts(job_file, texts)
        write_texts(warm, texts[:20_000])
        rates = []
        for n in (1, 2):
            host = network.add_host()
            log = open(tmp / f"worker{n}.log", "wb")  # noqa: SIM115 - closed with the process
            worker = [*host.prefix, *SENTQ, "worker", "-c", "1", "-n", f"w{n}@host{n}"]
            workers.append(subprocess.Popen(worker, env=sentq_env(host_url), cwd=REPO, stdout=log, stderr=log))
            wait_until(lambda n=n: client.zcard(keys.WORKERS_LIVE) >= n, 120, f"{n} worker host(s) beat")
            run_job(local_url, client, warm)  # each worker loads its model before the timed job
            rates.append(max(run_job(local_url, client, job_file) for _ in range(2)))
        lines = [
            f"one job of {args.texts:,} texts, scored by worker hosts (network namespaces, `sentq worker -c 1` each, "
            "Redis over a bridge), the job's texts over the span from its first chunk's start to its end (best of 2):",
            f"- one host: {rates[0]:,.0f} texts/s",
            f"- two hosts: {rates[1]:,.0f} texts/s: **{rates[1] / rates[0]:.2f}x** one host (this box has 2 cores for "
            "both workers, Redis and the producer)",
        ]
        report(lines, "Worker hosts (`python bench/hosts.py`)", args.append)
    finally:
        for worker_proc in workers:
            stop_process(worker_proc, timeout=30)
        server.stop()
        network.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
