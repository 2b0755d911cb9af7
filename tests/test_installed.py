"""sentq installed from its wheel, not run from the checkout: the wheel the suite builds (offline) is installed into a
directory of its own and run from a working directory outside the repository, with its own HOME and TMPDIR, no
SENTQ_DATA_DIR and no network (pip is pointed at a closed loopback port). The suite's venv supplies the
dependencies (celery, redis, numpy...); the wheel's sentq shadows the editable one (checked)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentq import dataset, registry
from sentq.errors import DatasetMissingError
from sentq.settings import Settings
from tests.conftest import REPO, RedisServer
from tests.hosts import Host, Installed

TEXTS = [f"great product, love it {i}" if i % 2 == 0 else f"awful terrible service {i}" for i in range(30)]


@pytest.fixture
def host(installed: Installed, tmp_path: Path) -> Iterator[Host]:
    """A host with the installed sentq and an empty Redis of its own (no session worker reads its queues)."""
    server = RedisServer(tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    try:
        yield Host(installed, tmp_path / "host", server.url)
    finally:
        server.stop()


def client_of(host: Host) -> Any:
    import redis

    return redis.Redis.from_url(host.url)


def write_texts(host: Host) -> Path:
    path = host.cwd / "texts.txt"
    path.write_text("".join(f"{t}\n" for t in TEXTS))
    return path


def rows_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def copy_data(into: Path) -> None:
    """What a user with the files would have: the five verified files (no SHA256SUMS, fetch writes that)."""
    (into / "vader").mkdir(parents=True)
    for name in dataset.FILE_SHA256:
        shutil.copy2(REPO / "data" / "vader" / name, into / "vader" / name)


def test_installed_sentq_is_the_wheel_and_keeps_its_data_under_home(host: Host) -> None:
    seen = host.python(
        "import json, sentq, sentq.settings as s; print(json.dumps({'file': sentq.__file__, "
        "'data': str(s.DEFAULT_DATA_DIR), 'checkout': str(s.checkout_root()), "
        "'settings': str(s.Settings.from_env().data_dir)}))"
    )
    assert Path(seen["file"]).is_relative_to(host.installed.site), seen  # not the editable checkout
    assert seen["checkout"] == "None"
    assert seen["data"] == seen["settings"] == str(host.data_dir)
    assert not Path(seen["data"]).is_relative_to(host.installed.site)
    version = host.sentq("version")
    assert version.returncode == 0 and version.stdout.startswith("sentq 0.1.0"), version.stderr


def test_a_worker_without_data_files_bootstraps_from_the_set_in_redis(host: Host) -> None:
    registry.share_default_dataset(client_of(host), dataset.load_dataset(REPO / "data"))  # as another host would
    worker = host.worker("shipped")
    try:
        done = host.sentq("submit", str(write_texts(host)), "--chunk-size", "10", "--wait")
        assert done.returncode == 0, done.stderr + worker.output()
        rows = rows_of(done.stdout)
        assert [r["text"] for r in rows] == TEXTS
        assert {r["model"] for r in rows} == {"v1"}
        assert [r["label"] for r in rows] == ["positive", "negative"] * 15
    finally:
        worker.stop()
    assert "fetching it" not in worker.log_path.read_text(errors="replace")
    assert not host.data_dir.exists()  # the host never needed files of its own


def test_no_data_and_no_network_fails_naming_data_fetch_then_retry_works(host: Host) -> None:
    worker = host.worker("offline")
    try:
        job = host.sentq("submit", str(write_texts(host)), "--chunk-size", "10")
        assert job.returncode == 0, job.stderr
        job_id = job.stdout.strip()
        waited = host.sentq("wait", job_id)
        assert waited.returncode == 1, waited.stderr + worker.output()
        status = json.loads(host.sentq("status", job_id, "--json").stdout)
        failures = status["failures"]
        assert sorted(failures) == ["0", "1", "2"], status
        for why in failures.values():
            assert "DatasetMissingError" in why and "could not fetch it" in why and "pip download" in why, why
            assert "`sentq data fetch`" in why and "--from FILE" in why and "make setup" not in why, why
            assert str(host.data_dir) in why
        log = worker.log_path.read_text(errors="replace")
        assert "is neither in Redis nor in" in log and "fetching it" in log, log  # it tried, and said so

        copy_data(host.data_dir)  # the files arrive by other means; `sentq data fetch` checks and completes them
        fetched = host.sentq("data", "fetch", "--data-dir", str(host.data_dir))
        assert fetched.returncode == 0, fetched.stderr
        assert f"in {host.data_dir / 'vader'}" in fetched.stdout and "total" in fetched.stdout
        assert (host.data_dir / "vader" / "SHA256SUMS").is_file()

        retried = host.sentq("retry", job_id)
        assert retried.returncode == 0, retried.stderr
        again = host.sentq("wait", job_id)
        assert again.returncode == 0, again.stderr + worker.output()
        assert [r["text"] for r in rows_of(again.stdout)] == TEXTS
        assert {r["model"] for r in rows_of(again.stdout)} == {"v1"}
    finally:
        worker.stop()


def test_data_show_and_fetch_upload(host: Host) -> None:
    shown = host.sentq("data", "show")
    assert shown.returncode == 0, shown.stderr
    assert f"data dir: {host.data_dir} (the user data dir" in shown.stdout
    assert "NOT ready" in shown.stdout and "vader_lexicon.txt (missing)" in shown.stdout
    assert "`sentq data fetch`" in shown.stdout and "in Redis: no" in shown.stdout and "model: none yet" in shown.stdout
    info = json.loads(host.sentq("data", "show", "--json").stdout)
    assert info["data_dir"] == str(host.data_dir) and not info["verified"]
    assert set(info["files"].values()) == {"missing"}
    assert info["redis"]["reachable"] and info["redis"]["dataset"] is None and info["redis"]["current_model"] is None

    elsewhere = host.root / "carried"
    copy_data(elsewhere)
    uploaded = host.sentq("data", "fetch", "--data-dir", str(elsewhere), "--upload")
    assert uploaded.returncode == 0, uploaded.stderr
    assert "workers on every host train from it" in uploaded.stderr
    info = json.loads(host.sentq("data", "show", "--json", "--data-dir", str(elsewhere)).stdout)
    assert info["verified"] and info["data_dir_from"] == "--data-dir"
    expected = dataset.load_dataset(REPO / "data")
    assert info["redis"]["dataset"] == {"texts": len(expected.texts), "source": expected.source}
    settings = Settings.from_env({"SENTQ_BROKER_URL": host.url, "SENTQ_DATA_DIR": str(host.root / "empty")})
    assert registry.default_dataset(client_of(host), settings) == expected  # what a worker reads, no files needed
    assert not host.data_dir.exists()

    # Redis down: the local part is still shown, and the exit code says Redis was unreachable.
    down = subprocess.run(
        [sys.executable, "-m", "sentq.cli", "data", "show"],
        env=host.env(SENTQ_BROKER_URL="redis://127.0.0.1:9/0", SENTQ_CONNECT_TIMEOUT="1"),
        cwd=host.cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 3 and "data dir:" in down.stdout and "cannot reach" in down.stdout, down


def test_fetch_from_a_wrong_file_is_refused(host: Host) -> None:
    wrong = host.cwd / "vaderSentiment-3.3.2.tar.gz"
    wrong.write_bytes(b"not the sdist")
    refused = host.sentq("data", "fetch", "--from", str(wrong))
    assert refused.returncode == 2
    assert f"{wrong} is not the vaderSentiment==3.3.2 sdist" in refused.stderr
    assert hashlib.sha256(b"not the sdist").hexdigest() in refused.stderr and dataset.SDIST_SHA256 in refused.stderr
    assert not host.data_dir.exists()
    missing = host.sentq("data", "fetch", "--from", str(host.cwd / "nope.tar.gz"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    # the Makefile's spelling still works (and refuses the same file the same way)
    make = subprocess.run(
        [sys.executable, "-m", "sentq.dataset", "fetch", "--from", str(wrong)],
        env=host.env(),
        cwd=host.cwd,
        capture_output=True,
        text=True,
    )
    assert make.returncode == 2 and "is not the vaderSentiment==3.3.2 sdist" in make.stderr


def test_fetch_is_idempotent_on_a_complete_data_dir(host: Host) -> None:
    copy_data(host.data_dir)
    before = {p.name: p.stat().st_mtime_ns for p in (host.data_dir / "vader").iterdir()}
    for _ in range(2):  # no network here: a download would fail, so passing means nothing was downloaded
        fetched = host.sentq("data", "fetch")
        assert fetched.returncode == 0, fetched.stderr
        assert "total" in fetched.stdout and "10278" in fetched.stdout
    after = {p.name: p.stat().st_mtime_ns for p in (host.data_dir / "vader").iterdir() if p.name != "SHA256SUMS"}
    assert after == {k: v for k, v in before.items() if k in after}


def fake_sdist(path: Path) -> Path:
    """An archive laid out like vaderSentiment-3.3.2.tar.gz, holding the real five files (its own sha256 differs)."""
    vader = REPO / "data" / "vader"
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        for name in dataset.GROUND_TRUTH_SHA256:
            tar.add(vader / name, arcname=f"hutto_ICWSM_2014/{name}")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(vader / dataset.LEXICON_FILE, arcname=f"vaderSentiment-3.3.2/vaderSentiment/{dataset.LEXICON_FILE}")
        info = tarfile.TarInfo("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
        info.size = len(inner.getvalue())
        tar.addfile(info, io.BytesIO(inner.getvalue()))
    return path


def test_fetch_from_a_local_sdist_unpacks_without_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The --from path end to end (the real sdist is not on this machine, and tests reach no network: the fake one's
    sha256 stands in for the known one; every unpacked file is still checked against its published sha256)."""
    sdist = fake_sdist(tmp_path / "vaderSentiment-3.3.2.tar.gz")
    monkeypatch.setattr(dataset, "SDIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())

    def no_download(*_: Any, **__: Any) -> Path:
        raise AssertionError("--from must not download")

    monkeypatch.setattr(dataset, "_download_sdist", no_download)
    directory = dataset.fetch(tmp_path / "data", sdist=sdist)
    assert dataset.files_ok(tmp_path / "data") and directory == tmp_path / "data" / "vader"
    assert dataset.load_dataset(tmp_path / "data") == dataset.load_dataset(REPO / "data")

    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(tampered, "w:gz") as tar:
        info = tarfile.TarInfo(f"vaderSentiment-3.3.2/vaderSentiment/{dataset.LEXICON_FILE}")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"bad\n"))
    monkeypatch.setattr(dataset, "SDIST_SHA256", hashlib.sha256(tampered.read_bytes()).hexdigest())
    with pytest.raises(DatasetMissingError, match="does not match its known sha256|has no"):
        dataset.fetch(tmp_path / "other", sdist=tampered)
    assert not (tmp_path / "other").exists()
