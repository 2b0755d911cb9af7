"""`sentq api` measured next to what it wraps, in one run on this machine: its own redis-server, worker and API.

1. Upload throughput: a 200k-line file POSTed to /v1/jobs (streamed) and its rows read back over /results, upload to
   last row, next to `sentq submit FILE --wait` (3 runs each, alternating; medians).
2. POST /score-batch under load (wrk, loopback, many connections): p50/p99 latency and requests/s, next to the bare
   Celery `batch_score.delay()` it wraps (threads in one process). No worker runs during this part: it measures
   queueing, the API's job; the messages are dropped after.
3. The API process's peak RSS (VmHWM) while a 2M-line upload streams through it.

Usage: python bench/api.py [--quick] [--append RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import make_pool, write_texts  # noqa: E402

from tests.conftest import ApiServer, RedisServer, Worker, base_env  # noqa: E402

SENTQ = [sys.executable, "-m", "sentq.cli"]
BODY = '["great product", "awful service"]'


def upload_and_read(api: ApiServer, path: Path) -> tuple[float, int]:
    """Seconds from the first byte uploaded to the last row read, and the rows read."""
    started = time.perf_counter()
    with httpx.Client(base_url=api.url, timeout=600) as http, open(path, "rb") as body:
        reply = http.post("/v1/jobs", content=body, headers={"Content-Type": "text/plain"})
        reply.raise_for_status()
        rows = 0
        with http.stream("GET", f"/v1/jobs/{reply.json()['id']}/results") as stream:
            for block in stream.iter_bytes():
                rows += block.count(b"\n")
    return time.perf_counter() - started, rows


def submit_wait(url: str, path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    proc = subprocess.run(SENTQ + ["submit", str(path), "--wait"], env=base_env(url), capture_output=True, check=True)
    return time.perf_counter() - started, proc.stdout.count(b"\n")


def wrk(url: str, *, connections: int, seconds: int, tmp: Path) -> dict[str, float]:
    script = tmp / "post.lua"
    script.write_text(f"wrk.method = 'POST'\nwrk.body = '{BODY}'\nwrk.headers['Content-Type'] = 'application/json'\n")
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", str(script),
         url + "/score-batch"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")

    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"p50_ms": latency("50"), "p99_ms": latency("99"), "rps": rps}


def bare_delay(url: str, *, threads: int, seconds: float) -> dict[str, float]:
    """`batch_score.delay()` in a loop on ``threads`` threads of this process: latency per call and calls/s."""
    from sentq import control
    from sentq.settings import Settings

    worker = control.worker_module(Settings.from_env({"SENTQ_BROKER_URL": url}))
    worker.batch_score.delay(["warm up"])
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def loop() -> None:
        mine = []
        while time.perf_counter() < stop:
            t = time.perf_counter()
            worker.batch_score.delay(["great product", "awful service"])
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": cuts[49] * 1e3, "p99_ms": cuts[98] * 1e3, "rps": len(latencies) / seconds}


def peak_rss_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss / 1024, hwm / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs and shorter loads (a smoke run)")
    parser.add_argument("--append", type=Path, default=None, help="also append the table to this markdown file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: `make bench` installs it (apt-get install wrk)")
    lines_upload = 20_000 if args.quick else 200_000
    lines_big = 200_000 if args.quick else 2_000_000
    load_s = 3 if args.quick else 10
    runs = 1 if args.quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="sentq-bench-api-"))
    server = RedisServer(tmp)
    server.start()
    client = server.client()
    worker = Worker(server.url, tmp / "worker.log", name="bench@%h", concurrency=2)
    api = ApiServer(server.url, tmp / "api.log")
    rows: list[tuple[str, str, str]] = []
    try:
        pool = make_pool(50_000, seed=7)
        small, big = tmp / "200k.txt", tmp / "2m.txt"
        write_texts(small, [pool[i % len(pool)] for i in range(lines_upload)])
        write_texts(big, [pool[i % len(pool)] for i in range(lines_big)])
        worker.start()
        api.start()
        upload_and_read(api, small)  # warm: the worker has its model, the API its imports
        http_s, cli_s = [], []
        for _ in range(runs):
            seconds, n = upload_and_read(api, small)
            assert n == lines_upload, n
            http_s.append(seconds)
            seconds, n = submit_wait(server.url, small)
            assert n == lines_upload, n
            cli_s.append(seconds)
        h, c = statistics.median(http_s), statistics.median(cli_s)
        rows.append(
            (f"upload {lines_upload:,} lines, upload to last row", f"HTTP {lines_upload / h:,.0f} texts/s ({h:.2f} s)",
             f"`sentq submit --wait` {lines_upload / c:,.0f} texts/s ({c:.2f} s): HTTP/CLI = {c / h:.2f}x")
        )  # fmt: skip

        assert api.proc is not None
        before, _ = peak_rss_mb(api.proc.pid)
        seconds, n = upload_and_read(api, big)
        assert n == lines_big, n
        _, peak = peak_rss_mb(api.proc.pid)
        size_mb = big.stat().st_size / 1e6
        rows.append(
            (f"API peak RSS, {lines_big:,}-line upload ({size_mb:.0f} MB)", f"{peak:.0f} MB (VmHWM)",
             f"{before:.0f} MB before; the upload took {seconds:.1f} s with its rows read back")
        )  # fmt: skip

        worker.stop()  # queueing is measured alone: no worker competes for the 2 cores
        for connections in (1, 64):
            got = wrk(api.url, connections=connections, seconds=load_s, tmp=tmp)
            client.delete("sentq")
            bare = bare_delay(server.url, threads=1 if connections == 1 else 8, seconds=load_s)
            client.delete("sentq")
            rows.append(
                (f"POST /score-batch, {connections} connection(s), 1 API process",
                 f"p50 {got['p50_ms']:.2f} ms, p99 {got['p99_ms']:.2f} ms, {got['rps']:,.0f} req/s",
                 f"bare `.delay()` ({1 if connections == 1 else 8} thread(s)): p50 {bare['p50_ms']:.2f} ms, "
                 f"p99 {bare['p99_ms']:.2f} ms, {bare['rps']:,.0f} calls/s")
            )  # fmt: skip
        api.stop()
        api2 = ApiServer(server.url, tmp / "api2.log", env_extra={})
        api2.proc = subprocess.Popen(
            SENTQ + ["api", "--port", str(api2.port), "--workers", "2", "--loglevel", "warning"],
            env=base_env(server.url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(api2.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the 2-process API did not start"
            time.sleep(0.1)
        try:
            got = wrk(api2.url, connections=64, seconds=load_s, tmp=tmp)
            rows.append(
                ("POST /score-batch, 64 connections, 2 API processes",
                 f"p50 {got['p50_ms']:.2f} ms, p99 {got['p99_ms']:.2f} ms, {got['rps']:,.0f} req/s", "")
            )  # fmt: skip
        finally:
            api2.stop()
        client.delete("sentq")
    finally:
        api.stop()
        worker.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    table = ["| measure | sentq api | next to it |", "|---|---|---|"]
    table += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    text = (
        "\n### `sentq api` (bench/api.py" + (", --quick" if args.quick else "") + ")\n\n"
        "Loopback, one machine (2 cores): the load generator (wrk), the API and Redis share the cores.\n\n"
        + "\n".join(table)
        + "\n"
    )
    print(text)
    print(json.dumps({"rows": rows}))
    if args.append:
        with open(args.append, "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
