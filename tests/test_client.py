"""The Python face (`sentq.submit`, `sentq.job`, `Job`): paths and iterables, against a real Redis and real workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import sentq
from sentq import control
from sentq.jobs import JobRecord, JobState
from sentq.settings import Settings
from tests.conftest import REPO, Worker


def good(i: int) -> str:
    return f"great product, I love it ({i})"


def bad(i: int) -> str:
    return f"awful service, I hate it ({i})"


@pytest.fixture
def settings(redis_url: str) -> Iterator[Settings]:
    """Settings aimed at the test Redis; this process's Celery app (which control.submit points) is put back after."""
    from sentq import worker as worker_module

    old = worker_module.settings
    yield Settings.from_env({"SENTQ_BROKER_URL": redis_url, "SENTQ_DATA_DIR": str(REPO / "data")})
    worker_module.configure(old)


def start_worker(redis_url: str, tmp_path: Path, queue: str, name: str, **env: str) -> Worker:
    return Worker(
        redis_url, tmp_path / f"{name}.log", name=f"{name}@%h", env_extra={"SENTQ_QUEUE": queue, **env}
    ).start()


def only_job(settings: Settings) -> JobRecord:
    records = control.recent(settings)
    assert len(records) == 1, records
    return records[0]


def test_columnar_faces_give_the_rows(worker: Worker, settings: Settings, redis_url: str, tmp_path: Path) -> None:
    """job.batches() / to_arrow() / to_pandas(), `sentq wait -o rows.parquet` and the API's ?format=parquet: the rows
    of job.rows(), column by column, whatever way each chunk was staged (raw lines, a blank line, padded lines, a
    CSV read as texts)."""
    import pyarrow.parquet as pq

    from tests.conftest import run_sentq

    texts = {n: "" if n % 97 == 0 else f" padded {n} " if n % 89 == 0 else good(n) if n % 3 else bad(n) for n in
             range(1, 2001)}  # fmt: skip
    src = tmp_path / "texts.txt"
    src.write_text("".join(f"{t}\n" for t in texts.values()))
    job = sentq.submit(src, chunk_size=300, settings=settings)
    expected = list(job.rows())
    assert len(expected) == 2000 - 2000 // 97
    table = job.to_arrow()
    assert table.to_pylist() == expected
    sizes = [batch.num_rows for batch in job.batches()]  # a batch a chunk of 300 texts (blank lines are not texts)
    assert sizes[:-1] == [300] * (len(sizes) - 1) and sum(sizes) == len(expected)
    frame = job.to_pandas()
    assert frame["line"].tolist() == [r["line"] for r in expected]
    assert str(frame["label"].dtype) == "category" and frame["score"].dtype == "float64"
    out = tmp_path / "rows.parquet"
    done = run_sentq(["wait", job.id, "-o", str(out)], redis_url)
    assert done.returncode == 0, done.stderr
    assert f"{len(expected):,} rows to" in done.stderr
    assert pq.read_table(out).to_pylist() == expected
    refused = run_sentq(["wait", job.id, "--out-format", "parquet"], redis_url)
    assert refused.returncode == 2 and "Parquet output goes to a file: add -o rows.parquet" in refused.stderr

    csv_src = tmp_path / "texts.csv"
    csv_src.write_text("id,body\n" + "".join(f'{n},"{good(n)}, really"\n' for n in range(1, 51)))
    from_csv = sentq.submit(csv_src, column="body", chunk_size=20, settings=settings)
    assert from_csv.to_arrow().to_pylist() == list(from_csv.rows())


