"""Operations: workers and queues, liveness and readiness, Prometheus metrics."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from sentq import control, errors, queues
from sentq.settings import Settings, mask_url
from sentq.web.auth import can_read, can_write, settings_of
from sentq.web.problems import problem
from sentq.web.schemas import Drained, Health, Queues, Ready, Workers, WorkerShutdown

router = APIRouter(tags=["operations"])
SettingsDep = Annotated[Settings, Depends(settings_of)]


@router.get("/v1/workers", response_model=Workers, dependencies=[Depends(can_read)])
def workers(settings: SettingsDep) -> dict[str, Any]:
    """Live workers (from their heartbeats), the ones found dead holding chunks lately, and queue depths."""
    found, dead, depths = control.workers(settings)
    return {"workers": [asdict(w) for w in found], "dead": [asdict(d) for d in dead], "queues": depths}


def queue_dict(q: queues.QueueContents) -> dict[str, Any]:
    f = q.figures
    return {
        "name": q.name,
        "length": f.length,
        "chunks_waiting": f.chunks_waiting,
        "oldest_waiting_s": f.oldest_waiting_s,
        "unfinished_jobs": f.jobs,
        "leftovers": f.leftovers,
        "readable": q.readable,
        "looked_at": q.looked_at,
        "jobs": [asdict(j) | {"drainable": j.drainable} for j in q.jobs],
        "other_messages": q.other,
    }


@router.post(
    "/v1/workers/{name}/shutdown", status_code=202, response_model=WorkerShutdown, dependencies=[Depends(can_write)]
)
def shutdown_worker(name: Annotated[str, Path(max_length=200)], settings: SettingsDep) -> dict[str, Any]:
    """Ask one live worker to shut down gracefully (Celery remote control, as Flower does): it finishes the tasks it
    runs, takes no more and exits; it leaves GET /v1/workers when it is gone."""
    return {"worker": asdict(control.shutdown_worker(settings, name)), "asked": True}


@router.get("/v1/queues", response_model=Queues, dependencies=[Depends(can_read)])
def list_queues(settings: SettingsDep) -> dict[str, Any]:
    """What each queue holds: the ledger's figures, and on a Redis broker its messages by job (the oldest first)."""
    _, found = queues.contents(settings)
    return {"queues": [queue_dict(q) for q in found]}


@router.post("/v1/queues/{queue}/drain", response_model=Drained, dependencies=[Depends(can_write)])
def drain(
    queue: Annotated[str, Path(max_length=200)],
    settings: SettingsDep,
    job: Annotated[str | None, Query(pattern=r"^[0-9a-f]{12}$", description="Only this job's messages.")] = None,
) -> dict[str, Any]:
    """Remove the leftover messages of stopped jobs (finished, cancelled, invalid or forgotten) from a Redis-broker
    queue, or of one such job; a running job's messages are never removed (409 for a running ``job``)."""
    return asdict(queues.drain(settings, queue, job_id=job))


@router.get("/healthz", response_model=Health)
def healthz() -> dict[str, str]:
    """The process lives (asks nothing of Redis: use /readyz for that)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Ready, responses={503: {"description": "Redis or the broker does not answer."}})
def readyz(settings: SettingsDep) -> Any:
    """Redis and the broker answer (503 naming the one that does not, its URL masked)."""
    try:
        control.connect(settings)
    except errors.BrokerUnavailableError as exc:
        return problem(503, f"Redis (results, jobs) is not ready: {exc}")
    try:
        control.check_broker(settings)
    except errors.BrokerUnavailableError as exc:
        return problem(503, f"the broker is not ready: {exc}")
    return {"status": "ready", "redis": mask_url(settings.backend_url), "broker": mask_url(settings.broker_url)}


@router.get(
    "/metrics",
    dependencies=[Depends(can_read)],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
def metrics(request: Request, settings: SettingsDep) -> Response:
    """Prometheus metrics, computed from Redis at scrape time (the same on every API process); with Redis away,
    `sentq_up 0` and this process's own request counts (a scrape that fails would say nothing)."""
    from prometheus_client import CONTENT_TYPE_LATEST

    from sentq.web import metrics as sentq_metrics

    try:
        client = control.connect(settings)
    except errors.BrokerUnavailableError:
        client = None
    body = sentq_metrics.render(client, settings, request.app.state.stats)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
