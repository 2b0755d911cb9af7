"""Jobs from the terminal: `sentq submit / wait / status / cancel / retry`, real Redis and real workers."""

from __future__ import annotations

import csv
import gzip
import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from sentq import control, jobs
from sentq.errors import JobFailedError, JobStateError
from tests.conftest import RedisServer, Worker, free_port, run_sentq, wait_until


def rows_of(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def no_work_queued(url: str, queue: str = "sentq") -> bool:
    client = redis.Redis.from_url(url)
    return client.llen(queue) == 0 and not client.keys("sentq:job:*:in:*")


def test_submit_then_wait_csv_output(worker: Worker, redis_url: str, tmp_path: Path) -> None:
    src = tmp_path / "texts.txt"
    src.write_text("great product\n\n   \nawful service\nit is fine, I guess\n")
    sub = run_sentq(["submit", str(src), "--chunk-size", "2"], redis_url)
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip()
    assert len(job) == 12 and job.isalnum()  # stdout is not a terminal: the id alone

    out = tmp_path / "rows.csv"
    waited = run_sentq(["wait", job, "-o", str(out)], redis_url)
    assert waited.returncode == 0, waited.stderr
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["line"] for r in rows] == ["1", "4", "5"]
    assert [r["text"] for r in rows] == ["great product", "awful service", "it is fine, I guess"]
    assert [r["label"] for r in rows[:2]] == ["positive", "negative"]
    assert {r["model"] for r in rows} == {"v1"}

    status = run_sentq(["status", job, "--json"], redis_url)
    assert status.returncode == 0, status.stderr
    record = json.loads(status.stdout)
    assert (record["state"], record["total_texts"], record["texts_done"]) == ("done", 3, 3)
    assert (record["total_chunks"], record["chunks_done"], record["blank_lines"]) == (2, 2, 2)
    listing = json.loads(run_sentq(["status", "--json"], redis_url).stdout)
    assert [j["id"] for j in listing] == [job]
    human = run_sentq(["status", job], redis_url)
    assert "done" in human.stdout and "3 of 3" in human.stdout


FORMULAS = ['=HYPERLINK("http://evil.example","click")', "+1+1", "-2+3", "@SUM(1+1)", "great = fine", "it's ok"]


def test_csv_output_neutralizes_formulas_unless_raw(worker: Worker, redis_url: str, tmp_path: Path) -> None:
    """OWASP's CSV-injection rule: a text a spreadsheet would run (= + - @ first) gets a leading ' in CSV output;
    --raw-csv writes it as submitted; JSONL is never changed."""
    src = tmp_path / "texts.txt"
    src.write_text("".join(text + "\n" for text in FORMULAS))
    job = run_sentq(["submit", str(src)], redis_url).stdout.strip()
    outputs = {}
    for name, extra in (("safe.csv", []), ("raw.csv", ["--raw-csv"]), ("rows.jsonl", [])):
        waited = run_sentq(["wait", job, "-o", str(tmp_path / name), *extra], redis_url)
        assert waited.returncode == 0, waited.stderr
    for name in ("safe.csv", "raw.csv"):
        with open(tmp_path / name, newline="") as f:
            outputs[name] = [r["text"] for r in csv.DictReader(f)]
    assert outputs["safe.csv"] == ["'" + t for t in FORMULAS[:4]] + FORMULAS[4:]
    assert outputs["raw.csv"] == FORMULAS
    assert [json.loads(line)["text"] for line in (tmp_path / "rows.jsonl").read_text().splitlines()] == FORMULAS


@pytest.mark.parametrize(
    ("name", "content", "args", "texts", "lines"),
    [
        (
            "q.csv",
            'id,review\n1,"great product"\n2,"awful\nservice"\n3,fine\n',
            ["--column", "review"],
            ["great product", "awful\nservice", "fine"],
            [2, 3, 5],
        ),
        ("q.tsv", "id\ttext\n1\tgreat product\n2\tawful service\n", [], ["great product", "awful service"], [2, 3]),
        (
            "q.jsonl",
            '{"body": "great product"}\n\n{"body": "awful service ☹"}\n',
            ["--field", "body"],
            ["great product", "awful service ☹"],
            [1, 3],
        ),
    ],
)
def test_formats(
    worker: Worker,
    redis_url: str,
    tmp_path: Path,
    name: str,
    content: str,
    args: list[str],
    texts: list[str],
    lines: list[int],
) -> None:
    src = tmp_path / name
    src.write_text(content)
    proc = run_sentq(["submit", str(src), "--wait", *args], redis_url)
    assert proc.returncode == 0, proc.stderr
    rows = rows_of(proc.stdout)
    assert [r["text"] for r in rows] == texts
    assert [r["line"] for r in rows] == lines


