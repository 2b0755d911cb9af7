"""Operations: workers and queues, liveness and readiness, Prometheus metrics."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from sentq import control, errors
from sentq.settings import Settings, mask_url
from sentq.web.auth import can_read, settings_of
from sentq.web.problems import problem
from sentq.web.schemas import Health, Ready, Workers

router = APIRouter(tags=["operations"])
SettingsDep = Annotated[Settings, Depends(settings_of)]


@router.get("/v1/workers", response_model=Workers, dependencies=[Depends(can_read)])
def workers(settings: SettingsDep) -> dict[str, Any]:
    """Live workers (from their heartbeats), the ones found dead holding chunks lately, and queue depths."""
    found, dead, depths = control.workers(settings)
    return {"workers": [asdict(w) for w in found], "dead": [asdict(d) for d in dead], "queues": depths}


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
