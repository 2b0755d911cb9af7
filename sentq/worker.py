"""The Celery app, configured from settings, and sentq's tasks (``celery -A sentq.worker worker`` runs them)."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from celery import Celery, signals
from kombu.entity import Queue
from kombu.exceptions import OperationalError

from sentq import broker, jobs, keys, ledger, registry, rows, schedule, store
from sentq.errors import ConfigError, ModelError, SentqError
from sentq.settings import Settings, mask_secrets, mask_url, redis_ssl_options

if TYPE_CHECKING:  # numpy is imported with the first model loaded: a producer publishing chunks never needs it
    from sentq.model import SentimentModel

log = logging.getLogger("sentq.worker")

# Versions kept loaded per process: the current one plus a couple that pinned jobs may still need.
MODEL_CACHE_SIZE = 3


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings carrying sentq's reliability promises (see DESIGN.md: why each one)."""
    transport = {
        # Longer than the hard time limit: a chunk is redelivered only when its worker really vanished.
        "visibility_timeout": settings.visibility_timeout_s,
        # Kombu sweeps for expired unacked messages every interval x throttle seconds (100 s by default); one
        # cheap ZRANGE every few seconds brings a vanished worker's chunk back soon after the visibility timeout.
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 4)),
        "unacked_restore_throttle": 1,
        # The sweep's lock; kombu keeps it 300 s, so a worker that dies (or loses Redis) holding it stops every
        # redelivery for 5 minutes. A sweep takes milliseconds, and a doubled restore of one message is a no-op.
        "unacked_mutex_expire": 30,
        # A producer facing a dead broker gives up after ~1 s of retries instead of hanging.
        "max_retries": 2,
        "interval_start": 0,
        "interval_step": 0.3,
        "interval_max": 0.5,
        "socket_connect_timeout": settings.connect_timeout_s,
        "socket_timeout": settings.socket_timeout_s,
    }
    return dict(
        broker_url=settings.broker_url,
        result_backend=settings.backend_url,
        # A rediss:// URL's TLS options, so a URL without ssl_cert_reqs is checked alike by all (settings.py: why).
        broker_use_ssl=(redis_ssl_options(settings.broker_url) if settings.broker_is_redis else None) or False,
        redis_backend_use_ssl=redis_ssl_options(settings.backend_url) or False,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=(transport | settings.sentinel_options(settings.broker_url))
        if settings.broker_is_redis
        else {},
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s}
        | settings.sentinel_options(settings.backend_url),
        broker_connection_timeout=settings.connect_timeout_s,
        broker_connection_retry_on_startup=True,
        redis_socket_connect_timeout=settings.connect_timeout_s,
        redis_socket_timeout=settings.socket_timeout_s,
        redis_retry_on_timeout=True,
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.3, "interval_max": 0.5},
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=settings.soft_time_limit_s,
        worker_max_tasks_per_child=settings.max_tasks_per_child or None,
        worker_max_memory_per_child=settings.max_memory_per_child_mb * 1024 or None,  # Celery counts KiB
        worker_send_task_events=True,
        task_send_sent_event=True,
        result_expires=settings.result_expires_s,
        task_default_queue=settings.queue,
        task_queues=[Queue(settings.queue), Queue(settings.retrain_queue)],  # type: ignore[no-untyped-call]
        task_routes={"sentq.retrain": {"queue": settings.retrain_queue}},
        worker_hijack_root_logger=False,
        enable_utc=True,
    )


