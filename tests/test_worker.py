"""The Celery app and tasks, through a real Redis and a real `sentq worker` subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import Worker, base_env, run_sentq, wait_until


def run_python(code: str, url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter, as a user's script would, aimed at the test Redis."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=base_env(url),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_seed_snippet(worker: Worker, redis_url: str) -> None:
    proc = run_python(
        """
        import json, time
        from sentq.worker import batch_score
        started = time.perf_counter()
        rows = batch_score.delay(["great product", "awful service"]).get(timeout=10)
        print(json.dumps({"rows": rows, "ms": (time.perf_counter() - started) * 1000}))
        """,
        redis_url,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert [set(r) for r in rows] == [{"text", "score", "label"}] * 2
    assert [r["text"] for r in rows] == ["great product", "awful service"]
    assert [r["label"] for r in rows] == ["positive", "negative"]
    for r in rows:
        assert isinstance(r["score"], float) and 0 <= r["score"] <= 1
        assert round(r["score"], 4) == r["score"]
        assert (r["score"] >= 0.5) == (r["label"] == "positive")


def test_batch_score_in_process_client(worker: Worker, app: Any) -> None:
    from sentq.worker import batch_score

    rows = batch_score.delay(["I love it", "I hate it", ""]).get(timeout=10)
    assert [r["label"] for r in rows[:2]] == ["positive", "negative"]
    assert rows[2]["text"] == ""


def test_retrain_on_unchanged_data_stores_no_duplicate_version(worker: Worker, app: Any, redis_url: str) -> None:
    """The seed's call keeps its result (status "retrained", vocab_size, ...); training on the data v1 came from
    gives v1 again (training is deterministic), so nothing is stored: the result says so and names v1."""
    from sentq import registry
    from sentq.worker import batch_score, retrain

    result = retrain.delay().get(timeout=120)
    assert result["status"] == "retrained"
    assert result["vocab_size"] > 1000
    assert result["accuracy"] > 0.75
    assert (result["version"], result["unchanged"], result["current"]) == (1, True, 1)
    assert "identical (sha256) to v1" in result["reason"]
    client = app.backend.client
    assert [v.version for v in registry.versions(client)] == [1]
    assert registry.ref_version(registry.current(client)) == 1
    assert batch_score.delay(["great product"]).get(timeout=10)[0]["label"] == "positive"


def test_worker_follows_a_new_current_version(worker: Worker, app: Any) -> None:
    """A model trained on flipped labels, made current, flips the next batch's labels."""
    from sentq import registry
    from sentq.model import SentimentModel
    from sentq.worker import batch_score

    client = app.backend.client
    texts = ["good great love excellent", "bad awful hate terrible"] * 20
    flipped = SentimentModel().fit(texts, [0, 1] * 20)
    before = batch_score.delay(["great product"]).get(timeout=10)[0]["label"]
    registry.publish(
        client, flipped, metrics={"accuracy": 0.5, "n_train": 40, "n_test": 0}, source="test", make_current=True
    )
    after = batch_score.delay(["great product"]).get(timeout=10)[0]["label"]
    assert (before, after) == ("positive", "negative")