def test_submit_a_path_rows_in_input_order(worker: Worker, settings: Settings, tmp_path: Path) -> None:
    """A file is read as `sentq submit` reads it; rows come back in input order, with their input lines."""
    texts = {n: "" if n % 100 == 0 else good(n) if n % 3 else bad(n) for n in range(1, 1201)}
    src = tmp_path / "texts.txt"
    src.write_text("".join(f"{t}\n" for t in texts.values()))

    job = sentq.submit(src, chunk_size=250, settings=settings)
    rows = list(job.rows())

    expected = [(n, t) for n, t in texts.items() if t]
    assert [(r["line"], r["text"]) for r in rows] == expected
    assert [r["label"] for r in rows] == ["positive" if n % 3 else "negative" for n, _ in expected]
    assert all(0.0 <= r["score"] <= 1.0 and r["model"] == "v1" for r in rows)
    record = job.wait(timeout=30)
    assert (record.state, record.source, record.format) == (JobState.DONE, str(src), "text")
    assert (record.total_texts, record.texts_done, record.blank_lines, record.total_chunks) == (1188, 1188, 12, 5)
    assert job.status() == record and job.failures() == {}
    assert repr(job) == f"<sentq.Job {job.id} on {settings.backend_url}>"


def test_submit_csv_column_as_the_cli_does(worker: Worker, settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "reviews.csv"
    src.write_text('id,body\n1,"great product"\n2,"awful\nservice"\n')
    rows = list(sentq.submit(str(src), column="body", settings=settings).rows())
    assert [(r["line"], r["text"], r["label"]) for r in rows] == [
        (2, "great product", "positive"),
        (3, "awful\nservice", "negative"),
    ]


def test_submit_a_generator_streams_it(worker: Worker, settings: Settings) -> None:
    """50,000 texts from a generator: chunks are queued while it still yields (it is never made a list); every row
    comes back once, in order, item N as line N."""
    seen_mid_way: list[JobRecord] = []

    def texts() -> Iterator[str]:
        for i in range(1, 50_001):
            if i == 45_000:
                seen_mid_way.extend(control.recent(settings, limit=1))
            yield good(i) if i % 2 else bad(i)

    job = sentq.submit(texts(), chunk_size=5000, settings=settings)

    [mid] = seen_mid_way
    assert mid.id == job.id and mid.total_chunks is None and mid.state in (JobState.QUEUED, JobState.RUNNING)
    count = 0
    for count, row in enumerate(job.rows(), 1):
        assert (row["line"], row["text"]) == (count, good(count) if count % 2 else bad(count))
    assert count == 50_000
    record = job.wait()
    assert (record.state, record.source, record.format) == (JobState.DONE, "<iterable>", "jsonl")
    assert (record.total_texts, record.texts_done, record.total_chunks) == (50_000, 50_000, 10)


def test_blank_items_are_skipped_and_counted(worker: Worker, settings: Settings) -> None:
    job = sentq.submit(["great product", "", "  \t ", "awful service", "two\nlines"], settings=settings)
    rows = list(job.rows())
    assert [(r["line"], r["text"]) for r in rows] == [(1, "great product"), (4, "awful service"), (5, "two\nlines")]
    assert [r["label"] for r in rows[:2]] == ["positive", "negative"]
    record = job.wait(timeout=30)
    assert (record.total_texts, record.blank_lines) == (3, 2)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["fine", "x" * 10_001], "<iterable>: line 2 has 10,001 characters, over the limit of 10,000"),
        (["fine", "good", b"bytes"], "<iterable>: line 3 is bytes, not str; give each text as a str (decode bytes"),
        (["fine", None], "<iterable>: line 2 is NoneType, not str"),
        (["fine", "a\ud800b"], "<iterable>: line 2 is not valid Unicode (a lone surrogate at column 2)"),
        ([], "<iterable>: no texts to score (the input is empty)"),
    ],
)
def test_bad_items_are_input_errors_naming_their_position(
    settings: Settings, items: list[object], message: str
) -> None:
    """A bad item stops the submission with an InputError naming its position; refused before anything was queued,
    it leaves no job (tests/test_figures.py: one refused after chunks were queued leaves its job invalid)."""
    with pytest.raises(sentq.InputError) as raised:
        sentq.submit(items, settings=settings)  # type: ignore[arg-type]
    assert str(raised.value).startswith(message)
    assert control.recent(settings) == []