def _closed_channel_raises_connection_error() -> None:
    """Keep a worker alive when Redis drops its connection (a restart) at the wrong instant.

    Celery 5.7 closes the broken broker connection before reconnecting. kombu's Redis channel of that connection may
    still be asked for a client afterwards (to restore its unacked messages while it closes, or to ack a task that was
    running across the reconnect) and then fails with AttributeError ('NoneType' object has no attribute 'hostname',
    as in kombu#582/#970), which Celery treats as unrecoverable: the worker exits. Seen in tests/test_faults.py about
    one Redis restart in five. Raising the connection error Celery and kombu already handle there instead ("Couldn't
    ack", reconnect) keeps the worker serving; the message stays in kombu's unacked hash, and its chunk, done or
    leased to this worker, is settled by the ledger (a later redelivery is a no-op; the reconciler re-sends the rest).
    """
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._connparams
    if getattr(original, "_sentq_checked", False):
        return

    def connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("this broker channel's connection was closed (lost, then re-established)")
        return original(self, asynchronous=asynchronous)  # type: ignore[no-untyped-call]

    connparams._sentq_checked = True  # type: ignore[attr-defined]
    setattr(kombu_redis.Channel, "_connparams", connparams)  # noqa: B010 - mypy refuses assigning a method


_closed_channel_raises_connection_error()
_client: redis.Redis | None = None
_models: OrderedDict[str, SentimentModel] = OrderedDict()
settings = Settings.from_env()
app = Celery("sentq", set_as_current=True)
app.conf.update(celery_config(settings))


def configure(new: Settings) -> None:
    """Point this process's app at other settings (tests, the HTTP API); tasks keep their names."""
    global settings, _client
    settings = new
    app.conf.update(celery_config(new))
    # The app keeps its result backend (per thread) and its broker connections from their first use: a process
    # configured again must not go on talking to the first Redis (a test that published before being pointed at its
    # own server sent every later test's tasks and results to the machine's Redis).
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)
    app._pool = None  # the next use takes kombu's pool for the new broker URL (kombu keeps one per URL: not closed)
    app.amqp._producer_pool = None  # and the producers made on the old one
    _client = None
    _models.clear()


def backend() -> redis.Redis:
    """This process's client for the backend Redis (made after fork, never shared across processes)."""
    global _client
    if _client is None:
        _client = store.connect(settings)
    return _client


def model_for(ref: str) -> SentimentModel:
    """The model of version ``ref``, loaded at most once per process (small LRU of recent versions)."""
    model = _models.get(ref)
    if model is not None:
        _models.move_to_end(ref)
        return model
    version = registry.ref_version(ref)
    started = time.perf_counter()
    model = registry.load(backend(), version)
    if registry.ModelVersion.ref_for(version, model.sha256) != ref:
        raise ModelError(f"model v{version} in the registry is not the one the job was pinned to ({ref})")
    _models[ref] = model
    while len(_models) > MODEL_CACHE_SIZE:
        _models.popitem(last=False)
    log.info(
        "loaded model v%d (%d tokens) in %.0f ms in process %d",
        version,
        len(model.vocab),
        (time.perf_counter() - started) * 1000,
        os.getpid(),
    )
    return model


def current_model() -> tuple[str, SentimentModel]:
    """The registry's current version (one Redis GET) and its model, bootstrapping v1 on a fresh install.

    A current version whose artifact is refused (tampered, corrupt) is logged and the process keeps serving with
    the newest version it has loaded, or else the newest one that verifies; the refused one is retried now and then.
    """
    ref = registry.ensure_current(backend(), settings)
    refused_at = _refused.get(ref)
    if refused_at is None or time.monotonic() - refused_at >= REFUSED_RETRY_S:
        try:
            model = model_for(ref)
            _refused.pop(ref, None)
            return ref, model
        except ModelError as exc:
            log.error("refusing model v%s: %s; serving with the previous model until it is fixed", ref, exc)
            _refused[ref] = time.monotonic()
    return fallback_model(ref)


# ref -> when its artifact was refused; tried again after this long (an operator may fix it), not on every task.
_refused: dict[str, float] = {}
REFUSED_RETRY_S = 30.0


