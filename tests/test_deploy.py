"""deploy/: the systemd units and their environment file, and the graceful stop they rely on.

The units are checked twice: by `systemd-analyze verify` where it exists, and always by parsing them for the
settings sentq needs (so a missing systemd never leaves them unchecked). The drain test runs a real worker and
stops it as systemd does with KillMode=mixed: SIGTERM to the main process only.
"""

from __future__ import annotations

import configparser
import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from sentq import keys
from sentq.settings import Settings, _env_name
from tests.conftest import REPO, Worker, decode_message, run_sentq

DEPLOY = REPO / "deploy"
UNITS = {"sentq-worker@.service": "worker", "sentq-beat.service": "beat", "sentq-api.service": "api"}
SENTQ_BIN = "/opt/sentq/bin/sentq"
ENV_FILE = "/etc/sentq/sentq.env"
DATA_DIR = "/var/lib/sentq"
# Read by the units' ExecStart lines, not by sentq's Settings.
UNIT_ONLY_VARIABLES = {"SENTQ_WORKER_ARGS", "SENTQ_API_ARGS"}

T = TypeVar("T")


# ----- the units, parsed (always) -----


def parse_unit(path: Path) -> configparser.RawConfigParser:
    """A unit file as INI: keys case-sensitive, no interpolation (systemd's % and $ are not Python's), a repeated
    key keeping its last value (strict=False), as systemd does for the single-valued settings checked here."""
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return parser


def all_values(path: Path, section: str, key: str) -> list[str]:
    """Every value of a key that may repeat (Environment=, EnvironmentFile=), in order; configparser keeps one."""
    found, current = [], None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif current == section and "=" in line and not line.startswith(("#", ";")):
            name, _, value = line.partition("=")
            if name.strip() == key:
                found.append(value.strip())
    return found


