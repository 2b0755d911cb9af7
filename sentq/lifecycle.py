"""What the model commands do, as plain functions over settings: list, show, use, export, import, retrain, beat."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from kombu.exceptions import OperationalError

from sentq import control, keys, registry, schedule, store
from sentq.dataset import Dataset
from sentq.errors import ConfigError, InputError, JobTimeoutError, ModelError, PayloadTooLargeError
from sentq.settings import Settings, mask_url

# Labels `sentq retrain --data` accepts (case-insensitive), and what they mean.
LABELS = {"positive": 1, "negative": 0, "1": 1, "0": 0}
# Fewer examples of a class than this cannot give a held-out accuracy worth comparing.
MIN_PER_CLASS = 10


def versions(settings: Settings) -> tuple[list[registry.ModelVersion], int | None]:
    """All versions, oldest first, and the current version number (None on a fresh installation)."""
    client = control.connect(settings)
    ref = registry.current(client)
    return registry.versions(client), registry.ref_version(ref) if ref else None


def version_dict(meta: registry.ModelVersion, current: int | None) -> dict[str, Any]:
    return asdict(meta) | {"ref": meta.ref, "current": meta.version == current}


def show(settings: Settings, raw_version: str) -> tuple[registry.ModelVersion, bool, str]:
    """A version's metadata, whether it is current, and its artifact check ("ok" or why it is refused)."""
    client = control.connect(settings)
    meta = registry.get(client, registry.parse_version(raw_version))
    try:
        registry.load(client, meta.version)
        check = "ok (sha256 verified)"
    except ModelError as exc:
        check = f"REFUSED: {exc}"
    ref = registry.current(client)
    return meta, ref == meta.ref, check


def use(settings: Settings, raw_version: str) -> tuple[registry.ModelVersion, int | None]:
    """Make a version current (after checking its artifact); returns it and the version it replaced."""
    client = control.connect(settings)
    version = registry.parse_version(raw_version)
    before = registry.current(client)
    registry.verify(client, version)
    return registry.use(client, version), registry.ref_version(before) if before else None


class ArtifactChecks:
    """Which versions' artifacts verify, for a page that lists them all (the console offers "use" only for those).

    The full check (load the artifact, hash its arrays: what `use` does) took 47 ms for a 570 KB artifact here, so
    1.4 s a view at the default SENTQ_MODEL_KEEP of 30. A version's artifact never changes once published unless it
    is tampered with, so the full check runs once per version and stored bytes: each view reads the artifacts and
    hashes their bytes (45 ms for 30 versions of 570 KB, measured) and checks again in full only a version whose bytes
    changed. The verdict only decides what the page offers: `use` verifies in full every time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int], tuple[str, str | None]] = {}  # (redis, version) -> (bytes digest, refusal)

    def refusals(self, settings: Settings, versions: list[int]) -> dict[int, str | None]:
        """Version -> None if its artifact verifies, else why it is refused."""
        client = control.connect(settings)
        pipe = client.pipeline(transaction=False)
        for version in versions:
            pipe.get(keys.model_artifact(version))
        found: dict[int, str | None] = {}
        for version, artifact in zip(versions, pipe.execute(), strict=True):
            digest = hashlib.sha256(artifact).hexdigest() if artifact is not None else ""
            seen = self._seen.get((settings.backend_url, version))
            if seen is not None and seen[0] == digest:
                found[version] = seen[1]
                continue
            try:
                registry.verify(client, version)
                refusal = None
            except ModelError as exc:
                refusal = str(exc)
            with self._lock:
                self._seen[(settings.backend_url, version)] = (digest, refusal)
            found[version] = refusal
        with self._lock:  # versions pruned from the registry are forgotten here too
            for key in [k for k in self._seen if k[0] == settings.backend_url and k[1] not in found]:
                del self._seen[key]
        return found


@dataclass(frozen=True)
class NextRetrain:
    """When the next scheduled retrain is due, as sentq beat keeps it (celery-redbeat's schedule in Redis), or as
    SENTQ_RETRAIN_SCHEDULE says it would be when no beat runs."""

    at: float | None  # Unix time; None when unknown (no beat and an interval schedule, or a bad schedule)
    beat_running: bool
    schedule: str  # the schedule it follows (the beat's own when one runs)
    problem: str = ""  # why none can be said (a bad SENTQ_RETRAIN_SCHEDULE)


def next_retrain(settings: Settings) -> NextRetrain:
    client = control.connect(settings)
    entry = keys.REDBEAT_PREFIX + schedule.ENTRY
    pipe = client.pipeline(transaction=False)
    pipe.exists(keys.REDBEAT_PREFIX + ":lock")
    pipe.zscore(keys.REDBEAT_PREFIX + ":schedule", entry)
    pipe.hget(entry, "definition")
    running, due, definition = pipe.execute()
    if running and due is not None and due > 0:
        said = settings.retrain_schedule
        try:
            sched = json.loads(definition)["schedule"]
            said = (
                " ".join(str(sched[f]) for f in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week"))
                if sched.get("__type__") == "crontab"
                else f"{sched['every']:g}"
            )
        except (TypeError, ValueError, KeyError):
            pass
        return NextRetrain(float(due), True, said)
    try:
        sched = schedule.parse(settings.retrain_schedule)
    except ConfigError as exc:
        return NextRetrain(None, False, settings.retrain_schedule, str(exc))
    if schedule.period_s(sched) is not None:  # an interval counts from the beat's first run
        return NextRetrain(None, False, settings.retrain_schedule)
    now = datetime.now(UTC)
    at = (now + sched.remaining_estimate(now)).timestamp()
    return NextRetrain(round(at / 60) * 60.0, False, settings.retrain_schedule)  # cron runs on the minute


def export(settings: Settings, raw_version: str, path: Path) -> registry.ModelVersion:
    """Write a version to ``path`` (written whole or not at all) for `sentq model import` elsewhere."""
    client = control.connect(settings)
    version = registry.parse_version(raw_version)
    data = registry.export_bytes(client, version)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"{path}: cannot write it ({exc.strerror or exc}); check the directory") from None
    return registry.get(client, version)


def import_file(settings: Settings, path: Path, *, make_current: bool) -> tuple[registry.ModelVersion, bool, bool]:
    """Publish the model in an export file; returns its version here, whether it is new, and whether it is current."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc}); check the path") from None
    client = control.connect(settings)
    meta, new = registry.import_bytes(client, data, where=str(path), make_current=make_current)
    if new:
        registry.prune(client, keep=settings.model_keep)
    return meta, new, registry.current(client) == meta.ref


