"""`sentq api` over real HTTP: a uvicorn subprocess, a real Redis and a real worker (tests/conftest.py)."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import ApiServer, Worker, free_port, run_sentq

PROBLEM = "application/problem+json"


def client(api: ApiServer, **kw: object) -> httpx.Client:
    return httpx.Client(base_url=api.url, timeout=60, **kw)  # type: ignore[arg-type]


def texts(n: int, *, start: int = 1) -> Iterator[bytes]:
    """n lines of text, alternately positive and negative, in 64 KiB pieces (a chunked upload)."""
    batch: list[str] = []
    for i in range(start, start + n):
        batch.append(f"{'great lovely product' if i % 2 else 'awful broken service'} {i}\n")
        if len(batch) == 2000:
            yield "".join(batch).encode()
            batch = []
    if batch:
        yield "".join(batch).encode()


def wait_state(http: httpx.Client, job: str, states: tuple[str, ...], timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, object] = http.get(f"/v1/jobs/{job}").json()
        if record["state"] in states:
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.05)


def assert_problem(reply: httpx.Response, status: int, *words: str) -> dict[str, object]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith(PROBLEM), reply.headers
    body: dict[str, object] = reply.json()
    assert body["status"] == status and body["title"] and body["detail"]
    for word in words:
        assert word in str(body["detail"]), body
    assert "Traceback" not in reply.text
    return body


def test_seed_endpoints(api: ApiServer, worker: Worker) -> None:
    with client(api) as http:
        started = time.perf_counter()
        reply = http.post("/score-batch", json=["great product", "awful service"])
        assert reply.status_code == 200 and set(reply.json()) == {"task_id"}
        assert time.perf_counter() - started < 5  # it queues; it does not wait for a worker
        task = reply.json()["task_id"]
        deadline = time.monotonic() + 30
        while not (result := http.get(f"/result/{task}").json())["ready"]:
            assert result["result"] is None and time.monotonic() < deadline
            time.sleep(0.05)
        rows = result["result"]
        assert [r["text"] for r in rows] == ["great product", "awful service"]
        assert [r["label"] for r in rows] == ["positive", "negative"]
        assert all(set(r) == {"text", "score", "label"} and round(r["score"], 4) == r["score"] for r in rows)

        assert_problem(http.get("/result/never-issued"), 404, "never issued")
        assert_problem(http.post("/score-batch", json={"texts": ["x"]}), 422, "list")
        assert_problem(http.post("/score-batch", json=["x" * 20_000]), 422, "text #1", "SENTQ_MAX_TEXT_CHARS")
        # over what one task takes in all: refused here, not queued for the worker to refuse
        assert_problem(http.post("/score-batch", json=["great product " * 700] * 900), 422, "8,000,000 one task takes")


def test_upload_200k_lines_streamed_back_in_order_and_resumed(api: ApiServer, worker: Worker) -> None:
    with client(api) as http:
        reply = http.post(
            "/v1/jobs?chunk_size=20000&name=reviews.txt", content=texts(200_000), headers={"Content-Type": "text/plain"}
        )
        assert reply.status_code == 202, reply.text
        job = reply.json()["id"]
        assert reply.headers["location"] == f"/v1/jobs/{job}"
        assert reply.json()["total_texts"] == 200_000 and reply.json()["source"] == "reviews.txt"

        seen = 0
        with http.stream("GET", f"/v1/jobs/{job}/results") as stream:
            assert stream.headers["content-type"].startswith("application/x-ndjson")
            for line in stream.iter_lines():
                row = json.loads(line)
                seen += 1
                assert row["line"] == seen
                assert row["text"].endswith(f" {seen}")
                assert row["label"] == ("positive" if seen % 2 else "negative")
        assert seen == 200_000

        # A broken download resumes from the next line, across a chunk boundary and inside a chunk.
        for first in (150_001, 123_457):
            rows = [
                json.loads(x) for x in http.get(f"/v1/jobs/{job}/results", params={"from_line": first}).iter_lines()
            ]
            assert [r["line"] for r in rows] == list(range(first, 200_001))

        csv_reply = http.get(f"/v1/jobs/{job}/results", params={"from_line": 199_999}, headers={"Accept": "text/csv"})
        assert csv_reply.headers["content-type"].startswith("text/csv")
        assert csv_reply.text.splitlines()[0] == "line,text,score,label,model"
        assert [r.split(",")[0] for r in csv_reply.text.splitlines()[1:]] == ["199999", "200000"]


def test_parquet_results_are_the_rows(api: ApiServer, worker: Worker) -> None:
    """?format=parquet streams one Parquet file: the JSONL rows, column by column; from_line resumes inside a chunk."""
    import io

    import pyarrow.parquet as pq

    with client(api) as http:
        job = http.post("/v1/jobs", params={"chunk_size": 100}, content="".join(f"text {n}\n" for n in range(1, 351)))
        job_id = job.json()["id"]
        rows = [json.loads(x) for x in http.get(f"/v1/jobs/{job_id}/results").iter_lines()]
        reply = http.get(f"/v1/jobs/{job_id}/results", params={"format": "parquet"})
        assert reply.status_code == 200 and reply.headers["content-type"] == "application/vnd.apache.parquet"
        assert pq.read_table(io.BytesIO(reply.content)).to_pylist() == rows
        part = http.get(f"/v1/jobs/{job_id}/results", params={"format": "parquet", "from_line": 123})
        assert pq.read_table(io.BytesIO(part.content)).to_pylist() == rows[122:]


def test_csv_results_neutralize_formulas_unless_raw(api: ApiServer, worker: Worker) -> None:
    import csv
    import io

    formulas = ['=HYPERLINK("http://evil.example","x")', "+1+1", "@SUM(1+1)", "fine = good"]
    with client(api) as http:
        job = http.post("/v1/jobs", content="".join(f + "\n" for f in formulas)).json()["id"]
        texts_of = {}
        for raw in (False, True):
            reply = http.get(f"/v1/jobs/{job}/results", params={"format": "csv", "raw_csv": raw})
            assert reply.status_code == 200, reply.text
            texts_of[raw] = [r["text"] for r in csv.DictReader(io.StringIO(reply.text))]
        assert texts_of[False] == ["'" + f for f in formulas[:3]] + formulas[3:]
        assert texts_of[True] == formulas


def test_a_download_that_ends_early_never_ends_clean(api: ApiServer, redis_url: str, tmp_path: Path) -> None:
    """A job cancelled before its rows are all there: JSONL results end with a problem line, CSV is cut short."""
    src = tmp_path / "t.txt"
    src.write_text("great product\n" * 30)
    job = run_sentq(["submit", str(src), "--chunk-size", "10"], redis_url, SENTQ_QUEUE="cut-nobody-q").stdout.strip()
    assert run_sentq(["cancel", job], redis_url).returncode == 0
    with client(api) as http:
        lines = http.get(f"/v1/jobs/{job}/results").text.splitlines()
        last = json.loads(lines[-1])["problem"]
        assert (last["status"], last["job"]) == (409, job) and "was cancelled" in last["detail"], lines
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(f"/v1/jobs/{job}/results", params={"format": "csv"})


def test_events_until_done(api: ApiServer, worker: Worker) -> None:
    with client(api) as http:
        job = http.post("/v1/jobs?chunk_size=5000", content=texts(60_000)).json()["id"]
        events: list[tuple[str, dict[str, object]]] = []
        with http.stream("GET", f"/v1/jobs/{job}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            kind = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
        assert events[-1][0] == "end" and events[-1][1]["state"] == "done"
        assert all(kind == "progress" for kind, _ in events[:-1])
        done = [int(str(e["texts_done"])) for _, e in events]
        assert done == sorted(done) and done[-1] == 60_000
        assert_problem(http.get("/v1/jobs/nosuchjob/events"), 404, "no job")


def test_gzip_csv_jsonl_and_idempotency(api: ApiServer, worker: Worker) -> None:
    with client(api) as http:
        body = gzip.compress(b"id,review\n1,great product\n2,awful service\n")
        reply = http.post(
            "/v1/jobs?column=review",
            content=body,
            headers={"Content-Type": "text/csv", "Content-Encoding": "gzip", "Idempotency-Key": "upload-1"},
        )
        assert reply.status_code == 202, reply.text
        job = reply.json()["id"]
        again = http.post("/v1/jobs?column=review", content=body, headers={"Content-Type": "text/csv",
                          "Content-Encoding": "gzip", "Idempotency-Key": "upload-1"})  # fmt: skip
        assert again.status_code == 200 and again.json()["id"] == job
        assert again.headers["idempotent-replayed"] == "true"
        rows = [json.loads(x) for x in http.get(f"/v1/jobs/{job}/results").iter_lines()]
        assert [(r["line"], r["text"], r["label"]) for r in rows] == [
            (2, "great product", "positive"),
            (3, "awful service", "negative"),
        ]

        lines = b'{"body": "lovely"}\n{"body": "terrible"}\n'
        job2 = http.post("/v1/jobs?field=body", content=lines, headers={"Content-Type": "application/x-ndjson"})
        assert job2.status_code == 202 and job2.json()["id"] != job
        rows = [json.loads(x) for x in http.get(f"/v1/jobs/{job2.json()['id']}/results").iter_lines()]
        assert [r["text"] for r in rows] == ["lovely", "terrible"]


def test_list_jobs_by_state_with_cursor(api: ApiServer, worker: Worker) -> None:
    with client(api) as http:
        made = [http.post("/v1/jobs", content=f"great product {i}\n".encode()).json()["id"] for i in range(5)]
        for job in made:
            wait_state(http, job, ("done",))
        http.post("/v1/jobs", content=b"x" * 20_000 + b"\n")  # refused before anything was queued: no job
        pages: list[str] = []
        cursor = None
        while True:
            page = http.get("/v1/jobs", params={"state": "done", "limit": 2} | ({"cursor": cursor} if cursor else {}))
            assert page.status_code == 200
            pages += [j["id"] for j in page.json()["jobs"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert pages == list(reversed(made))
        assert http.get("/v1/jobs", params={"state": "invalid"}).json()["jobs"] == []
        assert_problem(http.get("/v1/jobs", params={"cursor": "garbage"}), 422, "query.cursor")
        assert_problem(http.get("/v1/jobs", params={"state": "sleeping"}), 422)


def test_cancel_and_retry(redis_url: str, tmp_path: Path) -> None:
    """A job on a queue no worker consumes yet: cancel (then 409), and a failed chunk retried (then done)."""
    queue = "api-idle"
    api = ApiServer(redis_url, tmp_path / "api.log", env_extra={"SENTQ_QUEUE": queue}).start()
    try:
        with client(api) as http:
            job = http.post("/v1/jobs?chunk_size=10", content=texts(30)).json()["id"]
            assert_problem(http.delete(f"/v1/jobs/{job}"), 409, "cancel it first")
            cancelled = http.post(f"/v1/jobs/{job}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
            assert_problem(http.post(f"/v1/jobs/{job}/cancel"), 409, "already cancelled")
            assert_problem(http.post(f"/v1/jobs/{job}/retry"), 409, "cannot be retried: it was cancelled")
            assert_problem(http.post("/v1/jobs/nosuchjob/cancel"), 404, "no job")

            job = http.post("/v1/jobs?chunk_size=10", content=texts(30)).json()["id"]
            store = redis.Redis.from_url(redis_url)
            key = f"sentq:job:{job}:in:1"
            good = store.get(key)
            store.set(key, b"{not json")
            w = Worker(redis_url, tmp_path / "w.log", name="api-retry@%h", env_extra={"SENTQ_QUEUE": queue}).start()
            try:
                failed = wait_state(http, job, ("failed",))
                assert failed["chunks_failed"] == 1
                detail = http.get(f"/v1/jobs/{job}").json()
                assert "not a staged sentq chunk" in detail["failures"]["1"]
                rows = [json.loads(x)["line"] for x in http.get(f"/v1/jobs/{job}/results").iter_lines()]
                assert rows == list(range(1, 11)) + list(range(21, 31))

                store.set(key, good)
                retried = http.post(f"/v1/jobs/{job}/retry")
                assert retried.status_code == 200 and retried.json()["chunks"] == [1]
                wait_state(http, job, ("done",))
                rows = [json.loads(x)["line"] for x in http.get(f"/v1/jobs/{job}/results").iter_lines()]
                assert rows == list(range(1, 31))

                forgot = http.delete(f"/v1/jobs/{job}")
                assert forgot.status_code == 204 and not store.keys(f"sentq:job:{job}*")
                assert_problem(http.get(f"/v1/jobs/{job}"), 404, "no job")
                assert job not in [j["id"] for j in http.get("/v1/jobs").json()["jobs"]]
                assert_problem(http.delete(f"/v1/jobs/{job}"), 404, "no job")
            finally:
                w.stop()
    finally:
        api.stop()


def test_bad_uploads_are_problems(redis_url: str, tmp_path: Path) -> None:
    api = ApiServer(redis_url, tmp_path / "api.log", env_extra={"SENTQ_API_MAX_BYTES": "100000"}).start()
    try:
        with client(api) as http:
            bad = http.post(
                "/v1/jobs", content=b"fine\n" * 10 + b"\xff\xfe bad\n", headers={"Content-Type": "text/plain"}
            )
            body = assert_problem(bad, 422, "<upload>: line 11 is not valid UTF-8")
            assert "job" not in body  # refused before anything was queued: no job (an id would name nothing)
            assert body["line"] == 11  # where, for programs too
            assert_problem(http.post("/v1/jobs", content=b"x" * 20_000 + b"\n"), 422, "line 1", "SENTQ_MAX_TEXT_CHARS")
            assert_problem(http.post("/v1/jobs", content=b"\n\n"), 422, "no texts to score")
            # the web's words: query parameters, not the CLI's options
            said = assert_problem(http.post("/v1/jobs?column=text", content=b"a\n"), 400, "?column= applies to CSV/TSV")
            assert "--" not in said["detail"], said
            jsonl = {"Content-Type": "application/x-ndjson"}
            body = assert_problem(
                http.post("/v1/jobs", content=b'{"text": "ok"}\n{"txt": "no"}\n', headers=jsonl), 422, "?field="
            )
            assert (body["line"], body["field"]) == (2, "text"), body
            broken = b'{"text": "ok"}\n{"text": oops}\n'
            body = assert_problem(http.post("/v1/jobs", content=broken, headers=jsonl), 422)
            assert (body["line"], body["column"]) == (2, 10), body
            assert_problem(
                http.post("/v1/jobs", content=b"a\n", headers={"Content-Type": "image/png"}), 415, "image/png"
            )
            assert_problem(
                http.post("/v1/jobs", content=b"a\n", headers={"Content-Encoding": "br"}), 415, "Content-Encoding"
            )
            assert_problem(http.post("/v1/jobs?format=yaml", content=b"a\n"), 422)
            assert_problem(http.post("/v1/jobs", content=b"good text\n" * 20_000), 413, "SENTQ_API_MAX_BYTES")

            def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
                for _ in range(50):
                    yield b"good text\n" * 1000

            # Chunks bigger than the limit: it is passed before any chunk could be queued, so there is no job.
            body = assert_problem(http.post("/v1/jobs?chunk_size=50000", content=chunked()), 413, "100,000 bytes")
            assert "job" not in body and http.get("/v1/jobs").json()["jobs"] == []
            assert_problem(http.get("/v1/jobs/nosuchjob"), 404, "no job 'nosuchjob'")
            assert_problem(http.get("/v1/jobs/nosuchjob/results"), 404, "no job")
            assert_problem(http.post("/v1/models/v99/use"), 404, "v99 is not in the registry")
            assert_problem(http.post("/v1/models/banana/use"), 422, "path.version")
            assert_problem(http.get("/no/such/route"), 404)
            assert_problem(http.delete("/v1/jobs"), 405)
    finally:
        api.stop()


def test_redis_down_is_503_with_the_url_masked(tmp_path: Path) -> None:
    url = f"redis://:hunter2secret@127.0.0.1:{free_port()}/0"
    api = ApiServer(url, tmp_path / "api.log").start()
    try:
        with client(api) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
            for reply in (http.get("/readyz"), http.get("/v1/jobs"), http.post("/v1/jobs", content=b"a\n")):
                body = assert_problem(reply, 503, "cannot reach redis://:***@127.0.0.1")
                assert "hunter2secret" not in reply.text, body
            # a console page is a console page saying so, not the API's problem+json
            for path in ("/", "/workers", "/models", "/jobs/0123456789ab"):
                page = http.get(path)
                assert page.status_code == 503 and page.headers["content-type"].startswith("text/html"), path
                assert "sentq cannot reach its Redis" in page.text and "redis://:***@127.0.0.1" in page.text, path
                assert "hunter2secret" not in page.text
            # /metrics still answers: sentq is down, and the requests just refused are counted (this process's)
            scraped = http.get("/metrics")
            assert scraped.status_code == 200, scraped.text
            assert "sentq_up 0.0" in scraped.text and "hunter2secret" not in scraped.text
            assert 'sentq_http_requests_total{code="503",method="GET",route="/readyz"} 1.0' in scraped.text
        assert "hunter2secret" not in api.output()
    finally:
        api.stop()


def test_without_auth_only_loopback_names_are_answered(api: ApiServer, redis_url: str, tmp_path: Path) -> None:
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends Host: evil.example, and its
    Origin matches that Host; with auth off only loopback names are answered (or SENTQ_API_ALLOWED_HOSTS)."""
    with client(api) as http:
        for name in ("127.0.0.1", "localhost", "LOCALHOST"):
            assert http.get("/v1/jobs", headers={"Host": f"{name}:{api.port}"}).status_code == 200, name
        for method, path in (("GET", "/v1/jobs"), ("GET", "/"), ("POST", "/v1/jobs")):
            evil = {"Host": f"evil.example:{api.port}", "Origin": f"http://evil.example:{api.port}"}
            reply = http.request(method, path, headers=evil, content=b"great product\n")
            assert reply.status_code == 400 and "Invalid host header" in reply.text, (method, path, reply.text)
        assert json.loads(run_sentq(["status", "--json"], redis_url).stdout) == []  # nothing was submitted
    allowed = ApiServer(redis_url, tmp_path / "api.log", env_extra={"SENTQ_API_ALLOWED_HOSTS": "box.lan"}).start()
    try:
        with client(allowed) as http:
            assert http.get("/healthz", headers={"Host": f"box.lan:{allowed.port}"}).status_code == 200
            assert http.get("/healthz", headers={"Host": f"evil.example:{allowed.port}"}).status_code == 400
    finally:
        allowed.stop()