def test_a_generator_that_raises_leaves_an_invalid_job(settings: Settings) -> None:
    """The caller's own error comes through as it is, and the job, whose first chunks were queued, does not wait for
    a producer that is gone."""

    def texts() -> Iterator[str]:
        yield from ["great product"] * 20_000  # past the reader's buffer: chunks are queued before the error
        raise ValueError("the source went away")

    with pytest.raises(ValueError, match="the source went away"):
        sentq.submit(texts(), settings=settings, chunk_size=1000)
    record = only_job(settings)
    assert record.state == JobState.INVALID
    assert "ValueError: the source went away" in record.error


def test_bad_paths_and_arguments(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(sentq.InputError, match=r"nope\.txt: no such file; check the path"):
        sentq.submit(tmp_path / "nope.txt", settings=settings)
    with pytest.raises(sentq.InputError, match="is a directory, not a file"):
        sentq.submit(str(tmp_path), settings=settings)
    with pytest.raises(sentq.ConfigError, match="--column applies to CSV/TSV input"):
        sentq.submit(tmp_path / "t.txt", column="body", settings=settings)
    with pytest.raises(sentq.ConfigError, match="SENTQ_CHUNK_SIZE must be a positive whole number, got 0"):
        sentq.submit(["great product"], chunk_size=0, settings=settings)
    with pytest.raises(TypeError, match="not bytes; decode bytes first"):
        sentq.submit(b"texts.txt", settings=settings)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes a path or an iterable of str texts, not int"):
        sentq.submit(42, settings=settings)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="column applies to a path, not to an iterable"):
        sentq.submit(["great product"], column="body", settings=settings)
    assert control.recent(settings) == []  # nothing was created for any of them


def test_reattach_by_id(worker: Worker, settings: Settings) -> None:
    job = sentq.submit(["great product", "awful service"], settings=settings)
    again = sentq.job(job.id, settings=settings)
    assert again.id == job.id
    assert again.wait(timeout=30).state == JobState.DONE
    assert [(r["line"], r["label"]) for r in again.rows()] == [(1, "positive"), (2, "negative")]
    with pytest.raises(sentq.JobNotFoundError, match="no job 'nosuchjob123': unknown id, or its records expired"):
        sentq.job("nosuchjob123", settings=settings)


def test_forget_frees_a_finished_job(worker: Worker, settings: Settings) -> None:
    job = sentq.submit(["great product", "awful service"], settings=settings)
    assert job.wait(timeout=30).state == JobState.DONE
    assert job.forget() >= 2  # at least the record and the chunk's rows
    with pytest.raises(sentq.JobNotFoundError):
        job.status()


def test_wait_timeout_then_the_job_still_finishes(settings: Settings, redis_url: str, tmp_path: Path) -> None:
    """Waiting past a timeout raises JobTimeoutError and leaves the job running: once a worker comes it finishes."""
    settings = settings.replace(queue="client-late-q")  # no worker consumes it until this test starts one
    job = sentq.submit((good(i) for i in range(100_000)), chunk_size=10_000, settings=settings)
    with pytest.raises(sentq.JobTimeoutError, match=f"job {job.id} is still running after 0.01s"):
        job.wait(timeout=0.01)
    with pytest.raises(sentq.JobTimeoutError, match=f"reattach with `sentq wait {job.id}`"):
        next(job.rows(timeout=0.01))
    record = job.status()
    assert (record.state, record.total_chunks, record.texts_done) == (JobState.QUEUED, 10, 0)

    w = start_worker(redis_url, tmp_path, "client-late-q", "late")
    try:
        record = job.wait(timeout=60)
        assert (record.state, record.texts_done, record.chunks_done) == (JobState.DONE, 100_000, 10)
        assert [r["line"] for r in job.rows()] == list(range(1, 100_001))
    finally:
        w.stop()


