"""Celery's own console, Flower, on sentq's app: it sees the workers and the tasks of a job (task events are on)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import Worker, base_env, free_port, run_sentq


def test_flower_sees_workers_and_tasks(redis_url: str, worker: Worker, tmp_path: Path) -> None:
    port = free_port()
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115 - closed below
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "sentq.worker", "flower", f"--port={port}", "--address=127.0.0.1"],
        env=base_env(redis_url, FLOWER_UNAUTHENTICATED_API="1"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        api = f"http://127.0.0.1:{port}/api"
        deadline = time.monotonic() + 60
        while True:  # Flower is up once it answers; it then listens to the task events
            assert flower.poll() is None, (tmp_path / "flower.log").read_text()
            try:
                if httpx.get(f"{api}/workers", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "flower.log").read_text()
            time.sleep(0.2)
        src = tmp_path / "t.txt"
        src.write_text("".join(f"great product {i}\n" for i in range(30)))
        job = run_sentq(
            ["submit", str(src), "--chunk-size", "10", "--wait", "-o", str(tmp_path / "o.jsonl")], redis_url
        )
        assert job.returncode == 0, job.stderr
        while True:  # events arrive asynchronously: wait until Flower has all three chunks succeeded
            tasks = httpx.get(f"{api}/tasks", params={"taskname": "sentq.score_chunk"}, timeout=5).json()
            done = [t for t in tasks.values() if t["state"] == "SUCCESS"]
            if len(done) == 3:
                break
            assert time.monotonic() < deadline + 60, tasks
            time.sleep(0.2)
        workers = httpx.get(f"{api}/workers", params={"refresh": "1"}, timeout=10).json()
        assert any(name.startswith("session@") for name in workers), workers
    finally:
        flower.terminate()
        flower.wait(timeout=10)
        log.close()