def fallback_model(bad_ref: str) -> tuple[str, SentimentModel]:
    """What serves while the current version is refused: the newest version this process has loaded, else the
    newest one in the registry that verifies."""
    registered = registry.versions(backend())
    known = {meta.ref for meta in registered}  # a model cached from before a Redis wipe is no longer a version
    loaded = [ref for ref in _models if ref != bad_ref and ref in known]
    if loaded:
        ref = max(loaded, key=registry.ref_version)
        return ref, model_for(ref)
    for meta in reversed(registered):
        if meta.ref != bad_ref and meta.ref not in _refused:
            try:
                return meta.ref, model_for(meta.ref)
            except ModelError as exc:
                log.error("refusing model v%d too: %s", meta.version, exc)
                _refused[meta.ref] = time.monotonic()
    raise ModelError(f"model v{bad_ref} is refused and no other version in the registry verifies")


def score_rows(model: SentimentModel, texts: list[str]) -> list[dict[str, Any]]:
    """The seed tutorial's rows: text, score (4 decimals), label (positive iff p >= 0.5)."""
    probs = model.predict_proba(texts).tolist()
    return [
        {"text": text, "score": round(p, 4), "label": "positive" if p >= 0.5 else "negative"}
        for text, p in zip(texts, probs, strict=True)
    ]


@app.task(name="sentq.batch_score", time_limit=settings.task_time_limit_s, soft_time_limit=settings.soft_time_limit_s)
def batch_score(texts: list[str]) -> list[dict[str, Any]]:
    """Score a list of texts with the current model; returns the seed's row dicts (kept for API users)."""
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise TypeError("sentq.batch_score takes one argument: a list of strings")
    # The bounds of a job's chunk: a message of any size would hold a process (and its result Redis) as long.
    if len(texts) > settings.chunk_size_max or sum(map(len, texts)) > rows.MAX_CHUNK_CHARS:
        raise ValueError(
            f"sentq.batch_score takes at most {settings.chunk_size_max:,} texts and {rows.MAX_CHUNK_CHARS:,} "
            "characters in all; submit a job for more (sentq submit, sentq.submit)"
        )
    if any(len(t) > settings.max_text_chars for t in texts):
        raise ValueError(f"sentq.batch_score: a text is longer than SENTQ_MAX_TEXT_CHARS ({settings.max_text_chars:,})")
    _, model = current_model()
    return score_rows(model, texts)


@app.task(name="sentq.retrain", time_limit=settings.task_time_limit_s, soft_time_limit=settings.soft_time_limit_s)
def retrain(data: str | None = None, force: bool | str = False) -> dict[str, Any]:
    """Train on the default data (or on data `sentq retrain --data` shipped under token ``data``), store a new
    version, and make it current unless it is worse than the current one by more than the margin (or ``force``:
    a grant `sentq retrain --force` stored in the registry; ``force=True`` from a message alone is refused)."""
    if not isinstance(force, bool | str) or not (data is None or isinstance(data, str)):
        raise TypeError(
            "sentq.retrain takes data (a token from `sentq retrain --data`, or None) and force (a grant from "
            "`sentq retrain --force`, or False)"
        )
    client = backend()
    try:
        grant = registry.check_force(client, force)
    except PermissionError as exc:
        log.warning("refused a sentq.retrain message: %s", exc)
        raise
    started = time.perf_counter()
    outcome = registry.retrain(client, settings, data_token=data, force=grant is not None)
    if grant is not None:
        client.delete(keys.force_grant(grant))
    if outcome.promotion.promoted:  # this process serves it next; a candidate left aside is loaded only if asked
        _models[outcome.meta.ref] = outcome.model
        while len(_models) > MODEL_CACHE_SIZE:
            _models.popitem(last=False)
    result = outcome.to_result()
    if outcome.unchanged:
        log.info(
            "retrained in %.1f s on %s: %s; nothing new stored",
            time.perf_counter() - started,
            outcome.meta.source,
            outcome.promotion.reason,
        )
        return result
    if outcome.pruned:
        log.info(
            "removed model versions %s (SENTQ_MODEL_KEEP=%d)",
            ", ".join(f"v{v}" for v in outcome.pruned),
            settings.model_keep,
        )
    (log.info if outcome.promotion.promoted else log.warning)(
        "retrained v%d in %.1f s on %s: %s; %s",
        outcome.meta.version,
        time.perf_counter() - started,
        outcome.meta.source,
        "made current" if outcome.promotion.promoted else "NOT made current",
        outcome.promotion.reason,
    )
    return result