def test_cancel(settings: Settings) -> None:
    settings = settings.replace(queue="client-cancel-q")  # nobody consumes it: the job stays queued until cancelled
    job = sentq.submit(["great product"] * 100, chunk_size=10, settings=settings)
    assert job.status().state == JobState.QUEUED
    record = job.cancel()
    assert (record.state, record.texts_done) == (JobState.CANCELLED, 0)
    with pytest.raises(sentq.JobCancelledError, match=f"job {job.id} was cancelled \\(0 texts were scored\\)"):
        job.wait(timeout=30)
    with pytest.raises(sentq.JobCancelledError):
        list(job.rows())
    with pytest.raises(sentq.JobStateError, match=f"job {job.id} is already cancelled; there is nothing to cancel"):
        job.cancel()
    with pytest.raises(sentq.JobStateError, match=f"job {job.id} cannot be retried: it was cancelled"):
        job.retry()


def test_failed_chunk_then_retry(settings: Settings, redis_url: str, tmp_path: Path) -> None:
    """A text that makes scoring raise (tests/hooks/sitecustomize.py): wait raises JobFailedError, rows() yields every
    other row then raises, failures() names the line; with a sound worker, retry() re-runs the chunk and it is done."""
    queue = "client-poison-q"
    settings = settings.replace(queue=queue)
    hooks = {"SENTQ_TEST_POISON": "raise:POISON-TEXT", "PYTHONPATH": f"{REPO / 'tests' / 'hooks'}{os.pathsep}{REPO}"}
    texts = ["POISON-TEXT" if i == 1235 else good(i) for i in range(1, 3001)]
    poisoned = start_worker(redis_url, tmp_path, queue, "poisoned", **hooks)
    try:
        job = sentq.submit(iter(texts), chunk_size=1000, settings=settings)
        with pytest.raises(sentq.JobFailedError) as raised:
            job.wait(timeout=90)
        assert str(raised.value) == (
            f"job {job.id} finished with 1 input line failed alone (left out of the rows); "
            "job.failures() says why, job.retry() runs them again (then wait again)"
        )
        failures = job.failures()
        assert list(failures) == [1] and list(failures[1].lines) == [1235]
        assert "poisoned text 'POISON-TEXT'" in failures[1].lines[1235]
        lines = []
        with pytest.raises(sentq.JobFailedError):
            for row in job.rows():
                lines.append(row["line"])
        assert lines == [n for n in range(1, 3001) if n != 1235]
    finally:
        poisoned.stop()

    sound = start_worker(redis_url, tmp_path, queue, "sound")
    try:
        assert job.retry() == [1]
        record = job.wait(timeout=60)
        assert (record.state, record.texts_done, record.texts_failed, record.chunks_failed) == (
            JobState.DONE,
            3000,
            0,
            0,
        )
        rows = list(job.rows())
        assert [r["line"] for r in rows] == list(range(1, 3001)) and rows[1234]["text"] == "POISON-TEXT"
        assert job.failures() == {}
    finally:
        sound.stop()


def test_import_sentq_is_light() -> None:
    """`import sentq` imports no Celery, numpy or scikit-learn (nor redis); the Python face loads on first use."""
    probe = (
        "import json, sys, sentq\n"
        "heavy = ('celery', 'kombu', 'numpy', 'sklearn', 'redis', 'sentq.client')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
        "face = (sentq.submit, sentq.job, sentq.Job)\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
        "import sentq.client\n"
        "print(json.dumps([face == (sentq.client.submit, sentq.client.job, sentq.client.Job), 'submit' in dir(sentq),"
        " hasattr(sentq, 'nope')]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    before, after, face = (json.loads(line) for line in proc.stdout.splitlines())
    assert before == []
    assert after == ["redis", "sentq.client"]
    assert face == [True, True, False]
