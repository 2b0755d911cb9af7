"""The model registry: versioned model artifacts and their metadata in Redis, with a ``current`` pointer."""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
import zipfile
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import redis

from sentq import dataset as dataset_files
from sentq import keys
from sentq.dataset import Dataset, decode_dataset, encode_dataset, load_dataset
from sentq.errors import ConfigError, DatasetMissingError, InputError, ModelError, ModelNotFoundError
from sentq.settings import Settings
from sentq.store import text

if TYPE_CHECKING:  # numpy's import is slow; commands that only read metadata (status, model list) skip it
    from sentq.model import SentimentModel

log = logging.getLogger("sentq.registry")

# How long a process may hold the bootstrap lock while it trains v1; others wait at most this long for it.
BOOTSTRAP_LOCK_S = 120
# A bootstrap that has to download the default data gives pip this long per request (one retry), well inside the
# lock: fetch (two requests) + training (~3 s) must end before the lock expires or another process starts over.
FETCH_NETWORK_TIMEOUT_S = 20.0
# After a failed download, a process does not try again for this long (each chunk of a job would run pip otherwise;
# pool processes inherit this from the worker's start-up attempt). Files that appear on disk are used at once.
FETCH_RETRY_S = 60.0
# `sentq model export` files: a zip of the registry metadata and the artifact, read back by these exact names.
EXPORT_FORMAT = "sentq.model-export"
EXPORT_FORMAT_VERSION = 1
EXPORT_META = "model.json"
EXPORT_ARTIFACT = "model.npz"
# A model artifact is ~0.6 MB; refuse to inflate anything much bigger from an import file (zip bombs).
EXPORT_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class ModelVersion:
    """What the registry knows about one published model."""

    version: int
    created: float
    source: str
    n_train: int
    n_test: int
    accuracy: float
    vocab_size: int
    sha256: str
    size_bytes: int

    @property
    def ref(self) -> str:
        """Version plus a content digest: a cache key that stays right even if a wiped Redis reuses numbers."""
        return self.ref_for(self.version, self.sha256)

    @staticmethod
    def ref_for(version: int, sha256: str) -> str:
        return f"{version}:{sha256[:12]}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ModelVersion:
        return cls(**json.loads(raw))


def publish(
    client: redis.Redis, model: SentimentModel, *, metrics: dict[str, float | int], source: str, make_current: bool
) -> ModelVersion:
    """Store ``model`` as the next version (artifact and metadata in one transaction); optionally make it current."""
    artifact = model.to_bytes()
    version = int(client.incr(keys.MODEL_SEQ))
    meta = ModelVersion(
        version=version,
        created=round(time.time(), 3),
        source=source,
        n_train=int(metrics["n_train"]),
        n_test=int(metrics["n_test"]),
        accuracy=float(metrics["accuracy"]),
        vocab_size=len(model.vocab),
        sha256=model.sha256,
        size_bytes=len(artifact),
    )
    pipe = client.pipeline(transaction=True)
    pipe.set(keys.model_artifact(version), artifact)
    pipe.hset(keys.MODEL_VERSIONS, str(version), meta.to_json())
    if make_current:
        pipe.set(keys.MODEL_CURRENT, meta.ref)
    pipe.execute()
    return meta


def current(client: redis.Redis) -> str | None:
    """The current version's ref, or None on a fresh installation (one Redis round trip)."""
    raw = client.get(keys.MODEL_CURRENT)
    return text(raw) if raw is not None else None


def ref_version(ref: str) -> int:
    """``"3:1a2b..."`` -> 3."""
    return int(ref.split(":", 1)[0])


def get(client: redis.Redis, version: int) -> ModelVersion:
    """Metadata of ``version``; ModelError if the registry has no such version."""
    raw = client.hget(keys.MODEL_VERSIONS, str(version))
    if raw is None:
        known = ", ".join(f"v{v.version}" for v in versions(client)) or "none"
        raise ModelNotFoundError(
            f"model version v{version} is not in the registry (known: {known}); see `sentq model list`"
        )
    return ModelVersion.from_json(raw)


def versions(client: redis.Redis) -> list[ModelVersion]:
    """All published versions, oldest first."""
    found = [ModelVersion.from_json(raw) for raw in client.hvals(keys.MODEL_VERSIONS)]
    return sorted(found, key=lambda v: v.version)


# Make a version current only if it is still registered (the retention's prune may remove it meanwhile).
# KEYS: versions, current  ARGV: version, ref
_USE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""