# Celery beat (`sentq beat`): celery-redbeat keeps the schedule and a one-active-scheduler lock in the backend Redis.
app.conf.update(schedule.beat_config(settings))


@signals.beat_init.connect
def _check_schedule(**_: Any) -> None:
    """`sentq beat` refuses a bad schedule up front; a plain `celery beat` on the app at least says why it idles."""
    try:
        schedule.parse(settings.retrain_schedule)
    except ConfigError as exc:
        log.error("%s; beat has nothing to schedule", exc)


def well_formed(job_id: object, index: object, sent_at: object) -> bool:
    """The arguments of a score_chunk message as sentq's producers and reconciler send them."""
    return (
        isinstance(job_id, str)
        and keys.is_job_id(job_id)
        and type(index) is int
        and 0 <= index < MAX_CHUNKS
        and (
            sent_at is None
            or (isinstance(sent_at, int | float) and not isinstance(sent_at, bool) and math.isfinite(sent_at))
        )
    )


# More chunks than any job can have (a job's chunks are numbered from 0; a billion texts in chunks of one).
MAX_CHUNKS = 1_000_000_000


@app.task(
    name="sentq.score_chunk",
    bind=True,
    ignore_result=True,  # the rows go to the job's own result keys, not to Celery's result backend
    time_limit=settings.task_time_limit_s,
    soft_time_limit=settings.soft_time_limit_s,
)
def score_chunk(self: Any, job_id: str, index: int, sent_at: float | None = None) -> str:
    """Score chunk ``index`` of job ``job_id`` (texts staged in Redis); idempotent under redelivery.

    The chunk is leased in the ledger to this worker first, so the reconciler knows who holds it. A Redis hiccup (a
    restart) is waited out here, with backoff, rather than by Celery's retry: that would have to publish a new message
    to the very Redis that is down. Every step below is idempotent, so repeating one is safe.
    """
    if not well_formed(job_id, index, sent_at):
        log.warning("refused a sentq.score_chunk message with arguments not of sentq's making: %.200r", (job_id, index))
        return "refused"
    client = backend()
    work = patiently(ledger.claim, client, job_id, index, holder=instance)
    if work.state is None:
        return "expired"
    if work.unknown:
        log.warning(
            "refused a sentq.score_chunk message for chunk %d of job %s: the ledger has no such chunk", index, job_id
        )
        return "refused"
    if work.done or work.failed:
        return "duplicate"
    if work.stopped:
        return "skipped"
    if work.payload is None:
        patiently(ledger.fail, client, job_id, index, "the chunk's input is missing from Redis (expired or flushed)")
        return "missing"
    if work.deliveries > settings.max_deliveries + PROBE_DELIVERIES:
        patiently(
            ledger.fail,
            client,
            job_id,
            index,
            f"delivered {work.deliveries} times without finishing, even piece by piece: its worker process died each "
            "time (out of memory? killed?); see the worker logs, then `sentq retry`",
        )
        return "poison"
    started = time.time()
    try:
        ref = work.model or patiently(
            jobs.pin_model, client, job_id, patiently(registry.ensure_current, client, settings)
        )
        model = patiently(model_for, ref)
        lines, texts = rows.decode_chunk(work.payload)
    except (redis.ConnectionError, redis.TimeoutError):
        raise
    except Exception as exc:  # the chunk as a whole cannot be scored (model refused, input corrupt): record it
        patiently(ledger.fail, client, job_id, index, f"{type(exc).__name__}: {exc}")
        raise
    version = f"v{registry.ref_version(ref)}"

    def score(lo: int, hi: int) -> bytes:
        return rows.score_codes(model.predict_proba(texts[lo:hi]))

    probing = work.deliveries > settings.max_deliveries
    try:
        if probing:  # its process died on it max_deliveries times: score it piece by piece, checkpointed
            log.warning(
                "chunk %d of job %s killed its process %d times: probing it", index, job_id, work.deliveries - 1
            )
            out, scored, bad = probe(client, job_id, index, lines, score, deliveries=work.deliveries)
        else:
            out, scored, bad = isolate(lines, score)
    except TooManyBad as exc:
        patiently(ledger.fail, client, job_id, index, str(exc))
        return "failed"
    wait_s = max(started - sent_at, 0.0) if sent_at else 0.0
    # The scores and the staged texts, compressed together: the staged input can go once the chunk is done
    out = rows.pack_result(version, out, work.payload, first=lines[0] if lines else 0)
    seen = json.dumps({"model": ref, "pid": os.getpid(), "at": round(time.time(), 3)})
    counted = patiently(
        ledger.complete,
        client,
        job_id,
        index,
        rows=out,
        texts=scored,
        compute_s=time.time() - started,
        wait_s=wait_s,
        bad=bad,
        worker=(self.request.hostname or socket.gethostname(), seen),
    )
    if probing:
        patiently(ledger.probe_clear, client, job_id, index)
    if not counted:  # another delivery wrote it first (e.g. this worker was cut off and the chunk re-sent)
        log.info("chunk %d of job %s was already written by another delivery; this one changed nothing", index, job_id)
        return "duplicate"
    return "done" if not bad else "partial"


