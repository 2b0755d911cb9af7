"""What the broker holds, read without taking anything: queue depths, and for a Redis broker the send stamp of the
next message to be taken and which chunks the messages delivered but not yet acked carry (for the reconciler)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

from sentq import store
from sentq.ledger import QueueView
from sentq.settings import Settings

CHUNK_TASK = "sentq.score_chunk"
# kombu's Redis transport keeps messages delivered but not acked in this hash (delivery tag -> [message, ...]), and
# when each was delivered in this sorted set.
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
# What a queue holds is read this many messages a round trip, the oldest first, and at most SCAN_MAX in all by a drain
# (SHOW_MAX for a page: a message is about 1.2 KB): each costs the same however long a queue has grown, and says so
# when it looked at only part of one.
SCAN_PAGE = 1000
SCAN_MAX = 50_000
SHOW_MAX = 5_000


def queue_depths(app: Any, settings: Settings) -> dict[str, int]:
    """Messages waiting in each of sentq's queues."""
    return {queue: depth(app, queue) for queue in (settings.queue, settings.retrain_queue)}


def depth(app: Any, queue: str) -> int:
    """Messages waiting in ``queue`` (any broker: a passive declare)."""
    from kombu.exceptions import ChannelError

    with app.connection_for_write() as conn:
        channel = conn.channel()  # AMQP closes a channel whose passive declare fails: one per queue
        try:
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except ChannelError:  # no worker ever declared it: nothing is queued there
            return 0
        finally:
            try:
                channel.close()
            except ChannelError:
                pass


def view(app: Any, settings: Settings, client: redis.Redis | None, queue: str) -> QueueView:
    """The reconciler's look at ``queue``: on Redis three reads in one round trip; on AMQP the depth alone."""
    if client is None or not settings.broker_is_redis:
        return QueueView(depth(app, queue))
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    pipe.lindex(queue, -1)  # kombu LPUSHes and BRPOPs: the right end is taken next
    # Only messages delivered lately still count as carried: a live worker starts a delivered message within
    # milliseconds; an older one belongs to a worker that died or lost its connection (kombu restores it only after
    # the visibility timeout).
    pipe.zrangebyscore(UNACKED_INDEX, time.time() - settings.lost_after_s, "+inf")
    size, head, tags = pipe.execute()
    unacked = [raw for raw in client.hmget(UNACKED, tags) if raw is not None] if tags else []
    carried = set()
    for raw in unacked:
        try:
            message = json.loads(raw)[0]
        except (ValueError, IndexError, TypeError):
            continue
        found = _chunk_of(message)
        if found is not None:
            carried.add(found[:2])
    oldest = None
    if head is not None:
        try:
            found = _chunk_of(json.loads(head))
        except ValueError:
            found = None
        oldest = found[2] if found is not None else None
    return QueueView(int(size), oldest, carried)


def broker_client(settings: Settings) -> redis.Redis | None:
    """A client for the broker when it is Redis (the reconciler reads its queue lists)."""
    return store.connect(settings, url=settings.broker_url) if settings.broker_is_redis else None


def _chunk_of(message: Any) -> tuple[str, int, float | None] | None:
    """(job, chunk, sent_at) of a score_chunk message as kombu stores it in Redis; None for anything else."""
    if not isinstance(message, dict) or (message.get("headers") or {}).get("task") != CHUNK_TASK:
        return None
    body: Any = message.get("body", "")
    if (message.get("properties") or {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    try:
        args, kwargs, _ = json.loads(body)
        stamp = kwargs.get("sent_at")
        return str(args[0]), int(args[1]), float(stamp) if stamp is not None else None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        return None


@dataclass
class JobMessages:
    """A job's messages found in a queue: how many, and the send stamp of the oldest."""

    count: int = 0
    oldest_sent: float | None = None


@dataclass
class Contents:
    """What a Redis-broker queue holds, read without taking anything (the oldest ``looked_at`` messages of
    ``length``): score_chunk messages by job, and how many are of other tasks (retrains, batch scoring)."""

    length: int
    looked_at: int = 0
    jobs: dict[str, JobMessages] = field(default_factory=dict)
    other: int = 0
    # Where each chunk message was found: (index from the right end, the message as stored, its job).
    found: list[tuple[int, bytes, str]] = field(default_factory=list, repr=False)


def contents(client: redis.Redis, queue: str, *, limit: int = SCAN_MAX) -> Contents:
    """The oldest ``limit`` messages of ``queue`` grouped by job (kombu LPUSHes and BRPOPs: oldest at the right)."""
    held = Contents(int(client.llen(queue)))
    while held.looked_at < min(held.length, limit):
        n = min(SCAN_PAGE, limit - held.looked_at)
        page = client.lrange(queue, -(held.looked_at + n), -(held.looked_at + 1))
        if not page:
            break
        for offset, raw in enumerate(reversed(page)):
            try:
                found = _chunk_of(json.loads(raw))
            except ValueError:
                found = None
            if found is None:
                held.other += 1
                continue
            job = held.jobs.setdefault(found[0], JobMessages())
            job.count += 1
            if found[2] is not None and (job.oldest_sent is None or found[2] < job.oldest_sent):
                job.oldest_sent = found[2]
            held.found.append(
                (-(held.looked_at + offset + 1), raw if isinstance(raw, bytes) else raw.encode(), found[0])
            )
        held.looked_at += len(page)
    return held


# Remove exactly the messages named, each only if it is still the very message read (its bytes: a Celery message
# carries its own task id, so no two are alike). One found where it was read is marked and every mark removed in one
# pass at the end; one that moved (a worker took a message meanwhile) is looked for from the oldest end.
# KEYS: queue   ARGV: marker, then (index from the right, message) pairs
_DRAIN = """
local removed = 0
for i = 2, #ARGV, 2 do
  local at = tonumber(ARGV[i])
  if redis.call('LINDEX', KEYS[1], at) == ARGV[i + 1] then
    redis.call('LSET', KEYS[1], at, ARGV[1])
    removed = removed + 1
  else
    removed = removed + redis.call('LREM', KEYS[1], -1, ARGV[i + 1])
  end
end
redis.call('LREM', KEYS[1], 0, ARGV[1])
return removed
"""


def drain(client: redis.Redis, queue: str, held: Contents, jobs: set[str]) -> int:
    """Remove from ``queue`` the messages of ``jobs`` that ``held`` found there (a batch a step); how many went."""
    picked = [(at, raw) for at, raw, job in held.found if job in jobs]
    removed = 0
    for start in range(0, len(picked), SCAN_PAGE):
        args: list[Any] = [f"sentq-drained-{uuid.uuid4().hex}"]
        for at, raw in picked[start : start + SCAN_PAGE]:
            args += [at + removed, raw]  # the ones removed before were older: nearer the right end
        removed += int(client.eval(_DRAIN, 1, queue, *args))
    return removed