def test_gzip_and_stdin(worker: Worker, redis_url: str, tmp_path: Path) -> None:
    src = tmp_path / "t.txt.gz"
    src.write_bytes(gzip.compress(b"great product\nawful service\n"))
    proc = run_sentq(["submit", str(src), "--wait"], redis_url)
    assert proc.returncode == 0, proc.stderr
    assert [r["label"] for r in rows_of(proc.stdout)] == ["positive", "negative"]

    proc = run_sentq(["submit", "-", "--wait", "--chunk-size", "1"], redis_url, input=b"awful service\ngreat product\n")
    assert proc.returncode == 0, proc.stderr
    assert [r["label"] for r in rows_of(proc.stdout)] == ["negative", "positive"]


@pytest.mark.parametrize(
    ("name", "content", "args", "words"),
    [
        ("bad.txt", b"ok\nfine\n\xff\xfe broken\n", [], ["bad.txt", "line 3", "UTF-8"]),
        ("bad.jsonl", b'{"text": "a"}\n{"text": \n', [], ["bad.jsonl", "line 2", "JSON"]),
        ("bad.jsonl", b'{"body": "a"}\n', [], ["line 1", "text", "body", "--field"]),
        ("bad.csv", b"id,body\n1,hello\n", ["--column", "review"], ["bad.csv", "review", "body", "--column"]),
        ("bin.txt", b"\x00\x01\x02PNG" * 10, [], ["bin.txt", "binary"]),
        ("empty.txt", b"", [], ["empty.txt", "no texts"]),
        ("long.txt", b"short\n" + b"x" * 20001 + b"\n", [], ["long.txt", "line 2", "limit"]),
    ],
)
def test_bad_input_exit_2_nothing_queued(
    redis_url: str, tmp_path: Path, name: str, content: bytes, args: list[str], words: list[str]
) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    proc = run_sentq(["submit", str(src), *args], redis_url)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    for word in words:
        assert word in proc.stderr
    assert "Traceback" not in proc.stderr
    assert no_work_queued(redis_url)


def test_missing_file(redis_url: str, tmp_path: Path) -> None:
    proc = run_sentq(["submit", str(tmp_path / "nope.txt")], redis_url)
    assert proc.returncode == 2
    assert "nope.txt" in proc.stderr


def test_stdin_failing_part_way_marks_the_job_invalid(redis_url: str) -> None:
    # Past the reader's buffer: chunks were queued before the bad line was read (tests/test_figures.py: a stream
    # refused before its first chunk leaves no job).
    lines = b"".join(b"text %d\n" % i for i in range(20_000)) + b"\xff bad\n"
    proc = run_sentq(["submit", "-", "--chunk-size", "1000"], redis_url, input=lines)
    assert proc.returncode == 2
    assert "line 20,001" in proc.stderr
    listing = json.loads(run_sentq(["status", "--json"], redis_url).stdout)
    assert listing[0]["state"] == "invalid"
    assert "line 20,001" in listing[0]["error"]


def test_200k_lines_every_line_once_in_order(worker: Worker, redis_url: str, tmp_path: Path) -> None:
    src = tmp_path / "big.txt"
    with open(src, "w") as f:
        for i in range(200_000):
            f.write(f"review {i} was {'great' if i % 3 else 'awful'}\n")
    out = tmp_path / "big.jsonl"
    proc = run_sentq(["submit", str(src), "--wait", "-o", str(out), "--chunk-size", "5000"], redis_url, timeout=300)
    assert proc.returncode == 0, proc.stderr
    count = 0
    with open(out) as f:
        for i, raw in enumerate(f):
            row = json.loads(raw)
            assert row["line"] == i + 1
            assert row["text"] == f"review {i} was {'great' if i % 3 else 'awful'}"
            count += 1
    assert count == 200_000


def test_wait_timeout_exit_4_and_cancel_exit_5(redis_url: str, tmp_path: Path) -> None:
    src = tmp_path / "t.txt"
    src.write_text("great product\n" * 10)
    env = {"SENTQ_QUEUE": "nobody-listens"}
    job = run_sentq(["submit", str(src)], redis_url, **env).stdout.strip()
    waited = run_sentq(["wait", job, "--timeout", "1"], redis_url, **env)
    assert waited.returncode == 4, waited.stderr
    assert f"sentq wait {job}" in waited.stderr
    cancelled = run_sentq(["cancel", job], redis_url, **env)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stderr
    waited = run_sentq(["wait", job], redis_url, **env)
    assert waited.returncode == 5, waited.stderr


def test_cancelled_chunks_are_skipped_by_workers(redis_url: str, tmp_path: Path) -> None:
    src = tmp_path / "t.txt"
    src.write_text("great product\n" * 100)
    queue = "cancel-q"
    job = run_sentq(["submit", str(src), "--chunk-size", "10"], redis_url, SENTQ_QUEUE=queue).stdout.strip()
    run_sentq(["cancel", job], redis_url, SENTQ_QUEUE=queue)
    w = Worker(redis_url, tmp_path / "w.log", name="cancel@%h", env_extra={"SENTQ_QUEUE": queue}).start()
    try:
        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 20
        while client.llen(queue) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        record = json.loads(run_sentq(["status", job, "--json"], redis_url).stdout)
        assert record["state"] == "cancelled"
        assert record["texts_done"] == 0
    finally:
        w.stop()


