"""The retrain schedule for `sentq beat`: SENTQ_RETRAIN_SCHEDULE parsed, and celery-redbeat configured around it."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, TypeAlias

from celery.schedules import crontab
from celery.schedules import schedule as interval

from sentq import keys
from sentq.errors import ConfigError
from sentq.settings import Settings, is_sentinel, parse_sentinel_url, redis_ssl_options

ENTRY = "retrain"
# Beat ticks at most this far apart; on a fast schedule, twice per period (so a run is never late by a whole tick).
MAX_LOOP_S = 5.0
MIN_LOOP_S = 1.0
# The active scheduler renews its lock every tick; a lock not renewed for this many ticks means it died, and a
# standby takes over (so takeover needs at most LOCK_TICKS + 1 ticks: 6 s on a 2 s schedule, 30 s nightly).
LOCK_TICKS = 5
# A cron retrain no worker started within an hour is dropped: the next one is due anyway, and a worker that was
# down for a week must not run seven retrains in a row when it comes back.
CRON_EXPIRES_S = 3600

# celery.schedules.crontab or celery.schedules.schedule (Celery ships no type hints).
Schedule: TypeAlias = Any


def parse(expr: str) -> Schedule:
    """``"0 3 * * *"`` (cron: minute hour day-of-month month day-of-week, UTC) or ``"3600"`` (seconds)."""
    fields = expr.split()
    if len(fields) == 5:
        minute, hour, day_of_month, month_of_year, day_of_week = fields
        try:
            sched: Schedule = crontab(
                minute=minute,
                hour=hour,
                day_of_month=day_of_month,
                month_of_year=month_of_year,
                day_of_week=day_of_week,
            )
            return sched
        except ValueError as exc:
            raise ConfigError(
                f"SENTQ_RETRAIN_SCHEDULE {expr!r} is not a valid cron expression ({exc}); "
                "e.g. '0 3 * * *' for 03:00 UTC every day"
            ) from None
    if len(fields) == 1:
        try:
            seconds = float(fields[0])
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds) and seconds > 0:
            every: Schedule = interval(timedelta(seconds=seconds))
            return every
    raise ConfigError(
        f"SENTQ_RETRAIN_SCHEDULE must be a 5-field cron expression (e.g. '0 3 * * *', UTC) "
        f"or a positive number of seconds, got {expr!r}"
    )


def period_s(sched: Schedule) -> float | None:
    """Seconds between runs of an interval schedule; None for cron."""
    if isinstance(sched, crontab):
        return None
    return float(sched.run_every.total_seconds())


def beat_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for beat on celery-redbeat: schedule and lock in the backend Redis, one retrain entry.

    Never raises: with a bad SENTQ_RETRAIN_SCHEDULE there is simply no entry (`sentq beat` refuses to start on it,
    and a plain `celery beat` logs the error at start).
    """
    try:
        sched: Schedule | None = parse(settings.retrain_schedule)
    except ConfigError:
        sched = None
    period = period_s(sched) if sched is not None else None
    loop_s = MAX_LOOP_S if period is None else min(MAX_LOOP_S, max(MIN_LOOP_S, period / 2))
    entries: dict[str, Any] = {}
    if sched is not None:
        entries[ENTRY] = {
            "task": "sentq.retrain",
            "schedule": sched,
            "options": {"queue": settings.retrain_queue, "expires": period or CRON_EXPIRES_S},
        }
    return dict(
        beat_scheduler="redbeat.RedBeatScheduler",
        beat_max_loop_interval=loop_s,
        beat_schedule=entries,
        **redbeat_redis(settings),
        redbeat_key_prefix=keys.REDBEAT_PREFIX,
        redbeat_lock_timeout=math.ceil(loop_s * LOCK_TICKS),
    )


def redbeat_redis(settings: Settings) -> dict[str, Any]:
    """RedBeat's connection to the backend Redis. Behind Sentinels, redbeat spells it ``redis-sentinel://`` with the
    Sentinels' addresses and the master's name in its options (it asks them for the master after a failover)."""
    timeouts = {"socket_connect_timeout": settings.connect_timeout_s, "socket_timeout": settings.socket_timeout_s}
    url = settings.backend_url
    if is_sentinel(url):
        parsed = parse_sentinel_url(url)
        return {
            "redbeat_redis_url": "redis-sentinel://",
            "redbeat_redis_use_ssl": False,
            "redbeat_redis_options": {
                "sentinels": parsed.nodes,
                "service_name": settings.sentinel_master,
                "db": parsed.db,
                "password": parsed.password,
                "username": parsed.username,
                "socket_timeout": settings.socket_timeout_s,
                "sentinel_kwargs": timeouts,
            },
        }
    return {
        "redbeat_redis_url": url,
        # Without it redbeat falls back to broker_use_ssl, the broker's TLS options, not the backend's.
        "redbeat_redis_use_ssl": redis_ssl_options(url) or False,
        "redbeat_redis_options": timeouts,
    }
