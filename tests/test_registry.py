"""The model lifecycle: registry commands, workers following it, pinned jobs, retrain with data, promotion guard,
tampered artifacts, export/import; against a real Redis and real `sentq worker` subprocesses."""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from sentq import dataset, keys, registry
from sentq.errors import ConfigError, DatasetMissingError, InputError, ModelError
from sentq.lifecycle import read_labelled
from sentq.model import SentimentModel, train
from tests.conftest import REPO, RedisServer, Worker, run_sentq

POSITIVE = "good great love excellent wonderful happy superb".split()
NEGATIVE = "bad awful hate terrible horrible sad poor".split()
FILLER = "the a product service movie it was is".split()


def rows_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def labelled(n: int = 200, *, seed: int = 1, shuffle_labels: bool = False) -> list[tuple[str, str]]:
    """Easy synthetic training data (a model learns it perfectly), or the same texts with random labels."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.sample(POSITIVE if i % 2 else NEGATIVE, 3) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        label = rng.choice(["positive", "negative"]) if shuffle_labels else ("positive" if i % 2 else "negative")
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("text,label\n" + "".join(f'"{t}",{label}\n' for t, label in rows))
    return path


def flipped_model(*extra: str) -> SentimentModel:
    """A model that calls positive words negative (so a switch to it is visible in the labels)."""
    texts = ["good great love excellent", "bad awful hate terrible", *extra] * 20
    labels = ([0, 1] + [0] * len(extra)) * 20
    return SentimentModel().fit(texts, labels)


def publish(client: redis.Redis, model: SentimentModel, *, current: bool = False) -> registry.ModelVersion:
    metrics: dict[str, float | int] = {"accuracy": 0.5, "n_train": 40, "n_test": 0}
    return registry.publish(client, model, metrics=metrics, source="test", make_current=current)


def current_version(url: str) -> int:
    ref = registry.current(redis.Redis.from_url(url))
    assert ref is not None
    return registry.ref_version(ref)


# Validation of `--data` files (no Redis needed).


def test_read_labelled_csv_and_jsonl(tmp_path: Path) -> None:
    rows = labelled(40)
    csv_path = tmp_path / "d.csv"
    csv_path.write_text(
        '\ufefflabel,TEXT\n"1","multi\nline great"\n'
        + "".join(f'{label.upper()},"{t}"\n' for t, label in rows)
        + "\n0,plain bad\n"
    )
    ds = read_labelled(csv_path, max_chars=1000)
    assert ds.texts[0] == "multi\nline great" and ds.labels[:3] == [
        1,
        *[1 if r[1] == "positive" else 0 for r in rows[:2]],
    ]
    assert len(ds.texts) == 42 and ds.labels[-1] == 0 and ds.source.startswith("d.csv (42 texts, sha256 ")
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"text": t, "label": 1 if lab == "positive" else 0}) + "\n\n" for t, lab in rows)
    )
    assert read_labelled(jsonl, max_chars=1000).labels == [1 if r[1] == "positive" else 0 for r in rows]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.csv", 'text,label\n"ok text",positive\n"multi\nline",maybe\n', "a.csv:3: label 'maybe'"),
        ("b.csv", "body,sentiment\nx,1\n", "b.csv:1: the header must name the columns text and label"),
        ("c.jsonl", '{"text": "x", "label": 1}\n{"text": "y", "label": "meh"}\n', "c.jsonl:2: label 'meh'"),
        ("d.jsonl", '{"text": "x", "label": 1}\n{oops\n', "d.jsonl:2: malformed JSON"),
        ("e.jsonl", '{"text": "x", "label": true}\n', "e.jsonl:1: label True"),
        ("f.csv", "text,label\n" + "great,1\n" * 30, "30 positive and 0 negative"),
        ("g.csv", "", "g.csv: the file is empty"),
        ("h.csv", 'text,label\n"",1\n', "h.csv:2: the text is empty"),
        ("i.csv", "text,label\n" + "x" * 101 + ",1\n", "i.csv:2: text of 101 characters is over the limit"),
    ],
)
def test_read_labelled_errors_name_file_and_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=message.replace("(", r"\(")) as info:
        read_labelled(path, max_chars=100)
    assert str(path) in str(info.value)


def test_bad_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_bytes(b"text,label\ngood,1\n\xff\xfe,0\n")
    with pytest.raises(InputError, match=r"u.csv:3: not valid UTF-8"):
        read_labelled(path, max_chars=100)


def test_promotion_guard_rules() -> None:
    cur = registry.ModelVersion(3, 0.0, "s", 10, 10, 0.80, 5, "ab" * 32, 1)
    assert registry.judge(0.90, None, margin=0.02, force=False).promoted
    assert registry.judge(0.78, cur, margin=0.02, force=False).promoted  # exactly at the margin
    refused = registry.judge(0.7799, cur, margin=0.02, force=False)
    assert not refused.promoted and "v3 stays current" in refused.reason and "0.0201 below" in refused.reason
    assert registry.judge(0.10, cur, margin=0.02, force=True).promoted
    assert registry.parse_version("v12") == registry.parse_version(" 12 ") == 12
    for bad in ("0", "v", "x3", "-1"):
        with pytest.raises(ConfigError):
            registry.parse_version(bad)


# The registry through the CLI, with the worker following it.


def test_publish_list_show_use_and_the_worker_follows(worker: Worker, app: Any, redis_url: str) -> None:
    from sentq.worker import batch_score

    client = app.backend.client
    v2 = publish(client, flipped_model())
    listed = json.loads(run_sentq(["model", "list", "--json"], redis_url).stdout)
    assert [(v["version"], v["current"]) for v in listed] == [(1, True), (2, False)]
    assert listed[0]["accuracy"] > 0.75 and listed[0]["vocab_size"] > 1000 and listed[0]["n_train"] > 10_000
    assert listed[1]["sha256"] == v2.sha256 and listed[1]["source"] == "test"
    human = run_sentq(["model", "list"], redis_url)
    assert human.returncode == 0 and " *  v1 " in human.stdout, human.stdout
    shown = run_sentq(["model", "show", "v2"], redis_url)
    assert shown.returncode == 0, shown.stderr
    assert v2.sha256 in shown.stdout and "artifact: ok" in shown.stdout
    assert batch_score.delay(["great product"]).get(timeout=10)[0]["label"] == "positive"

    used = run_sentq(["model", "use", "2"], redis_url)
    assert used.returncode == 0 and "v2 is current (was v1)" in used.stderr, used.stderr
    # The worker checks the current version before its next task: no restart, no delay.
    assert batch_score.delay(["great product"]).get(timeout=10)[0]["label"] == "negative"
    job = run_sentq(["submit", "-", "--wait"], redis_url, input=b"great product\n")
    assert job.returncode == 0, job.stderr
    assert [(r["label"], r["model"]) for r in rows_of(job.stdout)] == [("negative", "v2")]

    rolled_back = run_sentq(["model", "use", "v1"], redis_url)
    assert rolled_back.returncode == 0 and "v1 is current (was v2)" in rolled_back.stderr
    assert batch_score.delay(["great product"]).get(timeout=10)[0]["label"] == "positive"
    job = run_sentq(["submit", "-", "--wait"], redis_url, input=b"great product\n")
    assert [(r["label"], r["model"]) for r in rows_of(job.stdout)] == [("positive", "v1")]

    missing = run_sentq(["model", "use", "9"], redis_url)
    assert missing.returncode == 2 and "v9 is not in the registry (known: v1, v2)" in missing.stderr


@pytest.mark.slow
def test_a_job_pinned_to_v1_keeps_v1_while_v2_is_published(redis_url: str, tmp_path: Path) -> None:
    """Submitted while v1 was current, queued while v2 became current: every row is scored by v1."""
    queue = "pinned-q"
    src = tmp_path / "t.txt"
    src.write_text("great product\nawful service\n" * 30)
    job = run_sentq(["submit", str(src), "--chunk-size", "10"], redis_url, SENTQ_QUEUE=queue).stdout.strip()
    client = redis.Redis.from_url(redis_url)
    publish(client, flipped_model(), current=True)
    w = Worker(redis_url, tmp_path / "w.log", name="pinned@%h", env_extra={"SENTQ_QUEUE": queue}).start()
    try:
        waited = run_sentq(["wait", job], redis_url)
        assert waited.returncode == 0, waited.stderr
        rows = rows_of(waited.stdout)
        assert len(rows) == 60 and {r["model"] for r in rows} == {"v1"}
        assert [r["label"] for r in rows[:2]] == ["positive", "negative"]
        # the same worker scores a job submitted now with v2
        later = run_sentq(["submit", "-", "--wait"], redis_url, input=b"great product\n", SENTQ_QUEUE=queue)
        assert [(r["label"], r["model"]) for r in rows_of(later.stdout)] == [("negative", "v2")]
    finally:
        w.stop()


# Retrain.


def test_retrain_with_data_good_file_and_bad_label(worker: Worker, redis_url: str, tmp_path: Path) -> None:
    bad_rows = labelled(40)
    bad = write_csv(tmp_path / "bad.csv", bad_rows[:6] + [("so so", "neutral")] + bad_rows[6:])
    refused = run_sentq(["retrain", "--data", str(bad), "--wait"], redis_url)
    assert refused.returncode == 2, refused.stderr
    assert f"{bad}:8: label 'neutral' is not positive/negative or 1/0" in refused.stderr
    assert not redis.Redis.from_url(redis_url).keys("sentq:retrain-data:*")

    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in labelled(200)))
    done = run_sentq(["retrain", "--data", str(good), "--wait", "--json"], redis_url)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["status"], result["version"], result["promoted"], result["previous"]) == ("retrained", 2, True, 1)
    assert result["accuracy"] == 1.0 and (result["n_train"], result["n_test"]) == (160, 40)
    assert result["source"].startswith("good.jsonl (200 texts")
    assert "retrained v2: held-out accuracy 1.0000" in done.stderr and "it is current" in done.stderr
    assert current_version(redis_url) == 2
    assert not redis.Redis.from_url(redis_url).keys("sentq:retrain-data:*")  # used up, not left for a day
    shown = json.loads(run_sentq(["model", "show", "2", "--json"], redis_url).stdout)
    assert shown["current"] and shown["source"] == result["source"] and shown["artifact"].startswith("ok")


def test_guarded_promotion_stores_a_worse_model_aside_unless_forced(
    worker: Worker, redis_url: str, tmp_path: Path
) -> None:
    noisy = write_csv(tmp_path / "noisy.csv", labelled(200, shuffle_labels=True))
    aside = run_sentq(["retrain", "--data", str(noisy), "--wait", "--json"], redis_url)
    assert aside.returncode == 0, aside.stderr
    result = json.loads(aside.stdout)
    assert (result["version"], result["promoted"], result["current"]) == (2, False, 1)
    assert result["accuracy"] < result["previous_accuracy"] - 0.02
    assert "more than the promotion margin 0.02" in result["reason"] and "v1 stays current" in result["reason"]
    assert "NOT made current" in aside.stderr and "sentq model use 2" in aside.stderr
    assert current_version(redis_url) == 1
    assert [v["version"] for v in json.loads(run_sentq(["model", "list", "--json"], redis_url).stdout)] == [1, 2]

    forced = run_sentq(["retrain", "--data", str(noisy), "--wait", "--force", "--json"], redis_url)
    assert forced.returncode == 0, forced.stderr
    result = json.loads(forced.stdout)
    assert (result["version"], result["promoted"], result["current"]) == (3, True, 3)
    assert result["reason"].startswith("forced")
    assert current_version(redis_url) == 3
    assert not redis.Redis.from_url(redis_url).keys("sentq:force-grant:*")  # one grant, one forced retrain


def test_retrain_without_wait_prints_the_task_id(worker: Worker, app: Any, redis_url: str) -> None:
    queued = run_sentq(["retrain", "--json"], redis_url)
    assert queued.returncode == 0, queued.stderr
    task_id = json.loads(queued.stdout)["task_id"]
    result = app.AsyncResult(task_id).get(timeout=60)
    assert (result["status"], result["version"], result["unchanged"]) == ("retrained", 1, True)  # v1's own data
    assert result["vocab_size"] > 1000 and result["accuracy"] > 0.75
    waited = run_sentq(["retrain", "--wait"], redis_url)
    assert waited.returncode == 0, waited.stderr
    assert "identical (sha256) to v1, the current version; nothing new stored" in waited.stderr


# Bad artifacts.


def test_tampered_artifact_is_refused_and_the_worker_keeps_serving(
    worker: Worker, app: Any, redis_url: str, tmp_path: Path
) -> None:
    from sentq.worker import batch_score

    client = app.backend.client
    bad = publish(client, flipped_model(uuid.uuid4().hex))  # a model no other test loads (unique sha256)
    key = f"sentq:model:{bad.version}:artifact"
    artifact = bytearray(client.get(key))
    artifact[len(artifact) // 2] ^= 0xFF
    client.set(key, bytes(artifact))

    shown = run_sentq(["model", "show", "2"], redis_url)
    assert shown.returncode == 0 and "artifact: REFUSED" in shown.stdout, shown.stdout
    used = run_sentq(["model", "use", "2"], redis_url)
    assert used.returncode == 2 and "corrupt" in used.stderr, used.stderr
    assert current_version(redis_url) == 1
    exported = run_sentq(["model", "export", "2", str(tmp_path / "x.sentq")], redis_url)
    assert exported.returncode == 2 and not (tmp_path / "x.sentq").exists()

    # Tampered after it was made current (e.g. by hand in Redis): workers refuse it and keep serving with v1.
    client.set("sentq:model:current", bad.ref)
    rows = batch_score.delay(["great product", "awful service"]).get(timeout=10)
    assert [r["label"] for r in rows] == ["positive", "negative"]
    deadline = time.monotonic() + 5
    while f"refusing model v{bad.ref}" not in worker.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"refusing model v{bad.ref}" in worker.output()
    # A job pinned to the bad version fails its chunks with the reason, instead of scoring with another model.
    pinned = run_sentq(["submit", "-", "--model", "2", "--wait"], redis_url, input=b"great product\n")
    assert pinned.returncode == 1, pinned.stderr
    record = json.loads(run_sentq(["status", "--json"], redis_url).stdout)[0]
    assert record["chunks_failed"] == 1
    failure = json.loads(run_sentq(["status", record["id"], "--json"], redis_url).stdout)["failures"]["0"]
    assert "ModelError" in failure and "corrupt" in failure
    assert batch_score.delay(["great product"]).get(timeout=10)[0]["label"] == "positive"


def test_an_artifact_swapped_for_another_model_fails_the_sha256_check(redis_url: str) -> None:
    """A well-formed model that is not the one the metadata describes is refused too."""
    client = redis.Redis.from_url(redis_url)
    v2 = publish(client, flipped_model("swap"))
    client.set(f"sentq:model:{v2.version}:artifact", client.get("sentq:model:1:artifact"))
    with pytest.raises(ModelError, match="does not match its recorded sha256"):
        registry.load(client, v2.version)


# Moving models between installations.


def test_export_import_round_trip(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "v1.sentq"
    exported = run_sentq(["model", "export", "v1", str(path)], redis_url)
    assert exported.returncode == 0, exported.stderr
    source_meta = registry.get(redis.Redis.from_url(redis_url), 1)

    other = RedisServer(tmp_path / "other-redis")
    other.directory.mkdir()
    other.start()
    try:
        imported = run_sentq(["model", "import", str(path)], other.url)
        assert imported.returncode == 0, imported.stderr
        assert f"imported {path} as v1" in imported.stderr and "it is current" in imported.stderr
        there = json.loads(run_sentq(["model", "show", "1", "--json"], other.url).stdout)
        assert there["sha256"] == source_meta.sha256 and there["accuracy"] == source_meta.accuracy
        assert there["current"] and there["artifact"].startswith("ok")
        assert "(imported: v1 of another registry)" in there["source"]
        again = run_sentq(["model", "import", str(path)], other.url)
        assert again.returncode == 0 and "already in the registry as v1" in again.stderr
        # the imported model scores exactly like the original
        texts = ["great product", "awful service", "meh"]
        a = registry.load(redis.Redis.from_url(redis_url), 1).predict_proba(texts)
        b = registry.load(other.client(), 1).predict_proba(texts)
        assert a.tolist() == b.tolist()
    finally:
        other.stop()

    junk = tmp_path / "junk.sentq"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    refused = run_sentq(["model", "import", str(junk)], redis_url)
    assert refused.returncode == 2 and "not a readable `sentq model export` file" in refused.stderr
    missing = run_sentq(["model", "import", str(tmp_path / "nope.sentq")], redis_url)
    assert missing.returncode == 2 and "nope.sentq: cannot read it" in missing.stderr


# Bootstrapping on a fresh installation whose worker has no data files (an installed wheel, not a checkout).


@pytest.fixture
def empty_db(redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A database of the session Redis that no worker uses, empty, and settings with an empty data dir."""
    from sentq.settings import Settings

    url = f"redis://127.0.0.1:{redis_server.port}/7"
    client = redis.Redis.from_url(url)
    client.flushdb()
    monkeypatch.setattr(registry, "_fetch_failed", None)
    # A small slice trains in well under a second; what is tested here is where the data comes from.
    monkeypatch.setattr(registry, "train_on", lambda ds: train(ds.texts[::10], ds.labels[::10], lexicon=ds.lexicon))
    yield client, Settings.from_env({"SENTQ_BROKER_URL": url, "SENTQ_DATA_DIR": str(tmp_path / "data")})
    client.flushdb()
    client.close()