def test_failed_chunk_then_retry(redis_url: str, tmp_path: Path) -> None:
    """A chunk whose input is corrupt fails with its error; the others finish; `retry` re-runs only it."""
    src = tmp_path / "t.txt"
    src.write_text("".join(f"great product {i}\n" for i in range(30)))
    queue = "retry-q"
    job = run_sentq(["submit", str(src), "--chunk-size", "10"], redis_url, SENTQ_QUEUE=queue).stdout.strip()
    client = redis.Redis.from_url(redis_url)
    key = f"sentq:job:{job}:in:1"
    good = client.get(key)
    client.set(key, b"{not json")
    w = Worker(redis_url, tmp_path / "w.log", name="retry@%h", env_extra={"SENTQ_QUEUE": queue}).start()
    try:
        waited = run_sentq(["wait", job], redis_url, SENTQ_QUEUE=queue)
        assert waited.returncode == 1, waited.stderr
        assert [r["line"] for r in rows_of(waited.stdout)] == list(range(1, 11)) + list(range(21, 31))
        assert "1 failed chunk" in waited.stderr and f"sentq retry {job}" in waited.stderr
        status = json.loads(run_sentq(["status", job, "--json"], redis_url).stdout)
        assert status["state"] == "failed" and "not a staged sentq chunk" in status["failures"]["1"]

        client.set(key, good)
        retried = run_sentq(["retry", job], redis_url, SENTQ_QUEUE=queue)
        assert retried.returncode == 0 and "1 failed chunk" in retried.stderr
        waited = run_sentq(["wait", job], redis_url, SENTQ_QUEUE=queue)
        assert waited.returncode == 0, waited.stderr
        assert [r["line"] for r in rows_of(waited.stdout)] == list(range(1, 31))
    finally:
        w.stop()


def test_retry_takes_only_a_finished_job_and_exactly_its_failed_chunks(own_redis_url: str, tmp_path: Path) -> None:
    """`retry` refuses a job whose chunks still run (a failure recorded meanwhile would be lost), a cancelled one,
    and a second retry of the same failures; an accepted one moves exactly the failed chunks back, counted once."""
    from sentq import jobs, ledger
    from sentq.settings import Settings

    src = tmp_path / "t.txt"
    src.write_text("".join(f"great product {i}\n" for i in range(30)))
    env = {"SENTQ_QUEUE": "retry-nobody-q"}  # no worker: the test moves the ledger itself
    job = run_sentq(["submit", str(src), "--chunk-size", "10"], own_redis_url, **env).stdout.strip()
    client = redis.Redis.from_url(own_redis_url)
    ledger.fail(client, job, 1, "boom")  # chunk 1 failed; chunks 0 and 2 still queued
    refused = run_sentq(["retry", job], own_redis_url, **env)
    assert refused.returncode == 2, refused.stderr
    assert "still running" in refused.stderr and f"sentq wait {job}" in refused.stderr
    assert list(ledger.failures(client, job)) == [1]  # the failure record is kept

    for index in (0, 2):  # the others finish: the job ends failed
        assert ledger.claim(client, job, index, holder="t/1").payload is not None
        assert ledger.complete(client, job, index, rows=b"", texts=10, compute_s=0.0, wait_s=0.0)
    assert jobs.get(client, job).state.value == "failed"
    seen = {int(k): v for k, v in client.hgetall(f"sentq:job:{job}:failed").items()}
    assert run_sentq(["retry", job], own_redis_url, **env).returncode == 0
    assert client.zscore(f"sentq:job:{job}:pending", "1") is not None
    record = jobs.get(client, job)
    assert (record.state.value, record.chunks_failed, record.texts_done) == ("running", 0, 20)
    # A second retry of what it saw (two operators at once) changes nothing, and is told why.
    assert ledger.reopen(client, job, seen)[0] == -2
    again = run_sentq(["retry", job], own_redis_url, **env)
    assert again.returncode == 2 and "still running" in again.stderr
    assert jobs.get(client, job).texts_done == 20 and client.hget("sentq:stats", "chunk_retries") == b"1"

    settings = Settings.from_env({"SENTQ_BROKER_URL": own_redis_url, **env})
    other = run_sentq(["submit", str(src), "--chunk-size", "10"], own_redis_url, **env).stdout.strip()
    ledger.fail(client, other, 0, "boom")
    assert run_sentq(["cancel", other], own_redis_url, **env).returncode == 0
    with pytest.raises(JobStateError, match="cannot be retried: it was cancelled"):
        control.retry(settings, other)
    assert jobs.get(client, other).state.value == "cancelled"
    client.close()