def test_auth_none_read_only_and_full(redis_url: str, worker: Worker, tmp_path: Path) -> None:
    full, read = "full-token-0123456789abcdef", "read-token-0123456789abcdef"
    api = ApiServer(redis_url, tmp_path / "api.log", env_extra={"SENTQ_API_TOKENS": f"{full},ro:{read}"}).start()
    try:
        with client(api) as http:
            missing = http.get("/v1/jobs")
            assert_problem(missing, 401, "needs a token")
            assert missing.headers["www-authenticate"].startswith("Bearer")
            wrong = http.get("/v1/jobs", headers={"Authorization": "Bearer full-token-0123456789abcdeX"})
            assert_problem(wrong, 401, "not one of SENTQ_API_TOKENS")
            assert "invalid_token" in wrong.headers["www-authenticate"]
            assert http.get("/healthz").status_code == 200 and http.get("/openapi.json").status_code == 200

            as_read = {"Authorization": f"Bearer {read}"}
            assert http.get("/v1/jobs", headers=as_read).status_code == 200
            assert http.get("/metrics", headers=as_read).status_code == 200
            for method, path in [("POST", "/v1/jobs"), ("POST", "/score-batch"), ("POST", "/v1/retrain"),
                                 ("POST", "/v1/models/1/use"), ("POST", "/v1/jobs/x/cancel"),
                                 ("POST", "/v1/jobs/x/retry")]:  # fmt: skip
                assert_problem(http.request(method, path, headers=as_read, json=["a"]), 403, "read-only")

            as_full = {"Authorization": f"Bearer {full}"}
            reply = http.post("/v1/jobs", content=b"great product\n", headers=as_full)
            assert reply.status_code == 202
            assert http.get(f"/v1/jobs/{reply.json()['id']}", headers=as_read).status_code == 200
            # A browser on another site cannot make a logged-in console act.
            cross = http.post("/v1/jobs", content=b"a\n", headers=as_full | {"Origin": "https://evil.example"})
            assert_problem(cross, 403, "origin")
            # With tokens the API answers any name it is reached by (behind a proxy, on a LAN).
            assert http.get("/healthz", headers={"Host": f"sentq.example:{api.port}"}).status_code == 200

            # The console: a login form, then a cookie.
            page = http.get("/", follow_redirects=False)
            assert page.status_code == 303 and page.headers["location"].startswith("/login")
            login = http.post("/login", data={"token": read, "next": "/"}, follow_redirects=False)
            assert login.status_code == 303 and "httponly" in login.headers["set-cookie"].lower()
            assert "Recent jobs" in http.get("/").text  # the cookie jar now carries the token
        assert full not in api.output() and read not in api.output()
    finally:
        api.stop()


