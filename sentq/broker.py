"""What the broker holds, read without taking anything: queue depths, and for a Redis broker the send stamp of the
next message to be taken and which chunks the messages delivered but not yet acked carry (for the reconciler)."""

from __future__ import annotations

import base64
import json
import time
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
