"""What a hostile client can send is bounded: request bodies before they are parsed or spooled (413 problem+json,
the connection closed), and a gzip bomb before it is inflated without end or staged until Redis is full."""

from __future__ import annotations

import gzip
import json
import select
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import ApiServer, run_sentq

PROBLEM = "application/problem+json"
TOKEN = "full-token-for-limits-0123456789"
MiB = 1024 * 1024


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client got into the socket before the server answered or hung up
    closed: bool  # the server closed the connection after its answer


def post_raw(
    api: ApiServer,
    path: str,
    headers: dict[str, str],
    chunks: Iterable[bytes] = (),
    *,
    chunked: bool = True,
    timeout: float = 60,
) -> Answer:
    """POST ``chunks`` (chunked transfer encoding unless a Content-Length is given) over a raw socket, sending until
    the server answers or hangs up, then read its answer to the end: what a client that keeps sending gets."""
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=30)
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{api.port}", *(f"{k}: {v}" for k, v in headers.items())]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    sock.setblocking(False)
    pieces = iter(chunks)
    pending, sent, received, closed = b"", 0, b"", False
    deadline = time.monotonic() + timeout
    more = True
    while time.monotonic() < deadline:
        want_write = [sock] if (pending or more) and not received else []
        readable, writable, _ = select.select([sock], want_write, [], 1.0)
        if readable:
            try:
                data = sock.recv(1 << 16)
            except ConnectionResetError:
                closed = True
                break
            if not data:
                closed = True
                break
            received += data
            continue
        if writable:
            if not pending:
                piece = next(pieces, None)
                if piece is None:
                    more = False
                    pending = b"0\r\n\r\n" if chunked else b""
                    if not pending:
                        continue
                else:
                    pending = (b"%x\r\n" % len(piece) + piece + b"\r\n") if chunked else piece
            try:
                n = sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                more, pending = False, b""
                continue
            sent += n
            pending = pending[n:]
    sock.close()
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1.1 "), received[:500]
    found = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    return Answer(int(status_line.split()[1]), found, body, sent, closed)


def assert_413(answer: Answer, *words: str) -> dict[str, object]:
    assert answer.status == 413, answer
    assert answer.headers["content-type"].startswith(PROBLEM), answer.headers
    assert answer.closed and answer.headers.get("connection") == "close", answer
    problem: dict[str, object] = json.loads(answer.body)
    assert problem["status"] == 413 and problem["title"]
    for word in words:
        assert word in str(problem["detail"]), problem
    return problem


def megabytes(total: int, piece: bytes = b"x" * MiB) -> Iterator[bytes]:
    for _ in range(total):
        yield piece


@pytest.fixture
def guarded_api(redis_url: str, tmp_path: Path) -> Iterator[ApiServer]:
    """An API with auth on (a request without a token may send nothing that costs it), small limits."""
    env = {
        "SENTQ_API_TOKENS": TOKEN,
        "SENTQ_API_MAX_BYTES": str(2 * MiB),
        "SENTQ_RETRAIN_MAX_BYTES": str(MiB),
        "SENTQ_MAX_TEXT_CHARS": "10",  # a /score-batch body then holds at most 100,000 x 10 characters
    }
    api = ApiServer(redis_url, tmp_path / "api.log", env_extra=env).start()
    try:
        yield api
    finally:
        api.stop()


def test_a_declared_length_over_the_limit_is_refused_before_the_body_or_auth(guarded_api: ApiServer) -> None:
    # No token, no body: the answer comes at once, from the headers alone (before the fix: the API waited for 10 GB).
    for path, words in (
        ("/score-batch", ["SENTQ_MAX_TEXT_CHARS"]),
        ("/v1/jobs", ["2,097,152 bytes", "SENTQ_API_MAX_BYTES"]),
        ("/console/submit", ["SENTQ_API_MAX_BYTES"]),
        ("/v1/retrain", ["1,048,576 bytes", "SENTQ_RETRAIN_MAX_BYTES"]),
        ("/login", ["65,536 bytes"]),
        ("/v1/models/v1/use", ["65,536 bytes"]),
    ):
        started = time.monotonic()
        answer = post_raw(guarded_api, path, {"Content-Length": str(10 * 1024**3)}, chunked=False, timeout=10)
        assert_413(answer, *words)
        assert answer.sent == 0 and time.monotonic() - started < 10, (path, answer)