def seconds(value: str) -> float:
    """A systemd time span as used here: "330", "330s", "5min", "5min 30s"."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_has_what_sentq_needs(name: str) -> None:
    path = DEPLOY / name
    unit = parse_unit(path)
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]

    assert service.get("Type") in ("simple", "exec")  # sentq worker/beat/api stay in the foreground
    assert service.get("User") == "sentq"
    command = shlex.split(service["ExecStart"])
    assert command[:2] == [SENTQ_BIN, UNITS[name]]
    assert ENV_FILE in all_values(path, "Service", "EnvironmentFile"), "the shared settings file, not optional"
    assert f"SENTQ_DATA_DIR={DATA_DIR}" in all_values(path, "Service", "Environment")
    assert service.get("KillSignal") == "SIGTERM"
    assert service.get("Restart") in ("on-failure", "always")
    assert seconds(service.get("RestartSec", "0")) >= 1
    assert "2" in service.get("RestartPreventExitStatus", "").split(), "exit 2 is a bad setting: no restart loop"
    # ProtectSystem=strict makes everything read-only but what is named: the data dir must be among it.
    assert service.get("ProtectSystem") == "strict"
    writable = [f"/var/lib/{d}" for d in service.get("StateDirectory", "").split()]
    writable += service.get("ReadWritePaths", "").split()
    assert DATA_DIR in writable
    assert service.get("NoNewPrivileges") == "yes"
    assert unit["Install"].get("WantedBy") == "multi-user.target"


def test_worker_unit_drains_a_running_chunk() -> None:
    service = parse_unit(DEPLOY / "sentq-worker@.service")["Service"]
    # Celery's warm shutdown: SIGTERM to the main process, which waits for its pool processes. A pool process that
    # gets SIGTERM itself dies mid-task, so systemd must signal the main process only (mixed), then SIGKILL the rest.
    assert service["KillMode"] == "mixed"
    # ... and wait longer than a chunk may run (its hard time limit), else a drain would kill the chunk it waits for.
    assert seconds(service["TimeoutStopSec"]) > Settings().task_time_limit_s
    assert seconds(service["TimeoutStopSec"]) < Settings().visibility_timeout_s
    command = shlex.split(service["ExecStart"])
    assert command[command.index("--hostname") + 1] == "%i@%H"  # node name: the instance at this host


def test_beat_unit_comes_back_as_a_standby() -> None:
    # Beat exits when it loses the redbeat lock or Redis, by design (README): it must restart whatever its status.
    assert parse_unit(DEPLOY / "sentq-beat.service")["Service"]["Restart"] == "always"


def test_api_unit_listens_on_all_addresses_only_with_tokens() -> None:
    command = shlex.split(parse_unit(DEPLOY / "sentq-api.service")["Service"]["ExecStart"])
    assert command[command.index("--host") + 1] == "0.0.0.0"
    # sentq api refuses that without tokens: the example file and the unit's comment must say where they go.
    assert "SENTQ_API_TOKENS" in (DEPLOY / "sentq.env.example").read_text()
    assert "SENTQ_API_TOKENS" in (DEPLOY / "sentq-api.service").read_text()


def test_env_example_names_real_settings_with_valid_values() -> None:
    """Every SENTQ_* line of sentq.env.example (commented or not) is a setting sentq reads, and its example value is
    accepted; the uncommented lines together make valid settings; no real secret is in it."""
    text = (DEPLOY / "sentq.env.example").read_text()
    known = {f"SENTQ_{_env_name(f.name)}" for f in dataclasses.fields(Settings)}
    active: dict[str, str] = {}
    seen = set()
    for line in text.splitlines():
        match = re.fullmatch(r"(#?)(SENTQ_[A-Z_]+)=(.*)", line.strip())
        if not match:
            continue
        commented, name, value = match.groups()
        seen.add(name)
        if name in UNIT_ONLY_VARIABLES:
            continue
        assert name in known, f"{name} in sentq.env.example is not a sentq setting"
        Settings.from_env({"SENTQ_BROKER_URL": "redis://localhost:6379/0", name: value})  # raises if refused
        if not commented:
            active[name] = value
    assert {"SENTQ_BROKER_URL", "SENTQ_API_TOKENS", "SENTQ_TASK_TIME_LIMIT"} <= seen
    Settings.from_env(active)
    assert "CHANGE-ME" in active["SENTQ_BROKER_URL"]  # a placeholder, never a working password


# ----- systemd-analyze verify (where systemd is installed) -----


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package `systemd`); the units are still parsed above")
    # verify insists that ExecStart's program exists: point the copies at this venv's sentq instead of /opt/sentq.
    sentq_bin = Path(sys.executable).parent / "sentq"
    assert sentq_bin.exists(), f"{sentq_bin} missing: pip install -e . in this venv"
    copies = []
    for name in UNITS:
        copy = tmp_path / name
        copy.write_text((DEPLOY / name).read_text().replace(SENTQ_BIN, str(sentq_bin)))
        copies.append(copy)
    instance = tmp_path / "sentq-worker@gpu1.service"  # the template as systemctl would instantiate it
    shutil.copy(tmp_path / "sentq-worker@.service", instance)
    copies.append(instance)
    proc = subprocess.run(
        [analyze, "verify", *map(str, copies)], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    # verify exits 0 even on an unknown key or a value it cannot parse ("..., ignoring"): any line about our files
    # is a finding. Lines about the host (no systemd running, in a container) are not ours to judge.
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if "sentq" in line]
    assert proc.returncode == 0 and not ours, proc.stdout + proc.stderr


# ----- drain: SIGTERM to the main process finishes the held chunk and takes no more -----


def poll(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def chunk_ints(values: set[bytes] | list[bytes]) -> set[int]:
    return {int(v) for v in values}


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("processes", [1, 2])
def test_sigterm_drains_a_worker(redis_url: str, tmp_path: Path, processes: int) -> None:
    """`systemctl stop sentq-worker@N`: the worker finishes the chunks it holds (one per process), takes no more,
    exits 0, and leaves the rest in the queue untouched (pending in the ledger, one message each); another worker then
    finishes the job with every row once, in order."""
    queue = f"drain-{uuid.uuid4().hex[:8]}"
    env = {"SENTQ_QUEUE": queue, "SENTQ_RETRAIN_QUEUE": f"{queue}.retrain"}
    slow = {"PYTHONPATH": f"{REPO / 'tests' / 'hooks'}{os.pathsep}{REPO}", "SENTQ_TEST_SLOW": "2"}
    chunks, per_chunk = 5, 40
    texts = tmp_path / "texts.txt"
    words = ["awful", "great"]
    texts.write_text("".join(f"review {i}: {words[i % 2]} product\n" for i in range(chunks * per_chunk)))
    client = redis.Redis.from_url(redis_url)

    first = Worker(redis_url, tmp_path / "first.log", f"first-{queue}@%h", concurrency=processes, env_extra=env | slow)
    first.start()
    try:
        submitted = run_sentq(["submit", str(texts), "--chunk-size", str(per_chunk)], redis_url, **env)
        assert submitted.returncode == 0, submitted.stderr
        job = submitted.stdout.strip()

        # A process holds a chunk once it has leased it in the ledger (before it scores: 2 s with the slow hook).
        def all_busy() -> set[int] | None:
            leased = chunk_ints(client.hkeys(keys.job_leases(job)))
            return leased if len(leased) == processes else None

        held = poll(f"{processes} leased chunks", all_busy, timeout=60)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGTERM)  # the main process only, as KillMode=mixed does

        assert first.proc.wait(timeout=60) == 0, first.output()
        log = first.output()
        assert "Warm shutdown" in log, log
        # It finished what it held and nothing more: exactly the held chunks are done, no lease is left behind.
        assert chunk_ints(client.smembers(keys.job_done(job))) == held, log
        assert client.hlen(keys.job_leases(job)) == 0
        rest = set(range(chunks)) - held
        # The rest is pending in the ledger and each still has exactly one message in the queue (none lost, none
        # duplicated), waiting for a worker.
        assert chunk_ints(client.zrange(keys.job_pending(job), 0, -1)) == rest
        waiting = [decode_message(raw) for raw in client.lrange(queue, 0, -1)]
        assert sorted(index for job_id, index in waiting if job_id == job) == sorted(rest)
        status = run_sentq(["status", job, "--json"], redis_url, **env)
        assert json.loads(status.stdout)["state"] == "running", status.stdout
    finally:
        first.stop()

    second = Worker(redis_url, tmp_path / "second.log", f"second-{queue}@%h", concurrency=1, env_extra=env).start()
    try:
        rows_path = tmp_path / "rows.jsonl"
        waited = run_sentq(["wait", job, "-o", str(rows_path), "--timeout", "120"], redis_url, **env)
        assert waited.returncode == 0, waited.stderr + second.output()
        lines = [json.loads(row)["line"] for row in rows_path.read_text().splitlines()]
        assert lines == list(range(1, chunks * per_chunk + 1))
    finally:
        second.stop()
        client.close()
