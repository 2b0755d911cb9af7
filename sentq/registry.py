"""The model registry: versioned model artifacts and their metadata in Redis, with a ``current`` pointer."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import redis

from sentq import keys
from sentq.dataset import Dataset, decode_dataset, encode_dataset, load_dataset
from sentq.errors import DatasetMissingError, ModelError
from sentq.model import SentimentModel, train
from sentq.settings import Settings
from sentq.store import text

# How long a process may hold the bootstrap lock while it trains v1; others wait at most this long for it.
BOOTSTRAP_LOCK_S = 120


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
        raise ModelError(f"model version v{version} is not in the registry (known: {known}); see `sentq model list`")
    return ModelVersion.from_json(raw)


def versions(client: redis.Redis) -> list[ModelVersion]:
    """All published versions, oldest first."""
    found = [ModelVersion.from_json(raw) for raw in client.hvals(keys.MODEL_VERSIONS)]
    return sorted(found, key=lambda v: v.version)


def use(client: redis.Redis, version: int) -> ModelVersion:
    """Make ``version`` current (rollback or roll forward); new jobs are scored with it."""
    meta = get(client, version)
    client.set(keys.MODEL_CURRENT, meta.ref)
    return meta


def load(client: redis.Redis, version: int) -> SentimentModel:
    """Fetch and verify the artifact of ``version`` (its sha256 must match the metadata)."""
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.model_artifact(version))
    pipe.hget(keys.MODEL_VERSIONS, str(version))
    artifact, raw_meta = pipe.execute()
    if artifact is None or raw_meta is None:
        raise ModelError(f"model version v{version} is not in the registry; see `sentq model list`")
    model = SentimentModel.from_bytes(artifact)
    expected = ModelVersion.from_json(raw_meta).sha256
    if model.sha256 != expected:
        raise ModelError(f"model version v{version} does not match its recorded sha256 (tampered or corrupt)")
    return model


def default_dataset(client: redis.Redis, settings: Settings) -> Dataset:
    """The default training set: from Redis if a host already put it there, else from this host's data dir."""
    raw = client.get(keys.DATASET_DEFAULT)
    if raw is not None:
        return decode_dataset(raw)  # type: ignore[arg-type]
    dataset = load_dataset(settings.data_dir)
    client.set(keys.DATASET_DEFAULT, encode_dataset(dataset), nx=True)
    return dataset


def train_on(dataset: Dataset) -> tuple[SentimentModel, dict[str, float | int]]:
    """Fit and evaluate a model on ``dataset`` (with its sentiment lexicon, when it carries one)."""
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
                dataset = default_dataset(client, settings)
                model, metrics = train_on(dataset)
                return publish(client, model, metrics=metrics, source=dataset.source, make_current=True).ref
            finally:
                client.delete(keys.MODEL_BOOTSTRAP_LOCK)
        time.sleep(0.2)
        found = current(client)
        if found is not None:
            return found
    raise DatasetMissingError("timed out waiting for another process to train the first model version")