# A chunk with more texts than this failing alone fails as a whole: something systematic is wrong, not one text.
MAX_BAD_TEXTS = 100
# Deliveries past max_deliveries spent probing a chunk that kills its process (each death halves the piece tried:
# about log2(chunk size) deaths per killing text); past them the chunk is recorded failed.
PROBE_DELIVERIES = 64


class TooManyBad(Exception):
    """Raised when more than MAX_BAD_TEXTS texts of one chunk fail alone."""


def isolate(
    lines: list[int], score: Callable[[int, int], bytes], lo: int = 0, hi: int | None = None
) -> tuple[bytes, int, dict[int, str]]:
    """Score texts ``lo..hi`` with ``score``; where it raises, bisect down to the texts that fail alone.

    Returns the result codes of texts ``lo..hi`` in input order (``rows.FAILED`` for a text that failed alone), how
    many scored, and input line -> error of the others.
    """
    from celery.exceptions import SoftTimeLimitExceeded

    bad: dict[int, str] = {}
    parts: list[bytes] = []
    scored = 0

    def run(a: int, b: int) -> None:
        nonlocal scored
        try:
            parts.append(score(a, b))
            scored += b - a
        except (SoftTimeLimitExceeded, redis.ConnectionError, redis.TimeoutError):
            raise
        except Exception as exc:
            if b - a == 1:
                bad[lines[a]] = f"{type(exc).__name__}: {exc}"
                parts.append(rows.FAILED)
                if len(bad) > MAX_BAD_TEXTS:
                    raise TooManyBad(
                        f"over {MAX_BAD_TEXTS} texts of this chunk failed alone (first: line {min(bad)}: "
                        f"{bad[min(bad)]}); something systematic is wrong: see the worker logs"
                    ) from None
                return
            mid = (a + b) // 2
            run(a, mid)
            run(mid, b)

    run(lo, len(lines) if hi is None else hi)
    return b"".join(parts), scored, bad


