"""Every Redis key sentq uses, built here and nowhere else, all under the ``sentq:`` prefix."""

from __future__ import annotations

import re

PREFIX = "sentq:"
# A job id as sentq makes them (jobs.new_job_id): 12 lowercase hex digits.
JOB_ID = re.compile(r"[0-9a-f]{12}")


def is_job_id(value: str) -> bool:
    return JOB_ID.fullmatch(value) is not None


# Model registry. Artifacts never expire: a job pinned to a version must find it however long it queued.
MODEL_SEQ = PREFIX + "model:seq"  # INCR gives the next version number
MODEL_CURRENT = PREFIX + "model:current"  # the version new work is scored with
MODEL_VERSIONS = PREFIX + "model:versions"  # hash: version -> metadata JSON
MODEL_BOOTSTRAP_LOCK = PREFIX + "model:bootstrap-lock"  # only one process trains v1 on a fresh install
# Sorted set: version -> until when a job may need it (its record's expiry), written with the job record; the
# registry's retention (Settings.model_keep) never removes a version pinned here.
MODEL_PINS = PREFIX + "model:pins"
DATASET_DEFAULT = PREFIX + "dataset:default"  # the default training set, so workers on other hosts need no files

# Jobs. Every job key expires with result_expires_s, so records and results vanish together.
JOBS_INDEX = PREFIX + "jobs"  # sorted set: job id scored by creation time, for `sentq status`
# Hash: worker node name -> JSON (model, pid, time of its last task), refreshed per task; the reconciler drops a name
# whose last task is older than Settings.worker_stats_keep_s (ledger.prune_workers), readers ask for live names only.
WORKER_STATS = PREFIX + "workers"
# The ledger's working set: job id -> created, for every job not yet finished. The reconciler reads only these, so a
# sweep costs what is in flight, never what ever ran; a job leaves it in the same atomic step that finishes it.
ACTIVE_JOBS = PREFIX + "jobs:active"
# Worker liveness: instance -> its last heartbeat (Redis time); the heartbeat hash itself expires
# (Settings.heartbeat_ttl_s).
WORKERS_LIVE = PREFIX + "workers:live"
# Workers found dead holding chunks: instance -> JSON (when, which chunks); kept ledger.DEAD_KEEP_S for `sentq workers`.
WORKERS_DEAD = PREFIX + "workers:dead"

# Metrics (`/metrics`), kept in Redis so every API process reports the same numbers. Neither expires: they are
# cumulative counters (Prometheus computes rates from them and handles a reset, e.g. a flushed Redis).
# Hash: event -> count, incremented in the very step that makes the event happen (so a duplicate step counts nothing):
# jobs_submitted, jobs_finished:<done|failed|cancelled|invalid>, texts_scored, texts_failed, chunks:<done|failed>,
# chunk_retries.
STATS = PREFIX + "stats"
# Hash: the last hour minute by minute (texts scored, chunks failed, texts failed alone), a ring of
# ledger.MINUTE_SLOTS slots rewritten in place, so it stays small without an expiry (the console's dashboard).
STATS_MINUTES = PREFIX + "stats:minutes"
# Hash: HTTP requests of all API processes (sentq.web.metrics.HttpStats.flush): JSON [kind, route, method, code|le]
# -> count (HINCRBY) or sum of seconds (HINCRBYFLOAT). Routes are templates, so its size stays bounded.
HTTP_STATS = PREFIX + "http:stats"


def session(digest: str) -> str:
    """A console login: the SHA-256 of its cookie (so a copy of Redis holds no cookie that works) -> the fingerprint
    of the token it was made with; expires after Settings.api_session_ttl_s, or at logout."""
    return f"{PREFIX}session:{digest}"


def model_artifact(version: int) -> str:
    return f"{PREFIX}model:{version}:artifact"


def retrain_data(token: str) -> str:
    """Training data shipped by `sentq retrain --data` for a worker on another host; expires after a day."""
    return f"{PREFIX}retrain-data:{token}"