def use(client: redis.Redis, version: int) -> ModelVersion:
    """Make ``version`` current (rollback or roll forward); new jobs are scored with it."""
    meta = get(client, version)
    if not int(client.eval(_USE, 2, keys.MODEL_VERSIONS, keys.MODEL_CURRENT, str(version), meta.ref)):
        get(client, version)  # removed since it was read: say so as for any unknown version
    return meta


def exists(client: redis.Redis, version: int) -> bool:
    return bool(client.hexists(keys.MODEL_VERSIONS, str(version)))


# Remove the versions given unless, now, one is current or pinned by a job (MODEL_PINS); expired pins are dropped.
# Artifact and metadata go in one step, so a reader sees a version whole or not at all.
# KEYS: versions, current, pins, then each candidate's artifact  ARGV: now, then each candidate's version
# Returns the versions removed.
_PRUNE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local cur = redis.call('GET', KEYS[2])
local current = cur and string.match(cur, '^(%d+):') or ''
local removed = {}
for i = 2, #ARGV do
  local v = ARGV[i]
  if v ~= current and not redis.call('ZSCORE', KEYS[3], v) then
    redis.call('HDEL', KEYS[1], v)
    redis.call('DEL', KEYS[2 + i])
    removed[#removed + 1] = v
  end
end
return removed
"""


def prune(client: redis.Redis, *, keep: int) -> list[int]:
    """Remove the versions older than the newest ``keep`` (Settings.model_keep), except the current one and any a
    job is pinned to: pinned at submission (MODEL_PINS, kept for the job record's lifetime) or by an unfinished job
    (read here, so a job submitted by an earlier sentq is covered too). Returns the versions removed, oldest first.
    """
    numbers = sorted((int(v) for v in client.hkeys(keys.MODEL_VERSIONS)), reverse=True)
    candidates = numbers[keep:]
    if not candidates:
        return []
    active = [text(j) for j in client.zrange(keys.ACTIVE_JOBS, 0, -1)]  # type: ignore[arg-type]
    pipe = client.pipeline(transaction=False)
    for job_id in active:
        pipe.hget(keys.job(job_id), "model")
    in_use = {ref_version(text(ref)) for ref in (pipe.execute() if active else []) if ref}
    candidates = [v for v in candidates if v not in in_use]
    if not candidates:
        return []
    removed = client.eval(
        _PRUNE,
        3 + len(candidates),
        keys.MODEL_VERSIONS,
        keys.MODEL_CURRENT,
        keys.MODEL_PINS,
        *[keys.model_artifact(v) for v in candidates],
        repr(time.time()),
        *map(str, candidates),
    )
    return sorted(int(v) for v in removed)


def load(client: redis.Redis, version: int) -> SentimentModel:
    """Fetch and verify the artifact of ``version`` (its sha256 must match the metadata)."""
    pipe = client.pipeline(transaction=True)  # both or neither: the retention removes a version in one step
    pipe.get(keys.model_artifact(version))
    pipe.hget(keys.MODEL_VERSIONS, str(version))
    artifact, raw_meta = pipe.execute()
    if artifact is None or raw_meta is None:
        raise ModelNotFoundError(f"model version v{version} is not in the registry; see `sentq model list`")
    from sentq.model import SentimentModel

    model = SentimentModel.from_bytes(artifact)
    expected = ModelVersion.from_json(raw_meta).sha256
    if model.sha256 != expected:
        raise ModelError(f"model version v{version} does not match its recorded sha256 (tampered or corrupt)")
    return model


def default_dataset(client: redis.Redis, settings: Settings) -> Dataset:
    """The default training set: from Redis if a host already put it there, else from this host's data dir,
    fetched there first when it is missing (an installed worker on a fresh installation needs no setup step)."""
    raw = client.get(keys.DATASET_DEFAULT)
    if raw is not None:
        return decode_dataset(raw)  # type: ignore[arg-type]
    if not dataset_files.files_ok(settings.data_dir):
        _fetch_default(settings)
    dataset = load_dataset(settings.data_dir)
    client.set(keys.DATASET_DEFAULT, encode_dataset(dataset), nx=True)
    return dataset


# (monotonic time, message) of this process's last failed download of the default data.
_fetch_failed: tuple[float, str] | None = None


def _fetch_default(settings: Settings) -> None:
    """Download the default training data into the data dir, or raise DatasetMissingError naming the commands that
    get it there by hand (`sentq data fetch`, `--from FILE` on a host without internet access)."""
    global _fetch_failed
    if _fetch_failed is not None and time.monotonic() - _fetch_failed[0] < FETCH_RETRY_S:
        raise DatasetMissingError(_fetch_failed[1])
    log.warning(
        "the default training data is neither in Redis nor in %s: fetching it (%s) to train the first model",
        settings.data_dir,
        dataset_files.SDIST_REQUIREMENT,
    )
    started = time.monotonic()
    try:
        directory = dataset_files.fetch(settings.data_dir, network_timeout_s=FETCH_NETWORK_TIMEOUT_S)
    except DatasetMissingError as exc:
        message = (
            f"no model yet, and the default training data is neither in Redis nor in {settings.data_dir} "
            f"(SENTQ_DATA_DIR); this worker could not fetch it: {exc}. Once `sentq data fetch` has put it in this "
            "data dir (or `sentq data fetch --upload` on any host, into Redis for every worker), `sentq retry JOB`"
        )
        _fetch_failed = (time.monotonic(), message)
        raise DatasetMissingError(message) from None
    _fetch_failed = None
    log.warning("fetched the default training data into %s in %.1f s", directory, time.monotonic() - started)


def stored_default_dataset(client: redis.Redis) -> Dataset | None:
    """The default training set as a host put it in Redis, or None (`sentq data show`)."""
    raw = client.get(keys.DATASET_DEFAULT)
    return decode_dataset(raw) if raw is not None else None  # type: ignore[arg-type]


def share_default_dataset(client: redis.Redis, dataset: Dataset) -> None:
    """Put the default training set in Redis (replacing what is there), so workers on every host bootstrap from it
    without data files of their own (`sentq data fetch --upload`)."""
    client.set(keys.DATASET_DEFAULT, encode_dataset(dataset))


def train_on(dataset: Dataset) -> tuple[SentimentModel, dict[str, float | int]]:
    """Fit and evaluate a model on ``dataset`` (with its sentiment lexicon, when it carries one)."""
    from sentq.model import train

    return train(dataset.texts, dataset.labels, lexicon=dataset.lexicon or None)


def ensure_current(client: redis.Redis, settings: Settings) -> str:
    """The current version's ref, training and publishing v1 from the default data on a fresh installation.

    One process trains (it holds a lock in Redis); the others wait for its result instead of training too.
    """
    found = current(client)
    if found is not None:
        return found
    deadline = time.monotonic() + BOOTSTRAP_LOCK_S
    while time.monotonic() < deadline:
        if client.set(keys.MODEL_BOOTSTRAP_LOCK, "1", nx=True, ex=BOOTSTRAP_LOCK_S):
            try:
                found = current(client)
                if found is not None:
                    return found
                dataset = default_dataset(client, settings)  # may download it first (seconds)
                client.expire(keys.MODEL_BOOTSTRAP_LOCK, BOOTSTRAP_LOCK_S)  # the training gets the lock's full time
                model, metrics = train_on(dataset)
                return publish(client, model, metrics=metrics, source=dataset.source, make_current=True).ref
            finally:
                client.delete(keys.MODEL_BOOTSTRAP_LOCK)
        time.sleep(0.2)
        found = current(client)
        if found is not None:
            return found
    raise DatasetMissingError("timed out waiting for another process to train the first model version")


def parse_version(raw: str) -> int:
    """``"3"`` or ``"v3"`` -> 3 (what operators type after `sentq model show`)."""
    match = re.fullmatch(r"[vV]?0*(\d{1,9})", raw.strip())
    if match is None or int(match.group(1)) < 1:
        raise ConfigError(f"{raw!r} is not a model version; give a number like 3 or v3 (see `sentq model list`)")
    return int(match.group(1))


def verify(client: redis.Redis, version: int) -> ModelVersion:
    """Metadata of ``version`` after loading its artifact and checking its sha256 (ModelError if it is bad)."""
    meta = get(client, version)
    load(client, version)
    return meta


@dataclass(frozen=True)
class Promotion:
    """Whether a retrained version was made current, and why (in words an operator can act on)."""

    promoted: bool
    reason: str
    previous: ModelVersion | None  # the version that was current when the candidate was judged


def judge(candidate_accuracy: float, current_meta: ModelVersion | None, *, margin: float, force: bool) -> Promotion:
    """The promotion guard: a candidate more than ``margin`` less accurate (held-out) than the current one is not
    made current unless ``force``."""
    if current_meta is None:
        return Promotion(True, "no version was current", None)
    cur = current_meta.accuracy
    # Accuracies are stored to 4 decimals; the epsilon keeps "exactly at the margin" on the promoted side.
    if candidate_accuracy >= cur - margin - 1e-9:
        return Promotion(
            True, f"held-out accuracy {candidate_accuracy:.4f} vs {cur:.4f} of v{current_meta.version}", current_meta
        )
    gap = f"{cur - candidate_accuracy:.4f} below v{current_meta.version}'s {cur:.4f}"
    if force:
        return Promotion(True, f"forced: held-out accuracy {candidate_accuracy:.4f} is {gap}", current_meta)
    return Promotion(
        False,
        f"held-out accuracy {candidate_accuracy:.4f} is {gap}, more than the promotion margin {margin:g} "
        f"(SENTQ_PROMOTE_MARGIN); v{current_meta.version} stays current",
        current_meta,
    )


@dataclass(frozen=True)
class Retrained:
    """What a retrain produced: the stored version (the current one when ``unchanged``), its model, the promotion
    decision, and the versions the retention removed."""

    meta: ModelVersion
    model: SentimentModel
    promotion: Promotion
    unchanged: bool = False  # the model came out identical (sha256) to the current version: nothing was stored
    pruned: tuple[int, ...] = ()

    def to_result(self) -> dict[str, object]:
        """The `sentq.retrain` task's JSON result (the seed's keys first)."""
        current_version = (
            self.meta.version if self.promotion.promoted else (self.promotion.previous or self.meta).version
        )
        return {
            "status": "retrained",
            "vocab_size": self.meta.vocab_size,
            "accuracy": self.meta.accuracy,
            "version": self.meta.version,
            "unchanged": self.unchanged,
            "pruned": list(self.pruned),
            "promoted": self.promotion.promoted,
            "reason": self.promotion.reason,
            "current": current_version,
            "previous": self.promotion.previous.version if self.promotion.previous else None,
            "previous_accuracy": self.promotion.previous.accuracy if self.promotion.previous else None,
            "n_train": self.meta.n_train,
            "n_test": self.meta.n_test,
            "source": self.meta.source,
            "sha256": self.meta.sha256,
        }


def retrain(
    client: redis.Redis, settings: Settings, *, data_token: str | None = None, force: bool = False
) -> Retrained:
    """Train on shipped data (``data_token``) or the default data, store the result as a new version, and make
    it current if the promotion guard (or ``force``) allows."""
    if data_token is None:
        dataset = default_dataset(client, settings)
    else:
        dataset = shipped_dataset(client, data_token)
        if not dataset.lexicon:
            # The word-valence lexicon is a prior, not training data: a model trained on other texts still uses it.
            try:
                lexicon = default_dataset(client, settings).lexicon
            except DatasetMissingError:
                lexicon = {}
            dataset = Dataset(dataset.texts, dataset.labels, dataset.source, lexicon)
    model, metrics = train_on(dataset)
    # Judge against what is current now, after training, not what was current when the task started.
    ref = current(client)
    current_meta = get(client, ref_version(ref)) if ref is not None else None
    if data_token is not None:
        client.delete(keys.retrain_data(data_token))
    if current_meta is not None and current_meta.sha256 == model.sha256:
        # Training is deterministic: the same data gives the same model. A nightly retrain on unchanged data would
        # otherwise store a copy of the current version every night.
        same = Promotion(
            False, f"the model is identical (sha256) to v{current_meta.version}, the current version", current_meta
        )
        return Retrained(current_meta, model, same, unchanged=True)
    promotion = judge(float(metrics["accuracy"]), current_meta, margin=settings.promote_margin, force=force)
    meta = publish(client, model, metrics=metrics, source=dataset.source, make_current=promotion.promoted)
    return Retrained(meta, model, promotion, pruned=tuple(prune(client, keep=settings.model_keep)))


def ship_dataset(client: redis.Redis, dataset: Dataset) -> str:
    """Store ``dataset`` in Redis for a retrain on any host; returns the token the retrain task takes."""
    token = uuid.uuid4().hex
    client.set(keys.retrain_data(token), encode_dataset(dataset), ex=keys.RETRAIN_DATA_TTL_S)
    return token


def grant_force(client: redis.Redis) -> str:
    """A one-retrain permission to promote a less accurate model (`sentq retrain --force`): the token to send."""
    token = uuid.uuid4().hex
    client.set(keys.force_grant(token), b"1", ex=keys.RETRAIN_DATA_TTL_S)
    return token


def check_force(client: redis.Redis, force: object) -> str | None:
    """The grant token a `sentq.retrain` message's ``force`` names, checked in the registry; None for no force.

    ``force=True`` itself is refused: anyone who can send to the broker could send it, and a worse model current
    is an operator's decision (`sentq retrain --force`, `sentq model use N`), both of which need the registry."""
    if force is False or force is None:
        return None
    if not isinstance(force, str) or not re.fullmatch(r"[0-9a-f]{32}", force):
        raise PermissionError(
            "sentq.retrain: force must come from a sentq client (a grant it stores in the registry), not the message "
            "alone; use `sentq retrain --force`, POST /v1/retrain?force=true, or `sentq model use N`"
        )
    if not client.exists(keys.force_grant(force)):
        raise PermissionError(
            f"sentq.retrain: the --force grant {force} is not in the registry (it was used, expired after a day, or "
            "was never made there); run `sentq retrain --force` again"
        )
    return force


def shipped_dataset(client: redis.Redis, token: str) -> Dataset:
    """The dataset `sentq retrain --data` shipped under ``token``."""
    if not re.fullmatch(r"[0-9a-f]{32}", token):
        raise InputError(f"retrain data token {token!r} is malformed (expected 32 hex digits from `sentq retrain`)")
    raw = client.get(keys.retrain_data(token))
    if raw is None:
        raise DatasetMissingError(
            f"the training data of this retrain ({token}) is gone from Redis (it expires after a day, or was used); "
            "run `sentq retrain --data FILE` again"
        )
    return decode_dataset(raw)  # type: ignore[arg-type]


def export_bytes(client: redis.Redis, version: int) -> bytes:
    """A portable file of ``version``: its metadata and its verified artifact, for `sentq model import` elsewhere."""
    meta = get(client, version)
    artifact = client.get(keys.model_artifact(version))
    if artifact is None:
        raise ModelError(f"model version v{version} has no artifact in the registry")
    load(client, version)  # never export a tampered artifact
    header = {"format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION, "model": asdict(meta)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(EXPORT_META, json.dumps(header, indent=2, sort_keys=True))
        zf.writestr(EXPORT_ARTIFACT, artifact)
    return buf.getvalue()


def import_bytes(client: redis.Redis, data: bytes, *, where: str, make_current: bool) -> tuple[ModelVersion, bool]:
    """Publish the model of an export file as this registry's next version; returns it and whether it was new
    (a model whose sha256 is already registered is not stored twice)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            sizes = {info.filename: info.file_size for info in zf.infolist()}
            if EXPORT_META not in sizes or EXPORT_ARTIFACT not in sizes:
                raise ModelError(f"{where} is not a `sentq model export` file (no {EXPORT_META} / {EXPORT_ARTIFACT})")
            if sum(sizes.values()) > EXPORT_MAX_BYTES:
                raise ModelError(f"{where} inflates to over {EXPORT_MAX_BYTES} bytes; refusing to read it")
            header = json.loads(zf.read(EXPORT_META).decode("utf-8"))
            artifact = zf.read(EXPORT_ARTIFACT)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{where} is not a readable `sentq model export` file ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise ModelError(f"{where} is not a `sentq model export` file (format {header.get('format')!r})")
    if header.get("format_version") != EXPORT_FORMAT_VERSION:
        raise ModelError(f"{where} has export format version {header.get('format_version')!r}; this sentq reads 1")
    try:
        theirs = ModelVersion(**header["model"])
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{where}: unreadable model metadata ({exc})") from None
    from sentq.model import SentimentModel

    model = SentimentModel.from_bytes(artifact)
    if model.sha256 != theirs.sha256:
        raise ModelError(f"{where}: the model does not match its recorded sha256 (tampered or corrupt)")
    for known in versions(client):
        if known.sha256 == model.sha256:
            if make_current:
                use(client, known.version)
            return known, False
    meta = publish(
        client,
        model,
        metrics={"accuracy": theirs.accuracy, "n_train": theirs.n_train, "n_test": theirs.n_test},
        source=f"{theirs.source} (imported: v{theirs.version} of another registry)",
        make_current=make_current or current(client) is None,
    )
    return meta, True
