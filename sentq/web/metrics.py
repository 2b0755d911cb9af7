"""Prometheus metrics for ``/metrics``, computed from Redis at each scrape (``sentq.stats``) and from the HTTP request
counts every API process adds to Redis, so any number of API processes report the same numbers.

No hostname, process or job-id labels, and no process collectors: every process renders the same text.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
from collections.abc import Iterator, Mapping

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from sentq import keys
from sentq.settings import Settings
from sentq.stats import CHUNK_OUTCOMES, JOB_OUTCOMES, Snapshot, snapshot
from sentq.store import text

CONTENT_TYPE = CONTENT_TYPE_LATEST  # the /metrics response's media type
# Upper bounds of the request latency histogram, seconds (Prometheus's defaults, with 0.005 to 10 s).
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)
_LE = tuple("+Inf" if math.isinf(b) else repr(b) for b in BUCKETS_S)  # as Prometheus writes ``le``


class HttpStats:
    """HTTP requests counted in this process (cheap, thread-safe) until ``flush`` adds them to Redis.

    Call ``record`` once per request with the route *template* (``/jobs/{job_id}``, never the raw path: label values
    must stay few; use one name such as ``"<unmatched>"`` for requests no route matched), and ``flush`` every second or
    so and at shutdown.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._buckets: dict[tuple[str, str], list[int]] = {}  # (route, method) -> count per bucket, not cumulative
        self._sums: dict[tuple[str, str], float] = {}

    def record(self, route: str, method: str, code: int, seconds: float) -> None:
        """Count one request answered with ``code`` after ``seconds``."""
        bucket = bisect.bisect_left(BUCKETS_S, seconds)  # the first bound >= seconds (le is inclusive)
        with self._lock:
            key = (route, method, code)
            self._requests[key] = self._requests.get(key, 0) + 1
            counts = self._buckets.setdefault((route, method), [0] * len(BUCKETS_S))
            counts[bucket] += 1
            self._sums[(route, method)] = self._sums.get((route, method), 0.0) + seconds

    def flush(self, client: redis.Redis) -> int:
        """Add the requests counted since the last flush to Redis (one transaction) and start again from zero;
        returns how many requests were flushed. If Redis fails they are kept for the next flush, and the error raised.
        """
        with self._lock:
            requests, buckets, sums = self._requests, self._buckets, self._sums
            self._requests, self._buckets, self._sums = {}, {}, {}
        if not requests:
            return 0
        pipe = client.pipeline(transaction=True)
        for (route, method, code), n in requests.items():
            pipe.hincrby(keys.HTTP_STATS, _field("requests", route, method, str(code)), n)
        for (route, method), counts in buckets.items():
            for le, n in zip(_LE, counts, strict=True):
                if n:
                    pipe.hincrby(keys.HTTP_STATS, _field("bucket", route, method, le), n)
        for (route, method), total in sums.items():
            pipe.hincrbyfloat(keys.HTTP_STATS, _field("sum", route, method), total)
        try:
            pipe.execute()
        except redis.RedisError:
            self._restore(requests, buckets, sums)
            raise
        return sum(requests.values())

    def pending(self) -> dict[tuple[str, ...], str]:
        """The requests counted here and not yet flushed, as ``render`` reads Redis's (a scrape while Redis is away)."""
        with self._lock:
            found: dict[tuple[str, ...], str] = {
                ("requests", r, m, str(c)): str(n) for (r, m, c), n in self._requests.items()
            }
            for (route, method), counts in self._buckets.items():
                found |= {("bucket", route, method, le): str(n) for le, n in zip(_LE, counts, strict=True) if n}
            found |= {("sum", r, m): repr(total) for (r, m), total in self._sums.items()}
        return found

    def _restore(
        self,
        requests: dict[tuple[str, str, int], int],
        buckets: dict[tuple[str, str], list[int]],
        sums: dict[tuple[str, str], float],
    ) -> None:
        with self._lock:
            for key, n in requests.items():
                self._requests[key] = self._requests.get(key, 0) + n
            for pair, counts in buckets.items():
                mine = self._buckets.setdefault(pair, [0] * len(BUCKETS_S))
                for i, n in enumerate(counts):
                    mine[i] += n
            for pair, total in sums.items():
                self._sums[pair] = self._sums.get(pair, 0.0) + total


def _field(*parts: str) -> str:
    return json.dumps(parts, separators=(",", ":"))


def render(client: redis.Redis | None, settings: Settings, local: HttpStats | None = None) -> bytes:
    """The Prometheus text exposition of everything, read from Redis now (a few round trips, blocking: call it from
    a worker thread, e.g. a plain ``def`` route). With Redis away (``client`` None, or it fails), ``sentq_up 0`` and
    the requests ``local`` counted that Redis has not got yet: a scrape answers, and says why the rest is missing."""
    registry = CollectorRegistry(auto_describe=False)  # fresh per scrape: nothing of this process leaks in
    try:
        if client is None:
            raise redis.ConnectionError("Redis did not answer")
        reading: Collector = _Reading(snapshot(client, settings), client.hgetall(keys.HTTP_STATS))
    except redis.RedisError:
        reading = _Away(local.pending() if local is not None else {})
    registry.register(reading)
    return generate_latest(registry)


def _up(value: int) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "sentq_up", "1 if sentq's Redis answered this scrape; 0 if not (then only this process's requests).", value
    )


class _Away(Collector):
    """A scrape while Redis does not answer: sentq_up 0 and the requests this process counted meanwhile."""

    def __init__(self, http: Mapping[tuple[str, ...], str]) -> None:
        self.http = http

    def collect(self) -> Iterator[Metric]:
        yield _up(0)
        yield from _http_families(self.http)