def test_models_workers_retrain_and_metrics(redis_url: str, worker: Worker, tmp_path: Path) -> None:
    # Retrain goes to a queue no worker consumes: the session worker must not publish a v2 under other tests.
    api = ApiServer(redis_url, tmp_path / "api.log", env_extra={"SENTQ_RETRAIN_QUEUE": "api-retrain-idle"}).start()
    try:
        with client(api) as http:
            models = http.get("/v1/models").json()
            assert models["current"] == 1 and models["versions"][0]["version"] == 1
            used = http.post("/v1/models/v1/use").json()
            assert used["current"]["version"] == 1 and used["previous"] == 1
            queued = http.post("/v1/retrain")
            assert queued.status_code == 202 and queued.json()["queue"] == "api-retrain-idle"
            assert redis.Redis.from_url(redis_url).llen("api-retrain-idle") == 1
            labelled = "text,label\n" + "".join(
                f"lovely thing {i},positive\nhorrid thing {i},negative\n" for i in range(12)
            )
            csv_type = {"Content-Type": "text/csv"}
            shipped = http.post("/v1/retrain", content=labelled, headers=csv_type, params={"name": "mine.csv"})
            assert shipped.status_code == 202, shipped.text
            assert redis.Redis.from_url(redis_url).llen("api-retrain-idle") == 2
            bad = labelled.replace("horrid thing 0,negative", "horrid thing 0,meh")
            assert_problem(http.post("/v1/retrain", content=bad, headers=csv_type), 422, "upload.csv:3: label 'meh'")
            assert_problem(http.post("/v1/retrain", content=b"x", headers={"Content-Type": "image/png"}), 415)

            deadline = time.monotonic() + 30
            while not (found := http.get("/v1/workers").json())["workers"]:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert found["workers"][0]["name"].startswith("session@") and "sentq" in found["queues"]

            job = http.post("/v1/jobs", content=b"great product\nawful service\n").json()["id"]
            wait_state(http, job, ("done",))
            assert http.get("/static/console.js").status_code == 200  # counted under its mount, not "unmatched"
            from prometheus_client.parser import text_string_to_metric_families

            deadline = time.monotonic() + 30
            while True:  # request counts reach Redis within a second (each API process flushes its own)
                families = {f.name: f for f in text_string_to_metric_families(http.get("/metrics").text)}
                requests = {
                    (s.labels["route"], s.labels["method"], s.labels["code"]): s.value
                    for s in families["sentq_http_requests"].samples
                    if s.name == "sentq_http_requests_total"
                }
                # The upload and the status reads that followed it may reach Redis in different flushes.
                if (
                    requests.get(("/v1/jobs", "POST", "202"), 0) >= 1
                    and requests.get(("/v1/jobs/{job_id}", "GET", "200"), 0)
                    and requests.get(("/static/{path}", "GET", "200"), 0)
                ):
                    break
                assert time.monotonic() < deadline, requests
                time.sleep(0.1)

            def value(family: str, sample: str, **labels: str) -> float:
                return next(
                    s.value for s in families[family].samples if s.name == sample and labels.items() <= s.labels.items()
                )

            assert value("sentq_jobs_submitted", "sentq_jobs_submitted_total") == 1
            assert value("sentq_up", "sentq_up") == 1
            assert value("sentq_jobs_finished", "sentq_jobs_finished_total", outcome="done") == 1
            assert value("sentq_texts_scored", "sentq_texts_scored_total") == 2
            assert value("sentq_workers_online", "sentq_workers_online") >= 1
            assert value("sentq_queue_length", "sentq_queue_length", queue="api-retrain-idle") == 2
            assert requests[("/v1/jobs/{job_id}", "GET", "200")] >= 1
            assert all("host" not in s.labels and "job" not in s.labels for f in families.values() for s in f.samples)
    finally:
        api.stop()