def job(job_id: str) -> str:
    """Hash: the job record (source, counts, state, model version, timings)."""
    return f"{PREFIX}job:{job_id}"


def job_done(job_id: str) -> str:
    """Set of chunk indexes scored; SADD makes a redelivered chunk count once."""
    return f"{PREFIX}job:{job_id}:done"


def job_failed(job_id: str) -> str:
    """Hash: chunk index -> error text of chunks recorded failed."""
    return f"{PREFIX}job:{job_id}:failed"


def job_deliveries(job_id: str) -> str:
    """Hash: chunk index -> times delivered, so a chunk that keeps killing its process stops being retried."""
    return f"{PREFIX}job:{job_id}:deliveries"


def job_digests(job_id: str) -> str:
    """Hash: chunk index -> digest of its staged input, written with it: `submit --resume` and `retry --from` check
    that a file read again holds the same chunks before they stage any of it."""
    return f"{PREFIX}job:{job_id}:digests"


def job_recent(job_id: str) -> str:
    """Sorted set: "index:texts:started" of the chunks scored lately -> when each finished (the ETA's window)."""
    return f"{PREFIX}job:{job_id}:recent"


def job_pending(job_id: str) -> str:
    """Sorted set: chunk index -> when its last message was sent (Redis time), until it is done or failed."""
    return f"{PREFIX}job:{job_id}:pending"


def job_leases(job_id: str) -> str:
    """Hash: chunk index -> "holder|since" of the worker scoring it now."""
    return f"{PREFIX}job:{job_id}:leases"


def job_probe(job_id: str) -> str:
    """Hash: chunk index -> JSON checkpoint of a chunk scored piece by piece after it killed its process N times."""
    return f"{PREFIX}job:{job_id}:probe"


def chunk_partial(job_id: str, index: int) -> str:
    """The result codes so far of a chunk being probed piece by piece (rows.score_codes, appended in input order)."""
    return f"{PREFIX}job:{job_id}:partial:{index}"


def worker_beat(instance: str) -> str:
    """Hash with a short expiry: a worker's heartbeat (info, chunks it is running, Redis time of the beat)."""
    return f"{PREFIX}worker:{instance}"


def reconciler_lock(broker_id: str) -> str:
    """Held (with an expiry) by the one worker that reconciles the ledger for jobs on this broker."""
    return f"{PREFIX}reconciler:{broker_id}:lock"


def chunk_input(job_id: str, index: int) -> str:
    """The chunk's texts and line numbers (rows.encode_chunk / encode_raw), staged by the producer; kept with the
    chunk's result, which holds only scores (the rows are made from both)."""
    return f"{PREFIX}job:{job_id}:in:{index}"


def chunk_output(job_id: str, index: int) -> str:
    """The chunk's result, written by the worker: a score and label per text of its input (rows.pack_result)."""
    return f"{PREFIX}job:{job_id}:out:{index}"


# Training data shipped by `sentq retrain --data`: a day is ample for a worker to pick the retrain up, short enough
# that forgotten uploads do not pile up.
RETRAIN_DATA_TTL_S = 24 * 3600


def force_grant(token: str) -> str:
    """An operator's `sentq retrain --force` (or ``?force=true``): the retrain message carries only this token, so a
    client that can reach the broker but not write the registry cannot force a worse model current. Lives as long
    as shipped training data, and is deleted when the retrain that used it ends."""
    return f"{PREFIX}force-grant:{token}"


# Celery beat (celery-redbeat): its schedule, each entry's last run and the one-active-scheduler lock.
REDBEAT_PREFIX = PREFIX + "redbeat:"


def batch_task(task_id: str) -> str:
    """Marks a `POST /score-batch` task id as issued (expires with results), so an unknown id is a 404."""
    return f"{PREFIX}batch:{task_id}"


def idempotency(key_digest: str) -> str:
    """An upload's Idempotency-Key (its sha256) -> the job it created; expires with the job."""
    return f"{PREFIX}idempotency:{key_digest}"
