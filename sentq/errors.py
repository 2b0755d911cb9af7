"""Every error sentq raises on purpose, as one shallow tree.

SentqError                  base of all of them; the CLI maps each to an exit code
├── ConfigError             a bad SENTQ_* setting or CLI option              (exit 2)
│   └── UnknownNameError    no worker or queue of sentq's has that name      (HTTP 404)
├── InputError              bad input: which file, which line, what to do    (exit 2)
│   ├── UnsupportedFormatError  an upload in a format sentq does not read   (HTTP 415)
│   └── PayloadTooLargeError    a body or input past a size limit            (HTTP 413)
├── DatasetMissingError     the default training data is not on this host    (exit 2)
├── ModelError              a model artifact is missing, tampered or unsafe  (exit 2)
│   └── ModelNotFoundError  no such model version in the registry            (HTTP 404)
├── JobNotFoundError        unknown or expired job id                        (exit 2)
├── JobStateError           the job's state does not allow that action       (exit 2, HTTP 409)
├── BrokerUnavailableError  Redis / RabbitMQ did not answer in time          (exit 3)
├── JobFailedError          the job ended failed as a whole                  (exit 1)
│   └── JobLostError        the job's records vanished from Redis mid-job    (exit 1)
├── JobTimeoutError         waiting for a job ran past --timeout             (exit 4)
└── JobCancelledError       the job was cancelled                            (exit 5)
"""

from __future__ import annotations


class SentqError(Exception):
    """Raised for every failure sentq expects and can explain in one line."""


class ConfigError(SentqError):
    """Raised when a setting or option has a value sentq cannot use."""


class UnknownNameError(ConfigError):
    """Raised when a worker or queue named by an operator is not one sentq knows (live, or in use)."""


class InputError(SentqError):
    """Raised when an input file cannot be read as texts (names file, line and fix)."""


class UnsupportedFormatError(InputError):
    """Raised when an upload's declared type or encoding is not one sentq reads."""


class PayloadTooLargeError(InputError):
    """Raised when a request body, an inflated gzip or a job's staged input goes past its limit (SENTQ_*_MAX_BYTES)."""


class DatasetMissingError(SentqError):
    """Raised when the default training data has not been fetched."""


class ModelError(SentqError):
    """Raised when a model artifact is missing, truncated, tampered or in an unsafe format."""


class ModelNotFoundError(ModelError):
    """Raised when a model version is not in the registry."""


class JobNotFoundError(SentqError):
    """Raised when a job id is unknown or its records have expired."""


class JobStateError(SentqError):
    """Raised for an action the job's state does not allow (cancel a finished job, retry one without failures)."""


class BrokerUnavailableError(SentqError):
    """Raised when the broker or result store does not answer within the connect timeout."""


class JobFailedError(SentqError):
    """Raised when a job being waited on failed as a whole (e.g. its producer died mid-input)."""


class JobLostError(JobFailedError):
    """Raised when a job being followed vanishes from Redis (a restart without persistence, a flush)."""


class JobTimeoutError(SentqError):
    """Raised when waiting for a job runs past its timeout."""


class JobCancelledError(SentqError):
    """Raised when a job being waited on was cancelled."""