@pytest.mark.parametrize("path", ["/", "/workers", "/models", "/docs", "/openapi.json"])
def test_pages_render(api: ApiServer, worker: Worker, path: str) -> None:
    reply = httpx.get(api.url + path, timeout=30)
    assert reply.status_code == 200 and len(reply.text) > 200


def test_upload_cut_off_midway_marks_its_job_invalid(api: ApiServer, worker: Worker) -> None:
    """A client that goes away mid-upload: its job is invalid (the chunks already queued are skipped), never stuck."""
    import socket

    body = b"".join(texts(50_000))
    head = (
        f"POST /v1/jobs?chunk_size=1000 HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", api.port)) as raw:
        raw.sendall(head + body[: len(body) // 2])
        with client(api) as http:  # wait until the job exists and has chunks queued, then hang up
            deadline = time.monotonic() + 30
            while not (found := http.get("/v1/jobs").json()["jobs"]) or found[0]["state"] == "staging":
                assert time.monotonic() < deadline, found
                time.sleep(0.02)
    with client(api) as http:
        job = found[0]["id"]
        record = wait_state(http, job, ("invalid",))
        assert "the client disconnected" in str(record["error"]), record
        assert record["total_chunks"] is None or int(str(record["total_chunks"])) < 50


def test_many_open_streams_do_not_starve_the_api(redis_url: str, tmp_path: Path) -> None:
    """100 downloads and 100 event streams of a job that waits (no worker on its queue) hold no threads: the API
    still answers everything else (the thread pool has 40)."""
    import asyncio

    api = ApiServer(redis_url, tmp_path / "api.log", env_extra={"SENTQ_QUEUE": "api-nobody"}).start()
    try:
        job = httpx.post(api.url + "/v1/jobs", content=b"great product\n", timeout=30).json()["id"]

        async def scenario() -> list[int]:
            limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
            async with httpx.AsyncClient(base_url=api.url, timeout=30, limits=limits) as http:
                opened: list[httpx.Response] = []
                try:
                    for path in [f"/v1/jobs/{job}/results"] * 100 + [f"/v1/jobs/{job}/events"] * 100:
                        reply = await http.send(http.build_request("GET", path), stream=True)
                        assert reply.status_code == 200
                        opened.append(reply)
                    answers = [await http.get(p) for p in ("/healthz", "/v1/jobs", f"/v1/jobs/{job}", "/metrics")]
                    return [a.status_code for a in answers]
                finally:
                    for reply in opened:
                        await reply.aclose()

        assert asyncio.run(scenario()) == [200, 200, 200, 200]
    finally:
        api.stop()
