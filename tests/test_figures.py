"""What the operator is told (issue #21): an ETA from the recent pace, not from submission; no job for a submission
refused before anything was queued; a finished job's duration; words that match the job's state. Real Redis, real
workers, the real CLI; every outcome decided by the ledger, the records and the rows, never by a sleep."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from sentq import control
from sentq.settings import Settings
from tests.conftest import REPO, Worker, run_sentq, wait_until
from tests.test_faults import hooked


def job_ids(url: str) -> list[str]:
    client = redis.Redis.from_url(url)
    try:
        return sorted(raw.decode() for raw in client.zrange("sentq:jobs", 0, -1))
    finally:
        client.close()


def settings_for(url: str, **extra: str) -> Settings:
    return Settings.from_env({"SENTQ_BROKER_URL": url, "SENTQ_DATA_DIR": str(REPO / "data"), **extra})


@pytest.mark.slow
def test_eta_after_a_worker_outage_comes_from_the_recent_pace(
    own_redis_url: str, tmp_path: Path, clocks: dict[str, str]
) -> None:
    """A worker killed mid-job and none for longer than the job's own run: meanwhile the job says it waits for a
    worker (no ETA); once a new worker has scored a few chunks, the ETA shown is within 2x of the time it then takes."""
    url = own_redis_url
    chunks, size, slow_s = 60, 100, 0.1  # about 6 s of scoring on one process
    run_s = chunks * slow_s
    env = hooked(SENTQ_QUEUE="eta-q", SENTQ_TEST_SLOW=str(slow_s), **clocks)
    settings = settings_for(url, SENTQ_QUEUE="eta-q")
    src = tmp_path / "texts.txt"
    src.write_text("".join(f"a rather good text number {i}\n" for i in range(chunks * size)))

    def status() -> dict[str, Any]:
        return control.status_dict(settings, job)

    w1 = Worker(url, tmp_path / "w1.log", name="eta1@%h", env_extra=env, concurrency=1).start()
    w2 = Worker(url, tmp_path / "w2.log", name="eta2@%h", env_extra=env, concurrency=1)
    try:
        submitted = run_sentq(["submit", str(src), "--chunk-size", str(size)], url, **env)
        assert submitted.returncode == 0, submitted.stderr
        job = submitted.stdout.strip()
        wait_until(lambda: status()["chunks_done"] >= 5, 60, "a few chunks are scored")
        assert status()["eta_s"] is not None and not status()["waiting_for_worker"]
        w1.stop(signal.SIGKILL)
        stopped = time.monotonic()
        wait_until(lambda: status()["waiting_for_worker"], 30, "the job says it waits for a worker")
        said = status()
        assert said["eta_s"] is None and said["state"] == "running", said
        shown = run_sentq(["status", job], url, **env)
        assert "waiting for a worker" in shown.stdout, shown.stdout
        # No worker for longer than the whole job takes to score.
        wait_until(lambda: time.monotonic() - stopped > 1.5 * run_s, 2 * run_s, "the outage outlasts the job's run")
        w2.start()
        restarted = status()["chunks_done"]
        wait_until(lambda: status()["chunks_done"] >= restarted + 5, 60, "the new worker scored a few chunks")
        seen = status()
        read_at = time.monotonic()
        assert seen["state"] == "running" and seen["eta_s"] is not None, seen
        wait_until(lambda: status()["state"] == "done", 120, "the job is done")
        took = time.monotonic() - read_at
        ratio = seen["eta_s"] / took
        print(f"ETA {seen['eta_s']:.2f}s, took {took:.2f}s, ratio {ratio:.2f}")
        assert 0.5 <= ratio <= 2.0, (seen["eta_s"], took, seen)
        done = status()
        assert done["eta_s"] is None and not done["waiting_for_worker"]
        assert done["duration_s"] == pytest.approx(done["finished_at"] - done["created"], abs=0.01)
    finally:
        w1.stop()
        w2.stop()


def test_a_bad_file_creates_no_job_and_prints_no_id(redis_url: str, tmp_path: Path) -> None:
    """`JOB=$(sentq submit bad.csv)` captures nothing: the file is refused whole before any job exists."""
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text('id,body\n1,fine\n2,"never closed\n')
    long_text = tmp_path / "long.txt"
    long_text.write_text("fine\n" * 10 + "x" * 20_000 + "\n")
    for path, args, said in (
        (bad_csv, ["--column", "body"], "bad.csv"),
        (bad_csv, ["--column", "nope"], "nope"),
        (long_text, [], "line 11"),
    ):
        proc = run_sentq(["submit", str(path), *args], redis_url)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == "" and said in proc.stderr, (proc.stdout, proc.stderr)
    assert job_ids(redis_url) == []
    listing = run_sentq(["status"], redis_url)
    assert "invalid" not in listing.stdout and "no jobs yet" in listing.stdout, listing.stdout


def test_a_stream_refused_in_its_first_chunk_creates_no_job(redis_url: str) -> None:
    """A stream is checked as it is read: refused before its first chunk is queued, it leaves no job and no id; a bad
    line after chunks were queued leaves the job invalid, saying where (the chunks queued are accounted for)."""
    early = run_sentq(["submit", "-", "--chunk-size", "10"], redis_url, input=b"fine\nfine\n\xff bad\n")
    assert early.returncode == 2 and "line 3" in early.stderr and early.stdout == "", early
    assert job_ids(redis_url) == []
    # Past the reader's buffers (a stream is decoded by the block): chunks were queued before the bad line was read.
    late = b"".join(b"text %d\n" % i for i in range(20_000)) + b"\xff bad\n"
    proc = run_sentq(["submit", "-", "--chunk-size", "1000"], redis_url, input=late)
    assert proc.returncode == 2 and "line 20,001" in proc.stderr, proc.stderr
    (job,) = job_ids(redis_url)
    assert proc.stdout.strip() == job
    status = json.loads(run_sentq(["status", job, "--json"], redis_url).stdout)
    assert status["state"] == "invalid" and "line 20,001" in status["error"], status
    # A finished job whose input was never all read is not "still reading".
    shown = run_sentq(["status", job], redis_url).stdout
    assert "still reading" not in shown and "reading stopped" in shown, shown


def test_python_submit_of_bad_items_creates_no_job(redis_url: str, app: object) -> None:
    """`sentq.submit([1, "x"])` raises, naming the item, and leaves no job; so does a generator failing before its
    first chunk. One failing after a chunk was queued leaves its job invalid."""
    import sentq

    settings = settings_for(redis_url)
    with pytest.raises(sentq.InputError, match="line 1 is int, not str"):
        sentq.submit([1, "x"], settings=settings)  # type: ignore[list-item]

    def failing(after: int) -> Any:
        yield from ["great product"] * after
        raise ValueError("the source went away")

    with pytest.raises(ValueError, match="went away"):
        sentq.submit(failing(3), settings=settings, chunk_size=10)
    assert job_ids(redis_url) == []
    with pytest.raises(ValueError, match="went away"):
        sentq.submit(failing(20_000), settings=settings, chunk_size=1000)  # past the reader's buffers
    (job,) = job_ids(redis_url)
    assert control.status(settings, job)[0].state.value == "invalid"


def test_a_refused_upload_creates_no_job_and_frees_its_idempotency_key(api: Any, worker: Worker) -> None:
    """curl's 4xx for a body refused before anything was queued leaves no job; its Idempotency-Key is free for the
    good upload, which a retry then finds (200). A body bad after chunks were queued leaves its job, invalid."""
    import httpx

    with httpx.Client(base_url=api.url, timeout=60) as http:
        key = {"Idempotency-Key": "figures-1", "Content-Type": "text/plain"}
        bad = http.post("/v1/jobs", content=b"fine\n" + b"x" * 20_000 + b"\n", headers=key)
        assert bad.status_code == 422 and "line 2" in bad.json()["detail"] and "job" not in bad.json(), bad.text
        assert http.get("/v1/jobs").json()["jobs"] == []
        good = http.post("/v1/jobs", content=b"great product\n", headers=key)
        assert good.status_code == 202, good.text
        again = http.post("/v1/jobs", content=b"great product\n", headers=key)
        assert again.status_code == 200 and again.json()["id"] == good.json()["id"], again.text
        late = b"".join(b"text %d\n" % i for i in range(20_000)) + b"\xff bad\n"
        midway = http.post("/v1/jobs", params={"chunk_size": 1000}, content=late)
        problem = midway.json()
        assert midway.status_code == 422 and "line 20,001" in problem["detail"], midway.text
        assert http.get(f"/v1/jobs/{problem['job']}").json()["state"] == "invalid"
        done = lambda: http.get(f"/v1/jobs/{good.json()['id']}").json()["state"] == "done"  # noqa: E731
        wait_until(done, 60, "the good upload's job is done")
        assert sorted(j["state"] for j in http.get("/v1/jobs").json()["jobs"]) == ["done", "invalid"]


def test_the_terminal_bar_ends_on_the_real_total(worker: Worker, redis_url: str, tmp_path: Path) -> None:
    """`sentq submit --wait` on a terminal: the bar's counts read as the summary does (50,000/50,000), the summary
    says how long the job took, and a finished job's status gives its duration."""
    import os
    import pty
    import re
    import subprocess

    from tests.conftest import SENTQ, base_env

    src = tmp_path / "texts.txt"
    src.write_text("".join(f"a fine text {i}\n" for i in range(50_000)))
    out = tmp_path / "rows.jsonl"
    controller, terminal = pty.openpty()
    env = base_env(redis_url, COLUMNS="160", TERM="xterm")
    proc = subprocess.Popen(
        SENTQ + ["submit", str(src), "--wait", "-o", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=terminal
    )
    os.close(terminal)
    said = b""
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # the terminal's other end closed: the process is done
            break
        if not data:
            break
        said += data
    os.close(controller)
    assert proc.wait(timeout=120) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", said.decode(errors="replace"))
    assert "50,000/50,000 texts" in text, text[-2000:]
    assert "50000" not in text, text[-2000:]
    done = re.search(r"job ([0-9a-f]{12}) done: 50,000 rows to \S+ in (\d+)s \(", " ".join(text.split()))
    assert done, text[-2000:]
    shown = run_sentq(["status", done[1]], redis_url).stdout
    assert re.search(r"finished\s+\S+ \S+, \d+s after submission", shown), shown
