"""`make demo`: a Redis (the one at SENTQ_BROKER_URL, or our own), a worker, the sample file scored end to end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table

from sentq.settings import Settings, mask_url

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "reviews.txt"
console = Console(stderr=True)


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit(
            "redis-server is not installed: run `make setup` (it installs it) or `sudo apt-get install redis-server`"
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--appendonly",
            "yes",
            "--maxmemory-policy",
            "noeviction",
            "--save",
            "",
            "--logfile",
            str(directory / "redis.log"),
        ]
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        if answers(url):
            return proc, url
        time.sleep(0.05)
    sys.exit(f"redis-server did not start; see {directory / 'redis.log'}")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    started = time.monotonic()
    settings = Settings.from_env()
    tmp = Path(tempfile.mkdtemp(prefix="sentq-demo-"))
    redis_proc = worker = None
    try:
        url = settings.broker_url
        if settings.broker_is_redis and answers(url):
            console.print(f"using the Redis at {mask_url(url)}")
        else:
            redis_proc, url = start_redis(tmp)
            console.print(f"no Redis answered at {mask_url(settings.broker_url)}; started one at {url} (in {tmp})")
        env = dict(os.environ, SENTQ_BROKER_URL=url)
        env.pop("SENTQ_RESULT_BACKEND", None)
        sentq = [sys.executable, "-m", "sentq.cli"]
        log = open(tmp / "worker.log", "wb")  # noqa: SIM115 - lives as long as the worker
        worker = subprocess.Popen(
            sentq + ["worker", "-c", "2", "-n", "demo@%h"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        console.print("started a worker (2 processes); waiting for it to be ready")
        for _ in range(600):
            if b"ready." in (tmp / "worker.log").read_bytes():
                break
            if worker.poll() is not None:
                console.print((tmp / "worker.log").read_text())
                return 1
            time.sleep(0.1)
        out = tmp / "rows.jsonl"
        cmd = sentq + ["submit", str(SAMPLE), "--wait", "-o", str(out)]
        console.print(f"$ sentq submit {SAMPLE.relative_to(REPO)} --wait -o {out.name}")
        code = subprocess.run(cmd, env=env).returncode
        if code != 0:
            return code
        table = Table(title=f"{SAMPLE.name}, scored")
        for col in ("line", "text", "score", "label", "model"):
            table.add_column(col)
        for raw in out.read_text().splitlines():
            row = json.loads(raw)
            color = "green" if row["label"] == "positive" else "red"
            table.add_row(
                str(row["line"]), row["text"], f"{row['score']:.4f}", f"[{color}]{row['label']}[/]", row["model"]
            )
        Console().print(table)
        console.print(f"demo finished in {time.monotonic() - started:.1f}s")
        return 0
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        stop(redis_proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