def probe(
    client: redis.Redis,
    job_id: str,
    index: int,
    lines: list[int],
    score: Callable[[int, int], bytes],
    *,
    deliveries: int,
) -> tuple[bytes, int, dict[int, str]]:
    """Score a chunk that keeps killing its process piece by piece, with a checkpoint in Redis before each piece.

    A delivery that finds the last piece unfinished (its process died in it) halves the piece; a single text that
    kills its process is recorded failed and skipped; pieces grow again after each success. Returns what isolate does.
    Two deliveries may run at once (the broker's and the reconciler's): every checkpoint write names the version it
    read, so only one of them moves it; one that finds the other still scoring a piece waits for it.
    """
    n = len(lines)
    half = max(1, (n + 1) // 2)
    me = f"{instance}|{os.getpid()}"
    fresh: dict[str, Any] = {"offset": 0, "step": half, "trying": False, "bad": {}, "scored": 0, "v": 0}
    state = patiently(ledger.probe_state, client, job_id, index) or fresh
    pause = 0.01
    while state["offset"] < n:
        offset = state["offset"]
        if state["trying"] and prober_alive(client, state.get("owner"), me, f"{job_id}:{index}"):
            time.sleep(pause)  # another delivery is scoring this piece: see what it finds
            pause = min(pause * 2, 0.5)
            state = reread(client, job_id, index, state)
            continue
        if state["trying"]:  # the previous delivery died scoring [offset, offset + step)
            moved = dict(state, trying=False)
            if state["step"] == 1:
                moved["bad"] = state["bad"] | {
                    str(lines[offset]): f"its worker process died scoring it ({deliveries - 1} deliveries of its chunk)"
                }
                moved["offset"] = offset + 1
                if len(moved["bad"]) > MAX_BAD_TEXTS:
                    raise TooManyBad(f"over {MAX_BAD_TEXTS} texts of this chunk killed their worker process")
            else:
                moved["step"] = (state["step"] + 1) // 2
            killed = rows.FAILED if state["step"] == 1 else b""  # its one text has no result
            read = state.get("v", 0)
            if not patiently(
                ledger.probe_commit, client, job_id, index, offset=offset, state=moved, rows=killed, read=read
            ):
                state = reread(client, job_id, index, state)
                continue
            state = dict(moved, v=read + 1)
            continue
        step = min(state["step"], n - offset)
        trying = dict(state, trying=True, owner=me)
        if not patiently(ledger.probe_save, client, job_id, index, trying, read=state.get("v", 0)):
            state = reread(client, job_id, index, state)  # a racing delivery wrote it: go on from there
            continue
        read = state.get("v", 0) + 1
        out, scored, bad = isolate(lines, score, offset, offset + step)
        after = {
            "offset": offset + step,
            "step": min(step * 2, half),
            "trying": False,
            "bad": state["bad"] | {str(k): v for k, v in bad.items()},
            "scored": state["scored"] + scored,
        }
        if len(after["bad"]) > MAX_BAD_TEXTS:
            raise TooManyBad(f"over {MAX_BAD_TEXTS} texts of this chunk failed alone or killed their process")
        if not patiently(ledger.probe_commit, client, job_id, index, offset=offset, state=after, rows=out, read=read):
            state = reread(client, job_id, index, state)  # a racing delivery moved it
            continue
        state = dict(after, v=read + 1)
    out = patiently(ledger.probe_rows, client, job_id, index)
    return out, int(state["scored"]), {int(k): v for k, v in state["bad"].items()}


def prober_alive(client: redis.Redis, owner: str | None, me: str, item: str) -> bool:
    """Whether the delivery that saved a probe checkpoint (``owner``: instance|pid) may still be scoring its piece:
    not this process, and its process alive (same worker) or its worker running ``item`` (by its heartbeat)."""
    if not owner or owner == me:
        return False
    where, _, pid = owner.rpartition("|")
    if where == instance:
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, ValueError):
            return False
        except PermissionError:
            return True
        return True
    return bool(patiently(ledger.runs, client, where, item))


def reread(client: redis.Redis, job_id: str, index: int, state: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] | None = patiently(ledger.probe_state, client, job_id, index)
    return found or state


# How long a task waits for Redis to come back before giving up (its message is then redelivered after the
# visibility timeout): long enough for a restart, well inside the soft time limit.
REDIS_PATIENCE_S = 60.0
T = TypeVar("T")


