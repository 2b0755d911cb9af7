"""Redis connections that fail fast: a dead or mistyped Redis is a clear error within seconds, never a hang."""

from __future__ import annotations

import os

import redis

from sentq.errors import BrokerUnavailableError
from sentq.settings import Settings, mask_secrets, mask_url


def connect(settings: Settings, *, url: str | None = None) -> redis.Redis:
    """A client for the backend Redis (results, jobs, registry); connects lazily, on first command."""
    return redis.Redis.from_url(
        url or settings.backend_url,
        socket_connect_timeout=settings.connect_timeout_s,
        socket_timeout=max(settings.connect_timeout_s, 10.0),
        health_check_interval=30,
    )


def check(client: redis.Redis, settings: Settings, *, url: str | None = None) -> redis.Redis:
    """PING ``client``; raise BrokerUnavailableError naming the (masked) URL and what to check."""
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise unavailable(url or settings.backend_url, exc) from None
    except redis.AuthenticationError as exc:
        raise unavailable(url or settings.backend_url, exc) from None
    return client


def unavailable(url: str, exc: BaseException) -> BrokerUnavailableError:
    """The one message for an unreachable Redis or broker."""
    detail = mask_secrets(str(exc)).strip().rstrip(".") or type(exc).__name__
    hint = (
        "Are the user and password in the URL right, and is the user enabled (deploy/redis-acl.conf)?"
        if isinstance(exc, redis.AuthenticationError)
        else "Is the server running and the URL right?"
    )
    return BrokerUnavailableError(
        f"cannot reach {mask_url(url)}: {detail}. {hint} Set SENTQ_BROKER_URL (and SENTQ_RESULT_BACKEND) to change it."
    )


def text(raw: bytes | str) -> str:
    """A Redis reply as str (clients here return bytes; typing says either)."""
    return raw.decode() if isinstance(raw, bytes) else raw


_clients: dict[tuple[int, str, float], redis.Redis] = {}


def connect_checked(settings: Settings) -> redis.Redis:
    """The backend Redis, checked to answer. One client (and connection pool) per process and URL, shared by threads:
    an API process answers each request without a new TCP connection; a forked child makes its own."""
    key = (os.getpid(), settings.backend_url, settings.connect_timeout_s)
    client = _clients.get(key)
    if client is None:
        client = _clients.setdefault(key, connect(settings))
    return check(client, settings)