class _Reading(Collector):
    """One scrape's numbers as metric families."""

    def __init__(self, snap: Snapshot, http: Mapping[bytes | str, bytes | str]) -> None:
        self.snap = snap
        self.http = {tuple(json.loads(text(k))): text(v) for k, v in http.items()}

    def collect(self) -> Iterator[Metric]:
        yield _up(1)
        s = self.snap
        yield CounterMetricFamily("sentq_jobs_submitted", "Jobs submitted.", value=s.jobs_submitted)
        finished = CounterMetricFamily(
            "sentq_jobs_finished",
            "Jobs that reached a final state, by outcome (a job re-run by `sentq retry` counts again when it ends).",
            labels=["outcome"],
        )
        for outcome in JOB_OUTCOMES:
            finished.add_metric([outcome], s.jobs_finished.get(outcome, 0))
        yield finished
        yield GaugeMetricFamily(
            "sentq_jobs_running", "Jobs submitted and not finished (staging, queued or running).", value=s.jobs_running
        )
        yield CounterMetricFamily("sentq_texts_scored", "Texts scored (rows written).", value=s.texts_scored)
        yield CounterMetricFamily(
            "sentq_texts_failed",
            "Texts that failed alone, left out of their chunk's rows (whole failed chunks: sentq_chunks_total).",
            value=s.texts_failed,
        )
        chunks = CounterMetricFamily("sentq_chunks", "Chunks recorded done or failed, by outcome.", labels=["outcome"])
        for outcome in CHUNK_OUTCOMES:
            chunks.add_metric([outcome], s.chunks.get(outcome, 0))
        yield chunks
        yield CounterMetricFamily(
            "sentq_chunk_retries",
            "Chunks sent again: by the reconciler (holder dead, message lost) or by `sentq retry`.",
            value=s.chunk_retries,
        )
        length = GaugeMetricFamily("sentq_queue_length", "Messages waiting in the broker queue.", labels=["queue"])
        waiting = GaugeMetricFamily(
            "sentq_queue_oldest_waiting_seconds",
            "Age of the oldest chunk sent to the queue and not yet taken by a worker (0 when none waits).",
            labels=["queue"],
        )
        # What the messages are: chunks of unfinished jobs waiting for a worker, and the rest (a stopped job's
        # leftovers, re-sends), so a queue length never reads as work pending when it is not.
        chunks_waiting = GaugeMetricFamily(
            "sentq_queue_chunks_waiting",
            "Chunks of unfinished jobs sent to the queue and not yet taken by a worker (by the ledger).",
            labels=["queue"],
        )
        leftovers = GaugeMetricFamily(
            "sentq_queue_leftover_messages",
            "Messages in the queue that carry no waiting chunk of an unfinished job (a cancelled, finished or "
            "forgotten job's, dropped by the worker that takes them; or a re-sent chunk's second message).",
            labels=["queue"],
        )
        queue_jobs = GaugeMetricFamily("sentq_queue_jobs", "Unfinished jobs on the queue.", labels=["queue"])
        for name, queue in s.queues.items():
            length.add_metric([name], queue.length)
            waiting.add_metric([name], queue.oldest_waiting_s)
            chunks_waiting.add_metric([name], queue.chunks_waiting)
            leftovers.add_metric([name], queue.leftovers)
            queue_jobs.add_metric([name], queue.jobs)
        yield length
        yield waiting
        yield chunks_waiting
        yield leftovers
        yield queue_jobs
        yield GaugeMetricFamily("sentq_workers_online", "Workers with a live heartbeat.", value=s.workers_online)
        yield GaugeMetricFamily(
            "sentq_workers_busy", "Live workers running at least one task now.", value=s.workers_busy
        )
        yield GaugeMetricFamily(
            "sentq_worker_tasks_running", "Tasks the live workers' processes are running now.", value=s.tasks_running
        )
        if s.last_retrain_at is not None:
            yield GaugeMetricFamily(
                "sentq_last_retrain_timestamp_seconds",
                "When the newest model version was published (retrain, bootstrap or import), Unix time.",
                value=s.last_retrain_at,
            )
        if s.model is not None:
            yield InfoMetricFamily(
                "sentq_model",
                "The current model version (new jobs are pinned to it).",
                {"version": f"v{s.model.version}"},
            )
            yield GaugeMetricFamily(
                "sentq_model_accuracy_ratio",
                "Held-out accuracy of the current model version (0 to 1).",
                value=s.model.accuracy,
            )
        yield from _http_families(self.http)


def _http_families(http: Mapping[tuple[str, ...], str]) -> Iterator[Metric]:
    """The HTTP request counts and durations, from fields (kind, route, method, code or le) -> value."""
    requests = CounterMetricFamily(
        "sentq_http_requests",
        "HTTP requests answered, by route template, method and status code.",
        labels=["route", "method", "code"],
    )
    buckets: dict[tuple[str, str], dict[str, int]] = {}
    sums: dict[tuple[str, str], float] = {}
    for field, value in sorted(http.items()):
        kind, route, method, *rest = field
        if kind == "requests":
            requests.add_metric([route, method, rest[0]], int(value))
        elif kind == "bucket":
            buckets.setdefault((route, method), {})[rest[0]] = int(value)
        elif kind == "sum":
            sums[(route, method)] = float(value)
    yield requests
    duration = HistogramMetricFamily(
        "sentq_http_request_duration_seconds",
        "Time to answer an HTTP request, by route template and method.",
        labels=["route", "method"],
    )
    for pair in sorted(buckets.keys() | sums.keys()):
        counts = buckets.get(pair, {})
        cumulative, total = [], 0
        for le in _LE:
            total += counts.get(le, 0)
            cumulative.append((le, float(total)))
        duration.add_metric(list(pair), cumulative, sums.get(pair, 0.0))
    yield duration
