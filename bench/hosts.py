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
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATA, ONE_THREAD, REPO, make_pool, write_texts  # noqa: E402
from sentq import keys  # noqa: E402
from tests import netns  # noqa: E402
from tests.conftest import free_port  # noqa: E402

SENTQ = [sys.executable, "-m", "sentq.cli"]


def env(url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SENTQ_") and k != "PYTHONDONTWRITEBYTECODE"}
    return {**base, **ONE_THREAD, "SENTQ_BROKER_URL": url, "SENTQ_DATA_DIR": str(DATA), "PYTHONUNBUFFERED": "1"}


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g}s waiting until {what}")
        time.sleep(0.05)


def run_job(url: str, client: redis.Redis, path: Path) -> tuple[float, int]:
    """Submit ``path``, wait for the job to end, and return its scoring rate (texts/s) and texts."""
    done = subprocess.run([*SENTQ, "submit", str(path)], env=env(url), capture_output=True, text=True, check=True)
    job = done.stdout.strip()

    def finished() -> bool:
        return client.hget(keys.job(job), "state") in (b"done", b"failed", b"invalid", b"cancelled")

    wait_for(finished, 600, f"job {job} ends")
    record = {k.decode(): v.decode() for k, v in client.hgetall(keys.job(job)).items()}
    if record["state"] != "done":
        raise SystemExit(f"job {job} ended {record['state']}: {record.get('error', '')}")
    texts = int(record["total_texts"])
    return texts / (float(record["finished_at"]) - float(record["first_started"])), texts


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
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port = free_port()
        procs.append(
            subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", f"127.0.0.1 {network.gateway}", "--save", "",
                 "--appendonly", "no", "--protected-mode", "no", "--dir", str(tmp)],
                stdout=subprocess.DEVNULL,
            )
        )  # fmt: skip
        client = redis.Redis(port=port, socket_timeout=30)
        wait_for(lambda: _pings(client), 10, "redis-server answers")
        local_url = f"redis://127.0.0.1:{port}/0"
        host_url = f"redis://{network.gateway}:{port}/0"
        texts = make_pool(args.texts, seed=20)
        job_file = tmp / "texts.txt"
        write_texts(job_file, texts)
        warm = tmp / "warm.txt"
        write_texts(warm, texts[:20_000])
        rates = []
        for n in (1, 2):
            host = network.add_host()
            log = open(tmp / f"worker{n}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append(
                subprocess.Popen(
                    [*host.prefix, *SENTQ, "worker", "-c", "1", "-n", f"w{n}@host{n}"],
                    env=env(host_url),
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            wait_for(lambda n=n: client.zcard(keys.WORKERS_LIVE) >= n, 120, f"{n} worker host(s) beat")
            run_job(local_url, client, warm)  # each worker loads its model before the timed job
            best = max(run_job(local_url, client, job_file)[0] for _ in range(2))
            rates.append(best)
        lines = [
            f"one job of {args.texts:,} texts, scored by worker hosts (network namespaces, `sentq worker -c 1` each, "
            "Redis over a bridge), the job's texts over the span from its first chunk's start to its end (best of 2):",
            f"- one host: {rates[0]:,.0f} texts/s",
            f"- two hosts: {rates[1]:,.0f} texts/s: **{rates[1] / rates[0]:.2f}x** one host (this box has 2 cores for "
            "both workers, Redis and the producer)",
        ]
        print("\n".join(lines))
        if args.append is not None:
            with open(args.append, "a") as f:
                f.write("\n## Worker hosts (`python bench/hosts.py`)\n\n" + "\n".join(lines) + "\n")
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        network.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


if __name__ == "__main__":
    sys.exit(main())