def test_broker_down_exit_3_fast(tmp_path: Path) -> None:
    src = tmp_path / "t.txt"
    src.write_text("great product\n")
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    for args in (["submit", str(src)], ["status"], ["wait", "abc"], ["workers"]):
        started = time.monotonic()
        proc = run_sentq(args, url)
        assert proc.returncode == 3, (args, proc.stderr)
        assert time.monotonic() - started < 15  # generous: interpreter start on a loaded CI box
        assert "hunter2" not in proc.stderr and "***" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_unknown_and_expired_jobs(redis_url: str, tmp_path: Path) -> None:
    proc = run_sentq(["wait", "doesnotexist"], redis_url)
    assert proc.returncode == 2 and "doesnotexist" in proc.stderr
    src = tmp_path / "t.txt"
    src.write_text("great product\n")
    job = run_sentq(["submit", str(src)], redis_url, SENTQ_RESULT_EXPIRES="1", SENTQ_QUEUE="q-exp").stdout.strip()
    time.sleep(2.2)
    proc = run_sentq(["status", job], redis_url)
    assert proc.returncode == 2 and "expired" in proc.stderr


def test_workers_lists_the_live_worker(worker: Worker, redis_url: str, tmp_path: Path) -> None:
    src = tmp_path / "t.txt"
    src.write_text("great product\n")
    assert run_sentq(["submit", str(src), "--wait"], redis_url).returncode == 0
    # The fixture flushed Redis (and the worker's heartbeat with it) before the test: it beats again within 2 s.
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 10
    while not client.zcard("sentq:workers:live") and time.monotonic() < deadline:
        time.sleep(0.05)
    proc = run_sentq(["workers", "--json"], redis_url)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    mine = [w for w in data["workers"] if w["name"].startswith("session@")]
    assert mine and mine[0]["concurrency"] == 2 and mine[0]["model"] == "v1"
    assert data["queues"]["sentq"] == 0


@pytest.mark.slow
def test_worker_reconnects_after_redis_restart(tmp_path: Path) -> None:
    """Redis (append-only, as sentq runs it) restarts between two jobs; the worker reconnects by itself."""
    server = RedisServer(tmp_path, appendonly=True)
    server.start()
    w = Worker(server.url, tmp_path / "w.log", name="restart@%h")
    try:
        w.start()
        src = tmp_path / "t.txt"
        src.write_text("great product\nawful service\n")
        assert run_sentq(["submit", str(src), "--wait"], server.url).returncode == 0
        server.stop()
        down = run_sentq(["status"], server.url)
        assert down.returncode == 3
        server.start()
        proc = run_sentq(["submit", str(src), "--wait", "--timeout", "60"], server.url)
        assert proc.returncode == 0, proc.stderr + w.output()
        assert [r["label"] for r in rows_of(proc.stdout)] == ["positive", "negative"]
    finally:
        w.stop()
        server.stop()


def test_wait_forget_frees_the_job_after_a_complete_download(worker: Worker, redis_url: str, tmp_path: Path) -> None:
    """`wait -o FILE --forget` writes every row, then frees every key of the job at once; `sentq forget` refuses a
    job that still runs; a late delivery of a forgotten job's chunk writes nothing back."""
    from sentq import ledger

    client = redis.Redis.from_url(redis_url)
    src = tmp_path / "t.txt"
    src.write_text("".join(f"great product {i}\n" for i in range(1, 2_001)))
    job = run_sentq(["submit", str(src), "--chunk-size", "500"], redis_url).stdout.strip()
    out = tmp_path / "rows.jsonl"
    waited = run_sentq(["wait", job, "-o", str(out), "--forget"], redis_url)
    assert waited.returncode == 0, waited.stderr
    assert [r["line"] for r in rows_of(out.read_text())] == list(range(1, 2_001))
    assert "since it was submitted" in waited.stderr and f"forgot job {job}" in waited.stderr
    assert client.keys(f"sentq:job:{job}*") == [] and client.zscore("sentq:jobs", job) is None
    gone = run_sentq(["status", job], redis_url)
    assert gone.returncode != 0 and "no job" in gone.stderr
    # A late delivery (a cut-off worker) of chunk 0 finds no job: nothing is written back.
    assert not ledger.complete(client, job, 0, rows=b"{}\n", texts=1, compute_s=0.1, wait_s=0.0)
    assert client.keys(f"sentq:job:{job}*") == []

    idle = {"SENTQ_QUEUE": "forget-idle"}  # no worker consumes it: the job stays queued
    queued = run_sentq(["submit", str(src)], redis_url, **idle).stdout.strip()
    refused = run_sentq(["forget", queued], redis_url, **idle)
    assert refused.returncode == 2 and f"sentq cancel {queued}" in refused.stderr
    assert run_sentq(["cancel", queued], redis_url, **idle).returncode == 0
    forgot = run_sentq(["forget", queued], redis_url, **idle)
    assert forgot.returncode == 0 and "keys freed" in forgot.stderr, forgot.stderr
    assert client.keys(f"sentq:job:{queued}*") == []
    assert run_sentq(["submit", str(src), "--forget"], redis_url).returncode == 2  # needs --wait