def put_files(data_dir: Path) -> Path:
    (data_dir / dataset.SUBDIR).mkdir(parents=True, exist_ok=True)
    for name in dataset.FILE_SHA256:
        shutil.copy2(REPO / "data" / dataset.SUBDIR / name, data_dir / dataset.SUBDIR / name)
    return data_dir / dataset.SUBDIR


def test_bootstrap_fetches_the_default_data_when_it_is_nowhere(
    empty_db: tuple[redis.Redis, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, settings = empty_db
    calls: list[tuple[Path, float | None]] = []

    def download(data_dir: Path, *, sdist: Path | None = None, network_timeout_s: float | None = None) -> Path:
        calls.append((data_dir, network_timeout_s))
        return put_files(data_dir)  # what a successful download leaves

    monkeypatch.setattr(dataset, "fetch", download)
    ref = registry.ensure_current(client, settings)
    assert registry.ref_version(ref) == 1
    assert calls == [(settings.data_dir, registry.FETCH_NETWORK_TIMEOUT_S)]  # bounded: it runs under the lock
    assert registry.stored_default_dataset(client) == dataset.load_dataset(REPO / "data")  # shared with other hosts
    assert client.get(keys.MODEL_BOOTSTRAP_LOCK) is None
    assert registry.ensure_current(client, settings) == ref and len(calls) == 1


def test_bootstrap_without_network_names_data_fetch_and_uses_files_as_soon_as_they_appear(
    empty_db: tuple[redis.Redis, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, settings = empty_db
    calls: list[Path] = []

    def offline(data_dir: Path, **_: Any) -> Path:
        calls.append(data_dir)
        raise DatasetMissingError("`pip download vaderSentiment==3.3.2` failed (exit 1): ERROR: No matching ...")

    monkeypatch.setattr(dataset, "fetch", offline)
    for _ in range(2):
        with pytest.raises(DatasetMissingError) as info:
            registry.ensure_current(client, settings)
        message = str(info.value)
        assert "could not fetch it: `pip download" in message and str(settings.data_dir) in message
        assert (
            "`sentq data fetch`" in message and "sentq data fetch --upload" in message and "make setup" not in message
        )
        assert client.get(keys.MODEL_BOOTSTRAP_LOCK) is None and registry.current(client) is None
    assert len(calls) == 1  # the second chunk does not run pip again for FETCH_RETRY_S
    put_files(settings.data_dir)  # `sentq data fetch` (or a copy) puts the files there: used at once
    assert registry.ref_version(registry.ensure_current(client, settings)) == 1
    assert len(calls) == 1


# Retention: what the registry keeps.


@pytest.mark.slow
def test_retention_keeps_the_newest_the_current_and_the_pinned_versions(
    worker: Worker, app: Any, redis_url: str
) -> None:
    """40 retrains on a worker with the default SENTQ_MODEL_KEEP (30) leave the 30 newest versions and v1, which a
    finished job is pinned to (it may be retried): artifacts and metadata alike; the current one serves."""
    from sentq.worker import batch_score, retrain

    client = redis.Redis.from_url(redis_url)
    pinned = run_sentq(["submit", "-"], redis_url, input=b"great product\n", SENTQ_QUEUE="parked").stdout.strip()
    assert run_sentq(["cancel", pinned], redis_url, SENTQ_QUEUE="parked").returncode == 0
    assert not client.zscore(keys.ACTIVE_JOBS, pinned)  # finished: only its pin keeps v1
    for n in range(40):
        rows = labelled(100, seed=100 + n)
        texts, labels = [t for t, _ in rows], [int(lab == "positive") for _, lab in rows]
        token = registry.ship_dataset(client, dataset.Dataset(texts, labels, f"set{n}"))
        result = retrain.delay(data=token).get(timeout=60)
        assert (result["status"], result["version"], result["promoted"]) == ("retrained", n + 2, True), result
    kept = [1, *range(12, 42)]
    assert [v.version for v in registry.versions(client)] == kept
    assert sorted(client.keys("sentq:model:*:artifact")) == sorted(keys.model_artifact(v).encode() for v in kept)
    assert current_version(redis_url) == 41
    assert registry.load(client, 1).sha256 == registry.get(client, 1).sha256
    assert batch_score.delay(["great product", "awful service"]).get(timeout=10)[0]["label"] == "positive"
    assert "removed model versions v11 (SENTQ_MODEL_KEEP=30)" in worker.output()


def test_a_reader_never_sees_a_half_removed_version(redis_url: str) -> None:
    """Loads racing the retention's removal of their version either get the whole model or "not in the registry",
    never an artifact without its metadata (or the reverse)."""
    client = redis.Redis.from_url(redis_url)
    made = [publish(client, flipped_model(f"race{n}")) for n in range(12)]
    outcomes: list[str] = []
    stop = threading.Event()

    def reader(version: int) -> None:
        own = redis.Redis.from_url(redis_url)
        while not (stop.is_set() and version == made[-1].version):  # the others read until their version is gone
            try:
                own_model = registry.load(own, version)
                outcomes.append("whole" if own_model.sha256 == made[version - 2].sha256 else "wrong")
            except ModelError as exc:
                outcomes.append("gone" if "is not in the registry" in str(exc) else f"broken: {exc}")
                return

    threads = [threading.Thread(target=reader, args=(meta.version,)) for meta in made]
    for thread in threads:
        thread.start()
    wait_until_loaded = time.monotonic() + 10
    while len(outcomes) < 3 * len(made) and time.monotonic() < wait_until_loaded:
        time.sleep(0.01)
    removed = registry.prune(client, keep=1)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert removed == [m.version for m in made[:-1]]  # v1 is current: kept
    assert set(outcomes) <= {"whole", "gone"}, [o for o in outcomes if o not in ("whole", "gone")][:3]
    assert outcomes.count("gone") == len(removed)
