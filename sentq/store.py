"""Redis connections that fail fast: a dead or mistyped Redis is a clear error within seconds, never a hang."""

from __future__ import annotations

import os
import time

import redis
from redis.sentinel import MasterNotFoundError, Sentinel

from sentq.errors import BrokerUnavailableError
from sentq.settings import Settings, is_sentinel, mask_secrets, mask_url, parse_sentinel_url


def connect(settings: Settings, *, url: str | None = None) -> redis.Redis:
    """A client for the backend Redis (results, jobs, registry); connects lazily, on first command.

    Behind Sentinels (a ``sentinel://`` URL list) it is redis-py's master client: each new connection asks the
    Sentinels where the master is, so after a failover the next command reaches the promoted replica."""
    url = url or settings.backend_url
    connect_s, socket_s = settings.connect_timeout_s, settings.socket_timeout_s
    if is_sentinel(url):
        parsed = parse_sentinel_url(url)
        # redis-py < 8.2 ships these untyped (no-untyped-call); 8.2 types them (the ignore is then unused).
        sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            parsed.nodes, sentinel_kwargs={"socket_connect_timeout": connect_s, "socket_timeout": socket_s}
        )
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
            settings.sentinel_master,
            redis_class=redis.Redis,
            db=parsed.db,
            username=parsed.username,
            password=parsed.password,
            health_check_interval=30,
            socket_connect_timeout=connect_s,
            socket_timeout=socket_s,
        )
        return client
    return redis.Redis.from_url(
        url, health_check_interval=30, socket_connect_timeout=connect_s, socket_timeout=socket_s
    )


# How long a command waits for Sentinels that know the master but report none healthy (a failover under way: the
# primary is down and a replica not yet promoted) before it gives up. A failover takes down-after-milliseconds plus
# an election: seconds.
FAILOVER_WAIT_S = 30.0


def check(client: redis.Redis, settings: Settings, *, url: str | None = None) -> redis.Redis:
    """PING ``client``; raise BrokerUnavailableError naming the (masked) URL and what to check. Behind Sentinels that
    answer, a master that does not is waited for (up to FAILOVER_WAIT_S: a failover under way); a master name they
    do not monitor fails at once."""
    url = url or settings.backend_url
    deadline = time.monotonic() + FAILOVER_WAIT_S
    while True:
        try:
            client.ping()
            return client
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            known = monitored(client)  # None unless behind Sentinels that answer
            if known is None:
                raise unavailable(url, exc) from None
            if settings.sentinel_master not in known:
                names = ", ".join(sorted(known)) or "none"
                hint = f"The Sentinels monitor: {names}. Set SENTQ_SENTINEL_MASTER to the right one."
                raise unavailable(url, exc, hint=hint) from None
            if time.monotonic() > deadline:
                hint = f"The Sentinels found no master that answers for {FAILOVER_WAIT_S:g}s."
                raise unavailable(url, exc, hint=hint) from None
            time.sleep(0.5)


def close(client: redis.Redis) -> None:
    """Close ``client``'s connections, and those to its Sentinels if it has any."""
    client.close()
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    if manager is not None:
        manager.close()


def monitored(client: redis.Redis) -> set[str] | None:
    """The master names the Sentinels behind ``client`` monitor (None: not a Sentinel client, or none answers)."""
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    if manager is None:
        return None
    names: set[str] | None = None
    for sentinel in manager.sentinels:
        try:
            found = sentinel.sentinel_masters()
        except (redis.ConnectionError, redis.TimeoutError):
            continue
        names = (names or set()) | {text(name) for name in found}
    return names


def unavailable(url: str, exc: BaseException, *, hint: str = "") -> BrokerUnavailableError:
    """The one message for an unreachable Redis or broker (``hint``: what to check, when the caller knows better)."""
    detail = mask_secrets(str(exc)).strip().rstrip(".") or type(exc).__name__
    if isinstance(exc, redis.OutOfMemoryError):  # it answers, but refuses writes: not a connection problem
        return BrokerUnavailableError(
            f"{mask_url(url)} is full (maxmemory, noeviction): {detail}. Free memory: forget finished jobs "
            "(`sentq forget`, the console), shorten SENTQ_RESULT_EXPIRES or lower SENTQ_JOB_MAX_BYTES, or give Redis "
            "more maxmemory."
        )
    if hint:
        pass
    elif isinstance(exc, redis.AuthenticationError):
        hint = "Are the user and password in the URL right, and is the user enabled (deploy/redis-acl.conf)?"
    elif type(exc).__name__ == "AccessRefused":  # amqp's: RabbitMQ refused the login
        hint = "Are the user and password in the URL right, and may the user use the vhost (rabbitmqctl list_users)?"
    elif isinstance(exc, MasterNotFoundError) or is_sentinel(url):
        hint = (
            "Do the Sentinels answer, and is SENTQ_SENTINEL_MASTER the name they monitor "
            "(`redis-cli -p 26379 sentinel masters`)?"
        )
    else:
        hint = "Is the server running and the URL right?"
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