@pytest.mark.parametrize(
    ("path", "content_type", "limit", "token"),
    [
        ("/score-batch", "application/json", 5 * MiB, False),  # 100,000 texts x 10 characters, in UTF-8 and JSON
        ("/console/submit", "multipart/form-data; boundary=xyz", 2 * MiB, False),
        ("/login", "application/x-www-form-urlencoded", 64 * 1024, False),
        ("/v1/retrain", "text/csv", MiB, True),  # read after auth: a client with a token that sends too much
        ("/v1/jobs", "text/plain", 2 * MiB, True),
    ],
)
def test_a_chunked_body_is_counted_as_it_arrives_and_cut_at_the_limit(
    guarded_api: ApiServer, path: str, content_type: str, limit: int, token: bool
) -> None:
    # 256 MiB offered with no Content-Length: the API reads up to its limit, answers 413 and hangs up (before the
    # fix it read all of it, parsing or spooling it to disk, and then answered 401, 400 or 422).
    part = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
    first = part if "multipart" in content_type else b"[" if "json" in content_type else b"text,label\n"
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {TOKEN}"} if token else {})}
    answer = post_raw(guarded_api, path, headers, [first, *megabytes(256, b"great\n" * (MiB // 6))])
    assert_413(answer, f"{limit:,} bytes" if path != "/score-batch" else "SENTQ_MAX_TEXT_CHARS")
    # What the client got into its socket: the limit, plus what the kernel's buffers took before the answer.
    assert answer.sent < limit + 32 * MiB, answer.sent


def test_an_answer_before_the_body_is_read_hangs_up(guarded_api: ApiServer) -> None:
    # No token: /v1/jobs and /v1/retrain answer 401 without reading the body, and then close the connection instead
    # of reading (and dropping) whatever the client goes on sending.
    for path in ("/v1/jobs", "/v1/retrain"):
        answer = post_raw(guarded_api, path, {"Content-Type": "text/csv"}, megabytes(256), timeout=30)
        assert answer.status == 401 and answer.closed and answer.headers.get("connection") == "close", answer
        assert answer.sent < 32 * MiB, answer.sent


def test_bodies_within_the_limits_still_work(guarded_api: ApiServer) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=guarded_api.url, timeout=60) as http:
        assert http.post("/score-batch", json=["great"], headers=auth).status_code == 200
        assert http.post("/score-batch", json=["great"]).status_code == 401
        reply = http.post("/v1/jobs", content=b"great\n" * 1000, headers=auth)
        assert reply.status_code == 202, reply.text
        reply = http.post("/login", data={"token": TOKEN, "next": "/"}, follow_redirects=False)
        assert reply.status_code == 303 and reply.headers["location"] == "/"


# ----- item 9: a gzip bomb -----


def write_bomb(path: Path, line: bytes, megs: int) -> int:
    """A gzip file of ``line`` repeated to ``megs`` MiB (a few tens of KiB on disk); returns its size."""
    block = line * (MiB // len(line))
    with gzip.open(path, "wb", compresslevel=9) as f:
        for _ in range(megs):
            f.write(block)
    return path.stat().st_size


def cap_memory(url: str, headroom: int) -> tuple[redis.Redis, int]:
    """Give the test's own Redis ``headroom`` bytes above what it holds now (noeviction: past it, writes fail, as a
    production Redis full of one job's input would fail every job); returns the client and its peak so far."""
    client = redis.Redis.from_url(url)
    memory = client.info("memory")
    client.config_set("maxmemory", int(memory["used_memory"]) + headroom)
    return client, int(memory["used_memory_peak"])


def staged_inputs(client: redis.Redis) -> int:
    return sum(int(client.strlen(key)) for key in client.scan_iter(match="sentq:job:*:in:*"))


def test_a_gzip_bomb_is_refused_by_the_cli_before_redis_fills(own_redis_url: str, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.txt.gz"
    assert write_bomb(bomb, b"this text is fine and it repeats\n", 96) < MiB  # 96 MiB inflated
    client, peak_before = cap_memory(own_redis_url, 24 * MiB)

    # The inflated size is capped: refused while the file is checked, nothing staged.
    proc = run_sentq(["submit", str(bomb)], own_redis_url, SENTQ_MAX_GUNZIP_BYTES=str(8 * MiB))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "bomb.txt.gz" in proc.stderr and "8,388,608 bytes" in proc.stderr and "SENTQ_MAX_GUNZIP_BYTES" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert staged_inputs(client) == 0 and client.llen("sentq") == 0

    # The job's staged bytes are capped: refused before the batch that would pass 4 MiB is written.
    proc = run_sentq(["submit", str(bomb)], own_redis_url, SENTQ_JOB_MAX_BYTES=str(4 * MiB))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "bomb.txt.gz" in proc.stderr and "4,194,304 bytes" in proc.stderr and "SENTQ_JOB_MAX_BYTES" in proc.stderr
    # The first was refused before anything was queued (no job); this one while its chunks were (an invalid job).
    listing = json.loads(run_sentq(["status", "--json"], own_redis_url).stdout)
    assert [j["state"] for j in listing] == ["invalid"]
    assert "SENTQ_JOB_MAX_BYTES" in listing[0]["error"]
    assert staged_inputs(client) == 0  # the refused job's inputs are dropped (no worker scored any)
    # Redis never held much more than the limit: 4 MiB staged, plus one batch in flight and the queue's messages.
    peak = int(client.info("memory")["used_memory_peak"])
    assert peak - peak_before < 8 * MiB, (peak, peak_before)


def test_a_gzip_bomb_upload_is_a_413_and_its_job_invalid(own_redis_url: str, tmp_path: Path) -> None:
    text_bomb = tmp_path / "bomb.txt.gz"
    write_bomb(text_bomb, b"this text is fine and it repeats\n", 96)
    # A CSV whose text column is short and whose other column is long: little is staged, much is inflated.
    csv_bomb = tmp_path / "bomb.csv.gz"
    with gzip.open(csv_bomb, "wb", compresslevel=9) as f:
        f.write(b"text,padding\n")
        row = b"ok," + b"p" * 1000 + b"\n"
        for _ in range(96):
            f.write(row * (MiB // len(row)))
    env = {"SENTQ_MAX_GUNZIP_BYTES": str(32 * MiB), "SENTQ_JOB_MAX_BYTES": str(4 * MiB)}
    api = ApiServer(own_redis_url, tmp_path / "api.log", env_extra=env).start()
    client, peak_before = cap_memory(own_redis_url, 24 * MiB)
    try:
        with httpx.Client(base_url=api.url, timeout=120) as http:
            gz = {"Content-Encoding": "gzip"}
            reply = http.post("/v1/jobs?name=bomb.txt", content=text_bomb.read_bytes(), headers=gz)
            problem = reply.json()
            assert reply.status_code == 413 and reply.headers["content-type"].startswith(PROBLEM), reply.text
            assert "bomb.txt" in problem["detail"] and "4,194,304 bytes" in problem["detail"], problem
            assert "SENTQ_JOB_MAX_BYTES" in problem["detail"], problem
            record = http.get(f"/v1/jobs/{problem['job']}").json()
            assert record["state"] == "invalid" and "SENTQ_JOB_MAX_BYTES" in record["error"], record

            csv = {**gz, "Content-Type": "text/csv"}
            reply = http.post("/v1/jobs?name=bomb.csv", content=csv_bomb.read_bytes(), headers=csv)
            problem = reply.json()
            assert reply.status_code == 413, reply.text
            assert "bomb.csv" in problem["detail"] and "33,554,432 bytes" in problem["detail"], problem
            assert "SENTQ_MAX_GUNZIP_BYTES" in problem["detail"], problem
            record = http.get(f"/v1/jobs/{problem['job']}").json()
            assert record["state"] == "invalid" and "SENTQ_MAX_GUNZIP_BYTES" in record["error"], record
        assert staged_inputs(client) == 0
        peak = int(client.info("memory")["used_memory_peak"])
        assert peak - peak_before < 8 * MiB, (peak, peak_before)
    finally:
        api.stop()


def test_retrain_data_over_its_limit_is_refused_by_the_cli_before_it_is_read(redis_url: str, tmp_path: Path) -> None:
    data = tmp_path / "labelled.csv"
    data.write_text("text,label\n" + "what a great product,positive\nawful service,negative\n" * 100)
    proc = run_sentq(["retrain", "--data", str(data)], redis_url, SENTQ_RETRAIN_MAX_BYTES="1000")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert str(data) in proc.stderr and "1,000 bytes" in proc.stderr and "SENTQ_RETRAIN_MAX_BYTES" in proc.stderr
    assert not redis.Redis.from_url(redis_url).keys("sentq:retrain-data:*")


def test_a_full_redis_is_told_as_full_not_as_unreachable(own_redis_url: str, tmp_path: Path) -> None:
    """Redis at maxmemory answers but refuses writes: the user is told it is full and how to free it, not to check
    whether the server runs (exit 3 as for any store that cannot take the job)."""
    big = tmp_path / "big.txt"
    big.write_bytes(b"this text is fine and it repeats\n" * 200_000)  # 6.6 MB
    client, _ = cap_memory(own_redis_url, 1 * MiB)
    proc = run_sentq(["submit", str(big)], own_redis_url)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "is full (maxmemory, noeviction)" in proc.stderr and "sentq forget" in proc.stderr, proc.stderr
    assert "Is the server running" not in proc.stderr and "Traceback" not in proc.stderr
    client.close()