def test_celery_inspect_ping(worker: Worker, redis_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "sentq.worker", "inspect", "ping", "-t", "5"],
        env=base_env(redis_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pong" in proc.stdout


def test_plain_celery_client_sends_by_name(worker: Worker, redis_url: str) -> None:
    proc = run_python(
        f"""
        import json, sys
        from celery import Celery
        client = Celery(broker={redis_url!r}, backend={redis_url!r})
        client.conf.task_default_queue = "sentq"
        rows = client.send_task("sentq.batch_score", args=[["great product", "awful service"]]).get(timeout=10)
        assert "sentq" not in sys.modules, "the client must not import sentq"
        print(json.dumps(rows))
        """,
        redis_url,
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["label"] for r in json.loads(proc.stdout)] == ["positive", "negative"]


def test_pickle_message_is_refused_and_never_deserialized(worker: Worker, redis_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    proc = run_python(
        f"""
        import os, pickle
        from kombu import Connection, Exchange, Producer, Queue

        class Payload:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))

        with Connection({redis_url!r}) as conn:
            producer = Producer(conn.channel(), exchange=Exchange("sentq", type="direct"), routing_key="sentq")
            body = pickle.dumps(((Payload(),), {{}}, {{}}))
            producer.publish(body, content_type="application/x-python-serialize", content_encoding="binary",
                             headers={{"task": "sentq.batch_score", "id": "evil-1", "lang": "py", "argsrepr": "",
                                      "kwargsrepr": "", "origin": "test"}},
                             declare=[Queue("sentq", Exchange("sentq", type="direct"), routing_key="sentq")])
        print("sent")
        """,
        redis_url,
    )
    assert proc.returncode == 0, proc.stderr
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "evil-1" not in worker.output() and "untrusted" not in worker.output():
        time.sleep(0.2)
    assert "untrusted content" in worker.output() or "Refusing" in worker.output(), worker.output()
    assert not marker.exists()
    # and the worker still serves
    proc = run_python(
        "from sentq.worker import batch_score; print(batch_score.delay(['great product']).get(timeout=10))",
        redis_url,
    )
    assert proc.returncode == 0 and "positive" in proc.stdout, proc.stderr


@pytest.mark.parametrize("args", [["--help"], ["worker", "--help"], ["version"]])
def test_cli_help(args: list[str], redis_url: str) -> None:
    from tests.conftest import run_sentq

    proc = run_sentq(args, redis_url)
    assert proc.returncode == 0, proc.stderr
    assert "sentq" in proc.stdout.lower() or "worker" in proc.stdout.lower()


def snapshot(client: Any, pattern: str) -> dict[bytes, Any]:
    """Every key matching ``pattern`` with its content (not DUMP: a hash's DUMP order moves as Redis rehashes it)."""
    read = {
        b"hash": client.hgetall,
        b"set": client.smembers,
        b"zset": lambda key: client.zrange(key, 0, -1, withscores=True),
        b"string": client.get,
        b"list": lambda key: client.lrange(key, 0, -1),
    }
    return {key: read[client.type(key)](key) for key in client.keys(pattern)}


def test_forged_score_chunk_messages_change_nothing(worker: Worker, app: Any, redis_url: str, tmp_path: Path) -> None:
    """Messages sent by name with arguments sentq never sends (a chunk the ledger does not have, a bad id or index):
    each is refused with a log line and the finished job stays done, its rows all there."""
    import redis

    src = tmp_path / "t.txt"
    src.write_text("great product\nawful service\n")
    job = run_sentq(["submit", str(src), "--wait", "-o", str(tmp_path / "rows.jsonl")], redis_url).stderr.split()[1]
    client = redis.Redis.from_url(redis_url)
    before = snapshot(client, f"sentq:job:{job}*")
    forged = [(job, 999), (job, -1), ("not-a-job", 0), ("../../etc", 0), (job, "0"), (job, True), (job, 2**40)]
    for args in forged:
        app.send_task("sentq.score_chunk", args=list(args), queue="sentq")
    wait_until(lambda: worker.output().count("refused a sentq.score_chunk message") >= len(forged), 30, "all refused")
    assert snapshot(client, f"sentq:job:{job}*") == before
    client.close()
    status = json.loads(run_sentq(["status", job, "--json"], redis_url).stdout)
    assert (status["state"], status["chunks_failed"], status["texts_done"]) == ("done", 0, 2)


def test_batch_score_and_retrain_refuse_what_no_sentq_client_sends(worker: Worker, app: Any, redis_url: str) -> None:
    from sentq.worker import batch_score, retrain

    with pytest.raises(ValueError, match="longer than SENTQ_MAX_TEXT_CHARS"):
        batch_score.delay(["x" * 10_001]).get(timeout=30)
    with pytest.raises(ValueError, match="at most 1,000,000 texts and 8,000,000 characters"):
        batch_score.delay(["great product " * 700] * 900).get(timeout=30)
    with pytest.raises(TypeError, match="force \\(a grant from `sentq retrain --force`, or False\\)"):
        retrain.delay(force=3).get(timeout=30)
    # force only with a grant a sentq client stored in the registry: a message alone promotes nothing, trains nothing
    client = redis.Redis.from_url(redis_url)
    versions = client.hlen("sentq:model:versions")
    with pytest.raises(PermissionError, match="force must come from a sentq client"):
        retrain.delay(force=True).get(timeout=30)
    with pytest.raises(PermissionError, match="grant 0123456789abcdef0123456789abcdef is not in the registry"):
        retrain.delay(force="0123456789abcdef0123456789abcdef").get(timeout=30)
    assert client.hlen("sentq:model:versions") == versions
    assert batch_score.delay(["great product"]).get(timeout=30)[0]["label"] == "positive"


def test_a_running_request_is_counted_once() -> None:
    """Celery keeps a running request in reserved_requests as well as active_requests: counted from both, a worker
    running one task showed "busy 2" (its workers page and sentq_workers_busy)."""
    from dataclasses import dataclass
    from types import SimpleNamespace

    from sentq.worker import running_requests

    @dataclass(frozen=True)
    class Request:  # what running_requests reads of Celery's Request: its id (a Request is hashable, as here)
        id: str

    running, waiting = Request("a"), Request("b")
    state = SimpleNamespace(active_requests={running}, reserved_requests={running, waiting})
    assert sorted(r.id for r in running_requests(state)) == ["a", "b"]
