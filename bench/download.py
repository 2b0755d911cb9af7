"""Measures the downloader: a finished job's rows re-downloaded by each central step, next to one core's scoring.

9. A finished job of the big input (`sentq submit FILE --wait`, scored by the bench's `sentq worker -c 2`, so what
   is stored is what workers store), then its rows downloaded again by each central step, best of 3:
   `sentq wait JOB -o x.jsonl`, `-o x.csv` and `-o x.parquet` (whole commands, start-up included), `for row in
   job.rows()`, `job.batches()` and `job.to_arrow()` in this process, and `GET /v1/jobs/JOB/results` as JSONL, CSV
   and Parquet from a `sentq api` (read with httpx). Each is a rate
   and "worker cores it keeps up with": its rate / one core's predict_proba rate in the same run (bench/limit.py's
   scoring alone). Every download is checked: its rows count, and the JSONL and CSV files are the same bytes as the
   API's. Then the floors no row building can beat: the same fetches from Redis alone, and writing as many bytes
   as the JSONL to a file alone (with the start-up: the fastest a `sentq wait -o` that built nothing would be).

Run alone: `python bench/download.py [--quick]` (its own redis-server and `sentq worker -c 2`; `--quick`: 200k
lines).
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from common import (
    DATA,
    SENTQ,
    Bench,
    Results,
    check,
    free_port,
    inputs,
    job_id_from,
    measure_alone,
    per_bench,
    step,
)
from limit_vs_sentq import one_process_limit

RUNS = 3
TARGET_ROWS_S = 2_500_000
TARGET_DICTS_S = 700_000
TARGET_COLUMNAR_S = 5_000_000


@dataclass(frozen=True)
class Download:
    name: str
    rows_s: float
    digest: str  # of the bytes downloaded ("" for dicts)
    size: int = 0  # bytes
    cpu_s: float = float("nan")  # the command's CPU seconds (user + system; GNU time), in its fastest run


def best(runs: int, once: Callable[[], tuple[float, int, str]], rows: int, name: str) -> Download:
    """The fastest of ``runs`` calls of ``once`` (seconds, rows, digest): each must give every row, the same bytes."""
    timings = []
    digests = set()
    for _ in range(runs):
        seconds, got, digest = once()
        if got != rows:
            raise RuntimeError(f"{name}: {got:,} rows for a job of {rows:,}")
        timings.append(seconds)
        digests.add(digest)
    if len(digests) != 1:
        raise RuntimeError(f"{name}: the same download gave different bytes")
    return Download(name, rows / min(timings), digests.pop())


def file_digest(path: Path) -> tuple[int, str]:
    """Lines (rows; a CSV's header included) and SHA-256 of a file."""
    sha, lines = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
            lines += block.count(b"\n")
    return lines, sha.hexdigest()


@per_bench
def finished_job(bench: Bench) -> tuple[str, int]:
    """The big input scored to the end by the bench's workers: the job id and its rows."""
    with step(f"9. a finished job of {bench.sizes.big:,} rows (sentq submit --wait)"):
        out = bench.tmp / "download-first.jsonl"
        timed = check(bench.sentq(["submit", str(inputs(bench).big), "--wait", "-o", str(out)], name="dl"), "submit")
        rows, _ = file_digest(out)
        out.unlink()
    return job_id_from(timed.stderr), rows


def parquet_digest(source: object) -> tuple[int, str]:
    """Rows and SHA-256 of a Parquet file's rows (its bytes carry the writer's version and are not compared)."""
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    sha = hashlib.sha256()
    for column in table.columns:
        sha.update(str(column.to_pylist()[:: max(1, table.num_rows // 1000)]).encode())
    return table.num_rows, sha.hexdigest()


def cli_download(bench: Bench, job_id: str, rows: int, suffix: str) -> Download:
    out = bench.tmp / f"download.{suffix}"
    size, cpu = 0, {}

    def once() -> tuple[float, int, str]:
        nonlocal size
        timed = check(bench.sentq(["wait", job_id, "-o", str(out)], name="dl-wait"), "sentq wait")
        lines, digest = parquet_digest(out) if suffix == "parquet" else file_digest(out)
        size, cpu[timed.wall_s] = out.stat().st_size, timed.cpu_s
        out.unlink()
        return timed.wall_s, lines - (suffix == "csv"), digest

    found = best(RUNS, once, rows, f"sentq wait JOB -o x.{suffix}")
    return Download(found.name, found.rows_s, found.digest, size, cpu[min(cpu)])


def floors(bench: Bench, job_id: str, rows: int, jsonl_bytes: int) -> tuple[float, float]:
    """What no row building can beat, in rows/s (best of 3): the chunks' results and staged inputs fetched from Redis
    as the follower does (MGETs of 40 chunks, nothing built), and writing the JSONL's bytes to a file (700 KB at a
    time, what a chunk's rows weigh)."""
    from sentq import keys

    chunks = int(bench.client.hget(keys.job(job_id), "total_chunks") or 0)
    fetch = []
    for _ in range(RUNS):
        started = time.perf_counter()
        for first in range(0, chunks, 40):
            indexes = range(first, min(first + 40, chunks))
            bench.client.mget([keys.chunk_output(job_id, i) for i in indexes])
            bench.client.mget([keys.chunk_input(job_id, i) for i in indexes])
        fetch.append(time.perf_counter() - started)
    # As many bytes as the JSONL, in memory pages of their own (one 700 KB block written again and again would be
    # read from the CPU's cache, which a download's rows never are).
    data, out, write = bytearray(jsonl_bytes), bench.tmp / "floor.jsonl", []
    data[::4096] = b"x" * len(range(0, jsonl_bytes, 4096))
    view = memoryview(data)
    for _ in range(RUNS):
        started = time.perf_counter()
        with open(out, "wb") as f:
            for at in range(0, jsonl_bytes, 700_000):
                f.write(view[at : at + 700_000])
        write.append(time.perf_counter() - started)
        out.unlink()
    return rows / min(fetch), rows / min(write)


def start_up(bench: Bench) -> float:
    """The best wall time of `sentq wait JOB -o x.jsonl` of a finished two-row job: what is not the download."""
    timed = check(bench.sentq(["submit", str(inputs(bench).two_lines), "--wait"], name="dl-small"), "submit")
    job_id, out = job_id_from(timed.stderr), bench.tmp / "small.jsonl"
    return min(check(bench.sentq(["wait", job_id, "-o", str(out)], name="dl-small"), "wait").wall_s for _ in range(5))


def rows_download(bench: Bench, job_id: str, rows: int) -> Download:
    import sentq
    from sentq.settings import Settings

    job = sentq.job(job_id, settings=Settings.from_env({"SENTQ_BROKER_URL": bench.url, "SENTQ_DATA_DIR": str(DATA)}))

    def once() -> tuple[float, int, str]:
        started = time.perf_counter()
        got = 0
        for _ in job.rows():
            got += 1
        return time.perf_counter() - started, got, ""

    return best(RUNS, once, rows, "job.rows()")


def batches_download(bench: Bench, job_id: str, rows: int) -> list[Download]:
    """job.batches() (Arrow record batches, iterated) and job.to_arrow() (one table) in this process."""
    import sentq
    from sentq.settings import Settings

    job = sentq.job(job_id, settings=Settings.from_env({"SENTQ_BROKER_URL": bench.url, "SENTQ_DATA_DIR": str(DATA)}))

    def batches() -> tuple[float, int, str]:
        started = time.perf_counter()
        got = sum(batch.num_rows for batch in job.batches())
        return time.perf_counter() - started, got, ""

    def table() -> tuple[float, int, str]:
        started = time.perf_counter()
        got = job.to_arrow().num_rows
        return time.perf_counter() - started, got, ""

    return [best(RUNS, batches, rows, "job.batches()"), best(RUNS, table, rows, "job.to_arrow()")]


def api_downloads(bench: Bench, job_id: str, rows: int) -> list[Download]:
    """/results as JSONL and as CSV from a `sentq api` of the bench's own (started here, stopped after)."""
    port = free_port()
    log = open(bench.tmp / "api.log", "wb")  # noqa: SIM115 - closed below
    api = bench.procs.start(
        SENTQ + ["api", "--port", str(port), "--loglevel", "warning"], env=bench.env(), stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or api.poll() is not None:
                raise RuntimeError(f"sentq api did not start:\n{(bench.tmp / 'api.log').read_text()[-3000:]}")
            time.sleep(0.1)
        found = []
        with httpx.Client(base_url=url, timeout=600) as http:
            for fmt in ("jsonl", "csv", "parquet"):

                def once(fmt: str = fmt) -> tuple[float, int, str]:
                    sha, lines, blocks = hashlib.sha256(), 0, []
                    started = time.perf_counter()
                    with http.stream("GET", f"/v1/jobs/{job_id}/results", params={"format": fmt}) as reply:
                        reply.raise_for_status()
                        for block in reply.iter_raw():
                            if fmt == "parquet":
                                blocks.append(block)
                                continue
                            sha.update(block)
                            lines += block.count(b"\n")
                    took = time.perf_counter() - started
                    if fmt == "parquet":
                        import pyarrow as pa

                        lines, digest = parquet_digest(pa.BufferReader(b"".join(blocks)))
                        return took, lines, digest
                    return took, lines - (fmt == "csv"), sha.hexdigest()

                found.append(best(RUNS, once, rows, f"GET /v1/jobs/JOB/results ({fmt})"))
        return found
    finally:
        bench.procs.stop(api)
        log.close()


def measure(bench: Bench, results: Results) -> None:
    scoring = float(one_process_limit(bench)["score_only_per_s"])
    job_id, rows = finished_job(bench)
    with step(f"9. downloads of the {rows:,}-row job, best of {RUNS} each"):
        fixed_s = start_up(bench)
        jsonl = cli_download(bench, job_id, rows, "jsonl")
        csv = cli_download(bench, job_id, rows, "csv")
        parquet = cli_download(bench, job_id, rows, "parquet")
        dicts = rows_download(bench, job_id, rows)
        batches, table = batches_download(bench, job_id, rows)
        api_jsonl, api_csv, api_parquet = api_downloads(bench, job_id, rows)
        fetch_s, write_s = floors(bench, job_id, rows, jsonl.size)
    if (jsonl.digest, csv.digest, parquet.digest) != (api_jsonl.digest, api_csv.digest, api_parquet.digest):
        raise RuntimeError("sentq wait -o and the API's /results gave different rows for the same job")
    for found, unit, goal in (
        (jsonl, "rows/s", TARGET_ROWS_S),
        (csv, "rows/s", TARGET_ROWS_S),
        (dicts, "dicts/s", TARGET_DICTS_S),
        (batches, "rows/s", TARGET_COLUMNAR_S),
        (table, "rows/s", TARGET_COLUMNAR_S),
        (parquet, "rows/s", TARGET_COLUMNAR_S),
        (api_jsonl, "rows/s", TARGET_ROWS_S),
        (api_csv, "rows/s", TARGET_ROWS_S),
        (api_parquet, "rows/s", TARGET_COLUMNAR_S),
    ):
        less = ""
        if found in (jsonl, csv, parquet):  # the command's start-up (a two-row job's wait) taken out; its CPU time
            rest = rows / found.rows_s - fixed_s
            less = f"; {rows / rest:,.0f} {unit} less its {fixed_s * 1000:.0f} ms start-up" if rest > 0 else ""
            less += f"; {found.cpu_s / rows * 1e6:.2f} CPU-s (whole command) per 1M rows"
        results.add(
            "9",
            f"download {found.name}, {rows:,} rows",
            f"{found.rows_s:,.0f} {unit}",
            f"keeps up with {found.rows_s / scoring:.1f} worker cores{less}",
            f">= {goal:,} {unit}",
            found.rows_s >= goal,
        )
    ceiling = rows / (fixed_s + rows / fetch_s + rows / write_s)
    results.add(
        "9",
        "download floors: Redis fetch alone / JSONL file write alone",
        f"{fetch_s:,.0f} / {write_s:,.0f} rows/s",
        f"with the start-up, a JSONL sentq wait -o building nothing: {ceiling:,.0f} rows/s",
    )
    results.notes.append(
        f"9: worker cores = the rate / one core's predict_proba alone in the same run ({scoring:,.0f} texts/s); "
        f"sentq wait -o is the whole command (start-up included); job.rows() iterates in the bench's process; the "
        f"API is read with httpx. The CLI's and the API's bytes are the same (JSONL sha256 {jsonl.digest[:12]}, CSV "
        f"{csv.digest[:12]})"
    )


if __name__ == "__main__":
    sys.exit(measure_alone(__doc__, measure, noop_workers=False))
