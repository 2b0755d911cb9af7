"""What one reconciler sweep costs: Redis commands (as the server counts them, script bodies included) and wall time,
on N unfinished jobs with chunks pending and leased, against its own redis-server.

Usage: python bench/reconcile_cost.py [--jobs 100] [--chunks 50] [--sweeps 30]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sentq import broker, keys, ledger  # noqa: E402
from sentq.settings import Settings  # noqa: E402
from tests.conftest import RedisServer  # noqa: E402


def commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())  # type: ignore[union-attr]


@dataclass(frozen=True)
class Sweep:
    commands: float  # median Redis commands a healthy sweep (scripts' inner calls included)
    sent: int  # commands the reconciler sent (in 3 pipelined round trips)
    median_ms: float
    max_ms: float
    resent: int  # chunks re-sent when their holder died
    dead_commands: int
    dead_ms: float


def sweep_cost(client: redis.Redis, settings: Settings, jobs: int, chunks: int, sweeps: int) -> Sweep:
    """``jobs`` unfinished jobs of ``chunks`` chunks each, all waiting, 2 of each leased: what a sweep costs."""
    client.flushall()
    clocks = {"beat_every_s": settings.heartbeat_s, "lost_after_s": settings.lost_after_s}
    holder = "bench@host/1-a"
    running = []
    for n in range(jobs):
        job = f"job{n:05d}"
        client.hset(keys.job(job), mapping={"state": "running", "queue": "sentq", "broker": "redis"})
        client.expire(keys.job(job), 3600)
        client.zadd(keys.ACTIVE_JOBS, {job: n})
        ledger.mark_sent(client, job, range(chunks))
        # Sent a minute ago and still waiting behind a backlog: the worst case, every chunk old enough to check.
        client.zadd(keys.job_pending(job), {str(i): time.time() - 60 for i in range(chunks)})
        for index in range(2):
            ledger.claim(client, job, index, holder=holder)
            running.append(f"{job}:{index}")
    ledger.beat(client, holder, info={"queues": ["sentq"]}, running=running, ttl_s=settings.heartbeat_ttl_s)
    for _ in range(200):  # a backlog: the queue is not empty, so no pending chunk counts as lost
        client.lpush("sentq", b'{"headers": {"task": "other"}}')

    def view(queue: str) -> ledger.QueueView:
        return broker.view(None, settings, client, queue)

    sent: list[int] = []
    costs, times, client_cmds = [], [], 0
    for _ in range(sweeps):
        before = commands(client)
        started = time.perf_counter()
        sweep = ledger.reconcile(
            client, broker_id="redis", view=view, publish=lambda j, q, i, s: sent.extend(i), **clocks
        )
        times.append((time.perf_counter() - started) * 1000)
        costs.append(commands(client) - before - 1)  # less the INFO call itself
        client_cmds = sweep.commands
    assert not sent, "a healthy ledger re-sent chunks"
    ledger.farewell(client, holder)  # the holder dies: one sweep re-sends its 2 chunks of each job
    before = commands(client)
    started = time.perf_counter()
    ledger.reconcile(client, broker_id="redis", view=view, publish=lambda j, q, i, s: sent.extend(i), **clocks)
    dead_ms = (time.perf_counter() - started) * 1000
    dead_cmds = commands(client) - before - 1
    return Sweep(statistics.median(costs), client_cmds, statistics.median(times), max(times), len(sent), dead_cmds,
                 dead_ms)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=50, help="chunks per job, all pending (2 leased)")
    parser.add_argument("--sweeps", type=int, default=30)
    parser.add_argument("--append", type=Path, default=None, help="also append the lines to this markdown file")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sentq-reconcile-"))
    server = RedisServer(tmp)
    server.start()
    try:
        client = server.client()
        settings = Settings.from_env({"SENTQ_BROKER_URL": f"redis://127.0.0.1:{server.port}/0"})
        small = sweep_cost(client, settings, args.jobs, args.chunks, args.sweeps)
        big = sweep_cost(client, settings, args.jobs, 10 * args.chunks, args.sweeps)
        flat = big.commands <= 1.1 * small.commands and big.median_ms <= 2 * small.median_ms
        lines = [
            f"reconciler sweep, {args.jobs} unfinished jobs x {args.chunks} chunks waiting (2 of each leased):",
            f"- healthy: {small.commands:.0f} Redis commands (scripts' inner calls included), {small.sent} "
            f"sent in a few pipelined round trips; median {small.median_ms:.1f} ms, max {small.max_ms:.1f} ms "
            f"over {args.sweeps} sweeps",
            f"- holder dead: re-sent {small.resent} chunks in {small.dead_commands} Redis commands, "
            f"{small.dead_ms:.1f} ms (publishing them not timed)",
            f"- the same with 10x the chunks ({10 * args.chunks} a job): healthy {big.commands:.0f} commands, median "
            f"{big.median_ms:.1f} ms; holder dead {big.dead_commands} commands, {big.dead_ms:.1f} ms. "
            f"Target (#20): the sweep stays flat in the number of chunks (<= 1.1x the commands, <= 2x the time): "
            f"{'PASS' if flat else 'MISS'}",
        ]
        print("\n".join(lines))
        if args.append is not None:
            with open(args.append, "a") as f:
                f.write("\n## Reconciler (`python bench/reconcile_cost.py`)\n\n" + "\n".join(lines) + "\n")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
