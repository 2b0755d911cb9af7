"""A bare Celery app with one no-op task: the yardstick for sentq's small-job round trip (bench/small_jobs.py).

Same broker and the same reliability settings as sentq's app (JSON only, acks late, reject on worker lost,
prefetch 1), nothing else: no events, no started-state tracking, no per-task Redis work. Its worker runs as
``celery -A noop_app worker -c 2 -Q bench.noop`` with ``bench/`` on PYTHONPATH and BENCH_BROKER_URL set.
"""

from __future__ import annotations

import os

from celery import Celery

QUEUE = "bench.noop"
URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("benchnoop", broker=URL, backend=URL, set_as_current=False)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop() -> None:
    """Do nothing: the round trip is all broker, worker and result backend."""


# The same no-op with Celery's task events on (worker and "sent" events), as sentq runs them so that `celery events`
# and Flower can watch: the part of sentq's round trip that is the price of being observable, not sentq's own work.
EVENTS_QUEUE = "bench.noop.events"
events_app = Celery("benchnoopevents", broker=URL, backend=URL, set_as_current=False)
events_app.conf.update(
    app.conf.table(),
    task_default_queue=EVENTS_QUEUE,
    worker_send_task_events=True,
    task_send_sent_event=True,
)


@events_app.task(name="bench.noop_events")
def noop_events() -> None:
    """Do nothing, observably."""
