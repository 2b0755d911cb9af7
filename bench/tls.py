"""TLS's cost end to end: 1M texts through `sentq submit --wait` with a `-c 2` worker, over plain TCP and over TLS to
the same redis-server (ACL user from deploy/redis-acl.conf on both; a CA and a server certificate made with openssl),
alternating, best of N. Everything on loopback on this machine: the cost shown is TLS's CPU, not a network's.

Usage: python bench/tls.py [--quick] [--append RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import make_pool, write_texts  # noqa: E402

from tests.conftest import Worker, base_env  # noqa: E402
from tests.test_secure_redis import Certs, SecureRedis, make_ca, make_cert  # noqa: E402

SENTQ = [sys.executable, "-m", "sentq.cli"]


def submit_wait(url: str, path: Path) -> tuple[float, int]:
    """Seconds from launching `sentq submit FILE --wait` to its exit, and the rows it printed."""
    started = time.perf_counter()
    proc = subprocess.run(SENTQ + ["submit", str(path), "--wait"], env=base_env(url), capture_output=True, check=True)
    return time.perf_counter() - started, proc.stdout.count(b"\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k texts, one run each (a smoke run)")
    parser.add_argument("--append", type=Path, default=None, help="also append the table to this markdown file")
    args = parser.parse_args()
    if shutil.which("openssl") is None:
        sys.exit("openssl is missing: apt-get install openssl")
    lines = 100_000 if args.quick else 1_000_000
    runs = 1 if args.quick else 2
    tmp = Path(tempfile.mkdtemp(prefix="sentq-bench-tls-"))
    ca = make_ca(tmp, "ca")
    server_cert, server_key = make_cert(tmp, "ca", "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    certs = Certs(ca, ca, server_cert, server_key, server_cert, server_key)
    server = SecureRedis(tmp, certs=certs, plain=True, tls=True).start()
    urls = {"TCP": server.url(), "TLS": server.tls_url()}
    seconds: dict[str, list[float]] = {mode: [] for mode in urls}
    try:
        pool = make_pool(50_000, seed=7)
        src, warm = tmp / "texts.txt", tmp / "warm.txt"
        write_texts(src, [pool[i % len(pool)] for i in range(lines)])
        write_texts(warm, pool[:2_000])
        for _ in range(runs):
            for mode, url in urls.items():
                worker = Worker(url, tmp / f"worker-{mode}.log", name=f"bench-{mode.lower()}@%h", concurrency=2)
                worker.start()
                try:
                    submit_wait(url, warm)  # the model loaded (bootstrapped on the first run), connections made
                    took, rows = submit_wait(url, src)
                    assert rows == lines, f"{mode}: {rows} rows for {lines} texts"
                    seconds[mode].append(took)
                finally:
                    worker.stop()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    best = {mode: min(times) for mode, times in seconds.items()}
    rows = [
        (
            f"{lines:,} texts, submit --wait, -c 2 worker, {mode}",
            f"{best[mode]:.2f} s",
            f"{lines / best[mode]:,.0f} texts/s",
        )
        for mode in urls
    ]
    overhead = best["TLS"] / best["TCP"] - 1
    rows.append(("TLS overhead (wall time, best of each)", f"{overhead:+.1%}", f"runs: {json.dumps(seconds)}"))
    table = ["| measure | time | rate |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    text = (
        "\n### TLS to Redis (bench/tls.py" + (", --quick" if args.quick else "") + ")\n\n"
        f"One redis-server with a plain port and a TLS port, the ACL user on both; best of {runs}, alternating.\n\n"
        + "\n".join(table)
        + "\n"
    )
    print(text)
    if args.append:
        with open(args.append, "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