def patiently(step: Callable[..., T], *args: Any, **kwargs: Any) -> T:  # noqa: UP047
    """Run an idempotent Redis step, retrying connection errors with backoff for up to REDIS_PATIENCE_S."""
    deadline = time.monotonic() + min(REDIS_PATIENCE_S, settings.soft_time_limit_s / 2)
    delay = 0.2
    while True:
        try:
            return step(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("Redis unavailable (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def publisher(queue: str | None = None) -> Callable[[str, list[int], float], None]:
    """A function that queues score_chunk tasks for chunks the ledger has just recorded sent (at ``sent_at``)."""

    def publish(job_id: str, indexes: list[int], sent_at: float) -> None:
        try:
            with app.producer_or_acquire() as producer:
                for index in indexes:
                    # argsrepr/kwargsrepr given: Celery would otherwise saferepr() them for each message (its headers
                    # show them in Flower), a tenth of the producer's time per chunk.
                    score_chunk.apply_async(
                        (job_id, index),
                        {"sent_at": sent_at},
                        producer=producer,
                        queue=queue or settings.queue,
                        argsrepr=f"('{job_id}', {index})",
                        kwargsrepr=f"{{'sent_at': {sent_at!r}}}",
                    )
        except OperationalError as exc:  # kombu's word for "the broker is gone", after its bounded retries
            raise store.unavailable(settings.broker_url, exc) from None

    return publish


# Who holds a lease: this worker (node name, main pid, a nonce against pid reuse). Set in the main process before the
# pool forks, so every pool process leases chunks in its worker's name; the heartbeat says whether it lives.
instance = f"{socket.gethostname()}/{os.getpid()}"


@signals.worker_init.connect
def _bootstrap_model(sender: Any = None, **_: Any) -> None:
    """Before forking, name this worker and make sure a current model exists and is loaded (the pool inherits it)."""
    global instance
    instance = f"{getattr(sender, 'hostname', None) or socket.gethostname()}/{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        ref = registry.ensure_current(backend(), settings)
        model_for(ref)  # pool processes are forked from here: each starts with the model, no load per recycle
        log.info(
            "sentq worker on %s: model v%s is current; backend %s",
            socket.gethostname(),
            ref,
            mask_url(settings.backend_url),
        )
    except (SentqError, redis.RedisError) as exc:
        log.error("could not prepare a model at start (will retry on first task): %s", exc)
    finally:
        global _client
        _client = None  # never carry a connection across fork


@signals.worker_ready.connect
def _start_keepers(sender: Any = None, **_: Any) -> None:
    """In the main process: the heartbeat, and a reconciler that works while it holds the lock."""
    queues = [settings.queue, settings.retrain_queue]
    try:
        queues = sorted(q.name for q in sender.task_consumer.queues)
    except AttributeError:
        pass
    concurrency = int(getattr(getattr(sender, "controller", None), "concurrency", 0) or 0)
    info = {"host": socket.gethostname(), "pid": os.getpid(), "queues": queues, "concurrency": concurrency}
    keeper = Keeper(info)
    keeper.start()
    _keepers.append(keeper)


@signals.worker_shutdown.connect
def _stop_keepers(**_: Any) -> None:
    for keeper in _keepers:
        keeper.stop()
    _keepers.clear()


_keepers: list[Keeper] = []
# The reconciler also prunes what grows with the workers ever seen (their stats, expired heartbeats) every this many
# sweeps (a minute at the default SENTQ_RECONCILE_EVERY), and at its first sweep as the lock holder.
PRUNE_EVERY_SWEEPS = 12


class Keeper:
    """Two daemon threads of a worker's main process: heartbeat (with the chunks it runs) and reconciler."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._beat_loop, name="sentq-heartbeat", daemon=True),
            threading.Thread(target=self._reconcile_loop, name="sentq-reconciler", daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=5)
        try:
            client = store.connect(settings)
            ledger.unlock(client, settings.broker_family, instance)
            ledger.farewell(client, instance)
        except redis.RedisError as exc:
            log.warning("could not say goodbye to Redis (%s); this worker's heartbeat expires by itself", exc)

    def _beat_loop(self) -> None:
        client = store.connect(settings)
        from celery.worker import state

        down = False
        while not self.stopping.is_set():
            try:
                requests = running_requests(state)
                running = [chunk for chunk in map(chunk_of, requests) if chunk]
                info = self.info | {"busy": len(requests), "tasks_done": sum(state.total_count.values())}
                ledger.beat(client, instance, info=info, running=running, ttl_s=settings.heartbeat_ttl_s)
                if down:
                    log.info("heartbeat: Redis is back")
                down = False
            except redis.RedisError as exc:
                if not down:  # once per outage, not every beat
                    log.warning("heartbeat: Redis unavailable (%s); beating again when it is back", exc)
                down = True
            self.stopping.wait(settings.heartbeat_s)

    def _reconcile_loop(self) -> None:
        client = store.connect(settings)
        broker_client = broker.broker_client(settings)
        publish_to = {}

        def publish(job_id: str, queue: str, indexes: list[int], sent_at: float) -> None:
            if queue not in publish_to:
                publish_to[queue] = publisher(queue)
            publish_to[queue](job_id, indexes, sent_at)

        def view(queue: str) -> ledger.QueueView:
            return broker.view(app, settings, broker_client, queue)

        # After an outage of Redis every heartbeat may have lapsed: give the live workers a heartbeat's lifetime to
        # beat again before judging anyone dead (else their chunks would all be sent twice).
        resume_at = 0.0
        sweeps = 0
        while not self.stopping.wait(settings.reconcile_every_s):
            try:
                if time.monotonic() < resume_at or not ledger.lock(
                    client, settings.broker_family, instance, ttl_s=settings.reconcile_lock_ttl_s
                ):
                    continue
                if sweeps % PRUNE_EVERY_SWEEPS == 0:
                    dropped = ledger.prune_workers(client, keep_s=settings.worker_stats_keep_s, now=time.time())
                    if dropped:
                        keep_s = settings.worker_stats_keep_s
                        log.info("forgot %d workers whose last task is over %d s old", dropped, keep_s)
                sweeps += 1
                sweep = ledger.reconcile(
                    client,
                    broker_id=settings.broker_family,
                    view=view,
                    publish=publish,
                    beat_every_s=settings.heartbeat_s,
                    lost_after_s=settings.lost_after_s,
                )
                for job_id, index, holder in sweep.dead:
                    log.warning("re-sent chunk %d of job %s: its worker %s is dead", index, job_id, holder)
                for job_id, index in sweep.lost:
                    log.warning("re-sent chunk %d of job %s: its message was lost", index, job_id)
                log.debug("reconciled %d jobs in %.1f ms (%d commands)", sweep.jobs, sweep.ms, sweep.commands)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if resume_at <= time.monotonic():
                    log.warning("reconciler: Redis unavailable (%s); resuming once it is back", exc)
                resume_at = time.monotonic() + settings.heartbeat_ttl_s
            except (redis.RedisError, SentqError, OperationalError) as exc:
                log.warning(
                    "reconciler: %s; trying again in %.0f s", mask_secrets(str(exc)), settings.reconcile_every_s
                )


def chunk_of(request: Any) -> str | None:
    """``job:chunk`` of a score_chunk request (None for other tasks, or arguments not of our making)."""
    if request.task_name != score_chunk.name:
        return None
    try:
        job_id, index = request.args[:2]
        return f"{job_id}:{int(index)}"
    except (TypeError, ValueError):
        return None


def running_requests(state: Any) -> list[Any]:
    """The requests this worker has taken (running or about to), copied from sets the consumer thread changes; each
    once (Celery keeps a running request in reserved_requests too: counted from both, a one-process worker running
    one task showed "busy 2")."""
    for _ in range(5):
        try:
            taken = [*state.active_requests, *state.reserved_requests]
        except RuntimeError:  # "set changed size during iteration": read again
            continue
        return list({request.id: request for request in taken}.values())
    return []


@signals.worker_process_init.connect
def _warm_process(**_: Any) -> None:
    """Each pool process opens its own connection and checks it has the current model (inherited, else loaded)."""
    global _client
    _client = None
    try:
        current_model()
    except (SentqError, redis.RedisError) as exc:
        log.error("could not load the current model at process start: %s", exc)
