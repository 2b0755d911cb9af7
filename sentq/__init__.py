"""sentq: score files of texts for sentiment on Celery workers over Redis (importing this connects to nothing)."""

from __future__ import annotations

from sentq.errors import (
    BrokerUnavailableError,
    ConfigError,
    DatasetMissingError,
    InputError,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    JobTimeoutError,
    ModelError,
    SentqError,
)
from sentq.settings import Settings

__version__ = "0.1.0"
__all__ = [
    "BrokerUnavailableError",
    "ConfigError",
    "DatasetMissingError",
    "InputError",
    "JobCancelledError",
    "JobFailedError",
    "JobNotFoundError",
    "JobTimeoutError",
    "ModelError",
    "SentqError",
    "Settings",
    "__version__",
]