def read_labelled(path: Path, *, max_chars: int) -> Dataset:
    """Read and validate a labelled CSV (header with text and label) or JSONL file ({"text": ..., "label": ...}).

    Labels are positive/negative or 1/0, any case. Every problem names the file and line (InputError, exit 2).
    """
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory; give a CSV or JSONL file of labelled texts") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc}); check the path") from None
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8; save the file as UTF-8") from None
    first = content.lstrip()[:1]
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson") or (path.suffix.lower() != ".csv" and first == "{")
    rows = _jsonl_rows(path, content) if jsonl else _csv_rows(path, content)
    texts: list[str] = []
    labels: list[int] = []
    for line, text, raw_label in rows:
        label = LABELS.get(str(raw_label).strip().lower()) if isinstance(raw_label, str | int) else None
        if label is None:
            raise InputError(
                f"{path}:{line}: label {raw_label!r} is not positive/negative or 1/0; fix the label on that line"
            )
        if not text.strip():
            raise InputError(f"{path}:{line}: the text is empty; remove the line or fill in the text")
        if len(text) > max_chars:
            raise InputError(
                f"{path}:{line}: text of {len(text):,} characters is over the limit of {max_chars:,} "
                "(SENTQ_MAX_TEXT_CHARS); shorten it or raise the limit"
            )
        texts.append(text)
        labels.append(label)
    positive = sum(labels)
    if min(positive, len(labels) - positive) < MIN_PER_CLASS:
        raise InputError(
            f"{path}: {positive} positive and {len(labels) - positive} negative texts; training needs at least "
            f"{MIN_PER_CLASS} of each"
        )
    digest = hashlib.sha256(data).hexdigest()[:12]
    return Dataset(texts=texts, labels=labels, source=f"{path.name} ({len(texts)} texts, sha256 {digest})")


def _csv_rows(path: Path, content: str) -> list[tuple[int, str, object]]:
    reader = csv.reader(io.StringIO(content, newline=""))
    rows: list[tuple[int, str, object]] = []
    columns: tuple[int, int] | None = None
    start = 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not record or not any(field.strip() for field in record):
                continue
            if columns is None:
                names = [field.strip().lower() for field in record]
                if "text" not in names or "label" not in names:
                    raise InputError(
                        f"{path}:{line}: the header must name the columns text and label (found: {', '.join(record)}); "
                        "add a header line `text,label`"
                    )
                columns = (names.index("text"), names.index("label"))
                continue
            if len(record) <= max(columns):
                raise InputError(f"{path}:{line}: expected {max(columns) + 1} columns, found {len(record)}")
            rows.append((line, record[columns[0]], record[columns[1]]))
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    if columns is None:
        raise InputError(f"{path}: the file is empty; give a CSV with a `text,label` header and labelled lines")
    return rows


def _jsonl_rows(path: Path, content: str) -> list[tuple[int, str, object]]:
    rows: list[tuple[int, str, object]] = []
    for line, raw in enumerate(content.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise InputError(f"{path}:{line}: malformed JSON ({exc.args[0]})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or "label" not in obj:
            raise InputError(f'{path}:{line}: expected an object like {{"text": "...", "label": "positive"}}')
        rows.append((line, obj["text"], obj["label"]))
    if not rows:
        raise InputError(f"{path}: the file is empty; give one JSON object with text and label per line")
    return rows


def submit_retrain(settings: Settings, *, data: Path | None, force: bool) -> str:
    """Queue `sentq.retrain` (on its own queue), shipping ``data`` through Redis first; returns the task id."""
    if data is not None:
        _within_retrain_limit(data, settings.retrain_max_bytes)
    dataset = read_labelled(data, max_chars=settings.max_text_chars) if data is not None else None
    client = control.connect(settings)
    control.check_broker(settings)
    kwargs: dict[str, Any] = {"force": registry.grant_force(client) if force else False}
    if dataset is not None:
        kwargs["data"] = registry.ship_dataset(client, dataset)
    worker = control.worker_module(settings)
    try:
        return str(worker.retrain.apply_async(kwargs=kwargs, queue=settings.retrain_queue).id)
    except OperationalError as exc:
        raise store.unavailable(settings.broker_url, exc) from None


def _within_retrain_limit(data: Path, max_bytes: int) -> None:
    """Labelled data is read whole and shipped through Redis as one value: refuse a file past the limit unread."""
    try:
        size = data.stat().st_size
    except OSError:
        return  # read_labelled says what is wrong with the path
    if size > max_bytes:
        raise PayloadTooLargeError(
            f"{data}: the labelled data is larger than {max_bytes:,} bytes (SENTQ_RETRAIN_MAX_BYTES); "
            "train on less data, or raise the limit"
        )


def wait_retrain(settings: Settings, task_id: str, *, timeout_s: float | None) -> dict[str, Any]:
    """The retrain task's result; JobTimeoutError past ``timeout_s``, ModelError if it failed on the worker."""
    from celery.exceptions import TimeoutError as CeleryTimeoutError

    result = control.worker_module(settings).app.AsyncResult(task_id)
    try:
        outcome = result.get(timeout=timeout_s, propagate=False)
    except CeleryTimeoutError:
        raise JobTimeoutError(
            f"retrain {task_id} did not finish within {timeout_s:g}s; it keeps going: `sentq model list` shows "
            "the new version when it is done"
        ) from None
    if result.failed():
        raise ModelError(f"retrain {task_id} failed on the worker: {type(outcome).__name__}: {outcome}")
    return dict(outcome)


def beat_argv(settings: Settings, *, loglevel: str, extra: list[str]) -> list[str]:
    """The `celery beat` command line for sentq (after refusing a bad SENTQ_RETRAIN_SCHEDULE)."""
    schedule.parse(settings.retrain_schedule)
    argv = [sys.executable, "-m", "celery", "-A", "sentq.worker", "beat", "-S", "redbeat.RedBeatScheduler"]
    return argv + ["--loglevel", loglevel, *extra]


# A celery beat that dies this soon after starting, this many times in a row while Redis answers, is not restarted.
BEAT_QUICK_FAIL_S = 10.0
BEAT_QUICK_FAILS = 3


def _die_with_parent() -> None:
    """In a child, before exec: SIGTERM it when its parent (`sentq beat`) dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def redis_answers(settings: Settings) -> bool:
    """Whether the backend Redis answers now (a fresh client: behind Sentinels, asks them where the master is)."""
    client = store.connect(settings)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    finally:
        store.close(client)


def run_beat(settings: Settings, argv: list[str], *, say: Any = None) -> int:
    """Run `celery beat` (``argv``) and keep it running: RedBeat exits when it loses Redis or its lock (a restart, a
    Sentinel failover, a cut link); this starts it again, as a standby, once Redis answers. SIGTERM/SIGINT/SIGHUP
    are passed to it once (it releases its lock and exits) and end the loop; it gets SIGTERM if this process dies.
    Returns its exit code."""
    say = say or (lambda message: print(f"sentq beat: {message}", file=sys.stderr, flush=True))
    stopping: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: object) -> None:
        stopping.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    quick = 0
    while not stopping:
        started = time.monotonic()
        # Its own session: a Ctrl-C or a signal to this process group reaches it once, through forward().
        child = subprocess.Popen(argv, start_new_session=True, preexec_fn=_die_with_parent)  # noqa: PLW1509
        code = child.wait()
        if stopping or code in (0, 2):
            return code
        quick = quick + 1 if time.monotonic() - started < BEAT_QUICK_FAIL_S else 0
        if quick >= BEAT_QUICK_FAILS:
            say(f"celery beat exited with {code} {quick} times within {BEAT_QUICK_FAIL_S:g}s of starting; giving up")
            return code
        say(f"celery beat exited with {code} (lost Redis or its lock); starting it again once Redis answers")
        waited = time.monotonic()
        while not stopping and not redis_answers(settings):
            if time.monotonic() - waited > 60:
                say(f"still waiting for Redis at {mask_url(settings.backend_url)}")
                waited = time.monotonic()
            time.sleep(1)
    return 0