def test_cancel_or_forget_while_the_input_is_read_is_not_undone(redis_url: str) -> None:
    """A stream being read is cancelled (then forgotten) once its first chunk is staged (the job exists only from
    then on): the producer stops at its next flush, says so (exit 5), the job stays cancelled and out of the
    reconciler's index, and once forgotten no key of it comes back (none would expire)."""
    import subprocess

    from tests.conftest import SENTQ, base_env

    client = redis.Redis.from_url(redis_url)
    for forget in (False, True):
        producer = subprocess.Popen(
            SENTQ + ["submit", "-", "--chunk-size", "10"],
            env=base_env(redis_url, SENTQ_QUEUE="staging-q", SENTQ_STREAM_IDLE="0"),  # no flush when quiet
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert producer.stdin is not None and producer.stdout is not None
        # Past the reader's buffer (whole chunks only, no flush when quiet): chunks are staged, the job made.
        producer.stdin.write(b"great product\n" * 20_000)
        producer.stdin.flush()
        job = producer.stdout.readline().decode().strip()
        assert client.hget(f"sentq:job:{job}", "state") == b"queued"
        assert run_sentq(["cancel", job], redis_url).returncode == 0
        queued = client.llen("staging-q")
        if forget:
            assert run_sentq(["forget", job], redis_url).returncode == 0
        out, err = producer.communicate(b"awful service\n" * 100, timeout=60)
        assert producer.returncode == (2 if forget else 5), err
        assert (b"forgotten" if forget else b"cancelled while its input was being read") in err
        if forget:
            assert client.keys(f"sentq:job:{job}*") == []
        else:
            assert client.hget(f"sentq:job:{job}", "state") == b"cancelled"
            # Nothing more went out after the cancel (what did is left for the worker that takes it to drop).
            assert client.zscore("sentq:jobs:active", job) is None and client.llen("staging-q") == queued
            client.delete("staging-q")
            assert all(client.ttl(key) > 0 for key in client.keys(f"sentq:job:{job}*"))
    client.close()


def test_a_download_that_passed_a_chunk_retried_meanwhile_never_ends_clean(own_redis_url: str, tmp_path: Path) -> None:
    """The waiter left failed chunk 1 out (no rows then); before it reached the end, `retry` re-ran chunk 1 and the job
    ended done: the download must not end as if complete (the CLI would exit 0, `--forget` would free unseen rows)."""
    import numpy as np

    from sentq import follow, jobs, ledger, rows

    src, job, client = failed_by_hand(own_redis_url, tmp_path, "follow-nobody-q", "boom")
    scored = rows.pack_result("v1", rows.score_codes(np.full(10, 0.9)))

    stream = follow.follow(client, job)
    assert [r["line"] for r in map(json.loads, next(stream).splitlines())] == list(range(1, 11))
    assert [r["line"] for r in map(json.loads, next(stream).splitlines())] == list(range(21, 31))  # 1 left out
    jobs.reopen_failed(client, job)  # an operator's retry, and a worker scores chunk 1: the job ends done
    ledger.claim(client, job, 1, holder="t/1")
    assert ledger.complete(client, job, 1, rows=scored, texts=10, compute_s=0.0, wait_s=0.0)
    assert jobs.get(client, job).state.value == "done"
    with pytest.raises(JobFailedError, match=f"chunk\\(s\\) 1 of job {job} were retried while this download ran"):
        next(stream)
    client.close()


def test_a_slow_stream_keeps_its_producer_alive(redis_url: str) -> None:
    """`tail -f log | sentq submit -` at a few lines a minute: the producer's heartbeat advances by time while no
    line comes, so no follower takes it for dead (it was refreshed only when a batch was staged)."""
    import subprocess

    from tests.conftest import SENTQ, base_env

    client = redis.Redis.from_url(redis_url)
    producer = subprocess.Popen(
        SENTQ + ["submit", "-", "--chunk-size", "10"],
        env=base_env(redis_url, SENTQ_QUEUE="slow-stream-q", SENTQ_HEARTBEAT="0.2", SENTQ_HEARTBEAT_TTL="1"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert producer.stdin is not None and producer.stdout is not None
    try:
        producer.stdin.write(b"great product\n" * 3)  # then nothing for a while
        producer.stdin.flush()
        job = producer.stdout.readline().decode().strip()
        first = client.hget(f"sentq:job:{job}", "heartbeat")
        wait_until(lambda: client.hget(f"sentq:job:{job}", "heartbeat") != first, 10, "the heartbeat advances")
        out, err = producer.communicate(b"awful service\n", timeout=60)
        assert producer.returncode == 0, err
        assert client.hget(f"sentq:job:{job}", "total_texts") == b"4"
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.communicate()
        client.close()


def test_a_live_stream_is_scored_as_its_lines_arrive(worker: Worker, redis_url: str, tmp_path: Path) -> None:
    """`tail -f x | sentq submit - --wait`: lines written to a pipe that then goes quiet are queued as a short chunk
    and their rows printed while the pipe is still open (before, nothing came out until 1,000 lines or the end);
    each row once, in input order, line numbers counted across the pauses; JSONL the same."""
    import subprocess

    from tests.conftest import SENTQ, base_env

    for fmt, encode in (("text", lambda t: t), ("jsonl", lambda t: json.dumps({"text": t}))):
        errors_to = (tmp_path / f"{fmt}.err").open("wb")
        producer = subprocess.Popen(
            SENTQ + ["submit", "-", "--wait", "--format", fmt, "--out-format", "jsonl"],
            env=base_env(redis_url, SENTQ_STREAM_IDLE="0.2"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors_to,
        )
        assert producer.stdin is not None and producer.stdout is not None
        lines: queue.Queue[bytes] = queue.Queue()
        reading = threading.Thread(
            target=lambda out=producer.stdout, got=lines: [got.put(x) for x in iter(out.readline, b"")]
        )
        reading.start()
        try:
            got: list[dict[str, object]] = []
            sent = 0
            for burst in (["great product", "", "awful service"], ["fine", "terrible day"], ["love it"]):
                producer.stdin.write("".join(encode(t) + "\n" if t else "\n" for t in burst).encode())
                producer.stdin.flush()
                sent += len(burst)
                want = sum(1 for t in burst if t)
                for _ in range(want):  # the pipe stays open: these rows come only from a flush when it was quiet
                    got.append(json.loads(lines.get(timeout=60)))
                assert got[-1]["line"] == sent
            producer.stdin.close()
            assert producer.wait(timeout=60) == 0, (tmp_path / f"{fmt}.err").read_text()
            reading.join()
            assert lines.empty()
            assert [(r["line"], r["text"]) for r in got] == [
                (1, "great product"),
                (3, "awful service"),
                (4, "fine"),
                (5, "terrible day"),
                (6, "love it"),
            ]
            assert [r["label"] for r in got] == ["positive", "negative", "positive", "negative", "positive"]
        finally:
            if producer.poll() is None:
                producer.kill()
                producer.wait()
            reading.join()
            for stream in (producer.stdin, producer.stdout, errors_to):
                if stream is not None:
                    stream.close()


def test_ctrl_c_on_a_live_stream_stops_its_reading(worker: Worker, redis_url: str, tmp_path: Path) -> None:
    """Ctrl-C while `sentq submit - --wait` waits on a quiet pipe: the reading thread stops too (it would keep the
    job staging until its producer was taken for dead), the job is invalid saying why, exit 130."""
    import signal
    import subprocess

    from tests.conftest import SENTQ, base_env

    with (tmp_path / "err").open("wb") as errors_to:
        producer = subprocess.Popen(
            SENTQ + ["submit", "-", "--wait", "--out-format", "jsonl"],
            env=base_env(redis_url, SENTQ_STREAM_IDLE="0.2"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors_to,
        )
        assert producer.stdin is not None and producer.stdout is not None
        try:
            producer.stdin.write(b"great product\n")
            producer.stdin.flush()
            assert json.loads(producer.stdout.readline())["line"] == 1  # scored while the pipe is open
            producer.send_signal(signal.SIGINT)
            assert producer.wait(timeout=60) == 130
        finally:
            if producer.poll() is None:
                producer.kill()
                producer.wait()
            producer.stdin.close()
            producer.stdout.close()
    said = (tmp_path / "err").read_text()
    assert "interrupted; the rest of the input is not read" in said, said
    job = said.split()[1]
    status = json.loads(run_sentq(["status", job, "--json"], redis_url).stdout)
    assert status["state"] == "invalid" and "submission interrupted" in status["error"], status


def test_resume_a_submission_stopped_part_way(
    worker: Worker, app: Any, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A producer stopped after staging 3 of 8 chunks (Ctrl-C: the job is invalid, the inputs of its unscored chunks
    dropped): `sentq submit FILE --resume JOB` checks the staged chunks against the file, refuses another file or
    other options with the job unchanged, then stages the rest: every row once, in input order, exit 0."""
    from sentq import worker as worker_module
    from sentq.inputs import TextSource
    from sentq.settings import Settings

    src = tmp_path / "t.txt"
    src.write_text("".join(f"{'great product' if i % 3 else 'awful service'} {i}\n" for i in range(75)))
    settings = Settings.from_env({"SENTQ_BROKER_URL": redis_url, "SENTQ_CHUNK_SIZE": "10"})
    client = redis.Redis.from_url(redis_url)
    source = TextSource(str(src))
    job = jobs.create(client, settings, source=source, chunk_size=10, model_ref=None)
    sent = worker_module.publisher(settings.queue)
    calls = []

    def publish(indexes: list[int], at: float) -> None:
        sent(job, indexes, at)
        calls.append(indexes)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C would, after the third staging step

    monkeypatch.setattr(jobs, "STAGE_TEXTS", 10)  # a staging step per chunk, so the stop falls inside the file
    with pytest.raises(KeyboardInterrupt):
        jobs.stage(client, settings, job, source, chunk_size=10, publish=publish)
    assert jobs.get(client, job).state.value == "invalid" and client.hlen(f"sentq:job:{job}:digests") == 3

    short = tmp_path / "short.txt"
    short.write_text("".join(src.read_text().splitlines(keepends=True)[:20]))
    refused = run_sentq(["submit", str(short), "--resume", job], redis_url)
    assert refused.returncode == 2
    assert f"is not the input job {job} staged: it ends after 2 chunks, the job staged 3" in refused.stderr
    changed = tmp_path / "changed.txt"
    changed.write_text(src.read_text().replace("product 4\n", "product 5\n"))  # inside the staged chunk 0
    refused = run_sentq(["submit", str(changed), "--resume", job], redis_url)
    assert refused.returncode == 2 and f"is not the input job {job} staged: its chunk 0 differs" in refused.stderr
    refused = run_sentq(["submit", str(src), "--resume", job, "--chunk-size", "20"], redis_url)
    assert refused.returncode == 2 and "--chunk-size 20 is not how job" in refused.stderr
    assert jobs.get(client, job).state.value == "invalid"

    resumed = run_sentq(["submit", str(src), "--resume", job, "--wait"], redis_url)
    assert resumed.returncode == 0, resumed.stderr
    got = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert [r["line"] for r in got] == list(range(1, 76))
    assert [r["text"] for r in got] == src.read_text().splitlines()
    record = jobs.get(client, job)
    assert (record.state.value, record.total_chunks, record.total_texts, record.texts_done) == ("done", 8, 75, 75)
    again = run_sentq(["submit", str(src), "--resume", job], redis_url)
    assert again.returncode == 2 and "nothing to resume" in again.stderr
    import sentq

    with pytest.raises(JobStateError, match="nothing to resume"):  # the Python face, the same step
        sentq.submit(str(src), resume=job, settings=settings)
    client.close()


def test_resume_refuses_a_job_whose_producer_is_alive(redis_url: str) -> None:
    """Two producers of one job would stage the same chunks twice: a job whose producer still beats is refused."""
    import subprocess

    from tests.conftest import SENTQ, base_env

    producer = subprocess.Popen(
        SENTQ + ["submit", "-", "--chunk-size", "10"],
        env=base_env(redis_url, SENTQ_QUEUE="resume-alive-q", SENTQ_STREAM_IDLE="0"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert producer.stdin is not None and producer.stdout is not None
    try:
        producer.stdin.write(b"great product\n" * 20_000)  # past the reader's buffer: chunks staged, the job made
        producer.stdin.flush()
        job = producer.stdout.readline().decode().strip()
        refused = run_sentq(["submit", "-", "--resume", job], redis_url, input=b"great product\n" * 15)
        assert refused.returncode == 2 and "submission is still running" in refused.stderr, refused.stderr
        out, err = producer.communicate(b"", timeout=60)
        assert producer.returncode == 0, err
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.communicate()


def test_retry_from_the_file_restages_inputs_redis_lost(own_redis_url: str, tmp_path: Path) -> None:
    """A failed chunk whose staged input Redis lost (the last AOF second): plain `retry` says the input is gone;
    `retry --from FILE` checks every chunk against the file, stages that input again, and the chunk is pending."""
    src, job, client = failed_by_hand(own_redis_url, tmp_path, "retry-from-q", "its input is gone")
    staged = client.get(f"sentq:job:{job}:in:1")
    client.delete(f"sentq:job:{job}:in:1")
    assert jobs.get(client, job).state.value == "failed"

    lost = run_sentq(["retry", job], own_redis_url)
    assert lost.returncode == 2 and "expired" in lost.stderr
    other = tmp_path / "other.txt"
    other.write_text(src.read_text().replace("product 25", "product 26"))
    refused = run_sentq(["retry", job, "--from", str(other)], own_redis_url)
    assert refused.returncode == 2 and f"is not the input job {job} staged: its chunk 2 differs" in refused.stderr
    assert client.get(f"sentq:job:{job}:in:1") is None and jobs.get(client, job).state.value == "failed"

    retried = run_sentq(["retry", job, "--from", str(src)], own_redis_url)
    assert retried.returncode == 0, retried.stderr
    assert client.get(f"sentq:job:{job}:in:1") == staged
    assert client.zscore(f"sentq:job:{job}:pending", "1") is not None
    assert jobs.get(client, job).state.value == "running"
    client.close()


def test_a_filtered_listing_examines_a_bounded_number_of_jobs(own_redis_url: str) -> None:
    """A state filter that matches only the oldest of 3,017 jobs: each request reads at most LIST_SCAN job records
    (counted by the test's own Redis) and hands a cursor on; following the cursors reads each record once (no walk
    from the start per request) and finds it. Jobs created in the same instant (3 an instant here) are neither
    repeated nor skipped across pages, filtered or not."""
    from sentq import keys
    from sentq.settings import Settings

    client = redis.Redis.from_url(own_redis_url)
    settings = Settings.from_env({"SENTQ_BROKER_URL": own_redis_url})
    scan = 1000  # the bound a request keeps to (control.LIST_SCAN)
    n = 3 * scan + 17
    base = time.time() - 3600
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        job_id = f"{i:012x}"
        pipe.hset(keys.job(job_id), mapping={"state": "failed" if i == 0 else "done", "created": f"{base:.3f}"})
        pipe.zadd(keys.JOBS_INDEX, {job_id: base + (i // 3) / 1000})
    pipe.execute()
    newest_first = [f"{i:012x}" for i in sorted(range(n), key=lambda i: (i // 3, i), reverse=True)]

    def reads() -> int:
        calls = client.info("commandstats").get("cmdstat_hgetall", {})
        return int(calls.get("calls", 0)) if isinstance(calls, dict) else 0

    found: list[str] = []
    per_request: list[int] = []
    cursor = None
    while True:
        client.config_resetstat()
        page, cursor = control.list_jobs(settings, state="failed", limit=20, cursor=cursor)
        per_request.append(reads())
        found += [r.id for r in page]
        if cursor is None:
            break
    assert found == [f"{0:012x}"]
    assert max(per_request) <= scan, per_request
    assert sum(per_request) == n, per_request
    assert control.LIST_SCAN == scan

    for limit in (500, 7):
        listed: list[str] = []
        cursor = None
        while True:
            page, cursor = control.list_jobs(settings, limit=limit, cursor=cursor)
            listed += [r.id for r in page]
            if cursor is None:
                break
        assert listed == newest_first, limit


def test_a_download_holds_at_most_its_byte_budget(
    worker: Worker, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiter fetches the staged texts of done chunks up to FOLLOW_BYTES a poll (here 1 MiB), not a window of
    texts: 40 chunks of ~200 KB, all done before it starts, never come more than 1 MiB a poll; every row once, in
    order."""
    from sentq import follow, jobs

    budget = 1 << 20
    monkeypatch.setattr(follow, "FOLLOW_BYTES", budget, raising=False)
    src = tmp_path / "long.txt"
    src.write_text("".join(f"{i} great product " + "lovely words " * 150 + "\n" for i in range(1, 4001)))
    job = run_sentq(["submit", str(src), "--chunk-size", "100"], redis_url).stdout.strip()
    client = redis.Redis.from_url(redis_url)
    wait_until(lambda: jobs.get(client, job).state.value == "done", 120, "the job is done")
    per_poll: list[int] = []
    held = [0]

    def polled(progress: follow.Progress) -> None:
        per_poll.append(held[0])
        held[0] = 0

    lines: list[int] = []
    for chunk in follow.follow(client, job, on_progress=polled):
        for row in map(json.loads, chunk.splitlines()):
            held[0] += len(row["text"].encode())
            lines.append(row["line"])
    assert lines == list(range(1, 4001))
    assert sum(per_poll) > 20 * budget // 3  # the texts do weigh more than the budget, many times over
    assert max(per_poll) <= budget, per_poll


def failed_by_hand(url: str, tmp_path: Path, queue: str, why: str) -> tuple[Path, str, redis.Redis]:
    """A job of 30 texts in 3 chunks on ``queue`` (nobody consumes it), chunks 0 and 2 scored and chunk 1 failed by
    hand through the ledger's own steps: the job is failed. Returns its input, its id and a client."""
    import numpy as np

    from sentq import ledger, rows

    src = tmp_path / "t.txt"
    src.write_text("".join(f"great product {i}\n" for i in range(30)))
    job = run_sentq(["submit", str(src), "--chunk-size", "10"], url, SENTQ_QUEUE=queue).stdout.strip()
    client = redis.Redis.from_url(url)
    scored = rows.pack_result("v1", rows.score_codes(np.full(10, 0.9)))
    for index in (0, 2):
        ledger.claim(client, job, index, holder="t/1")
        assert ledger.complete(client, job, index, rows=scored, texts=10, compute_s=0.0, wait_s=0.0)
    ledger.fail(client, job, 1, why)
    assert jobs.get(client, job).state.value == "failed"
    return src, job, client


def test_failures_are_grouped_by_reason_with_advice() -> None:
    """A job's failed chunks by reason, the biggest group first, with what to do where sentq knows (a refused model
    cannot be helped by retrying; a lost input is staged again with --from); lines that failed alone are counted."""
    from sentq import ledger

    refused = "ModelError: model v2 is refused and no other version in the registry verifies"
    failed = {
        4: ledger.Failure("ValueError: bad"),
        1: ledger.Failure(refused),
        7: ledger.Failure(refused, lines={70: "x", 71: "y"}),
        9: ledger.Failure("KeyError: the rows of chunk 9 are lost: the chunk's staged texts are gone"),
    }
    groups = jobs.group_failures(failed)
    assert [(g.reason, g.chunks, g.lines) for g in groups] == [
        (refused, [1, 7], 2),
        ("ValueError: bad", [4], 0),
        (failed[9].error, [9], 0),
    ]
    assert "retrying cannot help" in groups[0].advice and groups[1].advice == ""
    assert "--from FILE" in groups[2].advice
