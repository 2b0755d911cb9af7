"""sentq: score files of texts for sentiment on Celery workers over Redis (importing this connects to nothing)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sentq.errors import (
    BrokerUnavailableError,
    ConfigError,
    DatasetMissingError,
    InputError,
    JobCancelledError,
    JobFailedError,
    JobLostError,
    JobNotFoundError,
    JobStateError,
    JobTimeoutError,
    ModelError,
    ModelNotFoundError,
    SentqError,
)
from sentq.settings import Settings

if TYPE_CHECKING:
    from sentq.client import Job, job, submit

__version__ = "0.1.0"
__all__ = [
    "BrokerUnavailableError",
    "ConfigError",
    "DatasetMissingError",
    "InputError",
    "Job",
    "JobCancelledError",
    "JobFailedError",
    "JobLostError",
    "JobNotFoundError",
    "JobStateError",
    "JobTimeoutError",
    "ModelError",
    "ModelNotFoundError",
    "SentqError",
    "Settings",
    "__version__",
    "job",
    "submit",
]

# The Python face (sentq.client), imported on first use: it pulls in the job and input machinery (and redis), which
# `import sentq` for the settings or the error classes alone should not pay for.
_LAZY = ("Job", "job", "submit")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from sentq import client

        value = getattr(client, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sentq' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
