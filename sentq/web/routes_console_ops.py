"""The console's operator pages beyond jobs: what each queue holds and draining stopped jobs' leftovers, the models
(use a version whose artifact verifies, retrain, the next scheduled retrain), the workers and shutting one down
gracefully. Same rules as routes_console: plain forms behind a confirmation, the full token only, the page again with
why when refused; flashes picked by code, facts read or validated here."""

from __future__ import annotations

import time
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sentq import control, lifecycle, queues
from sentq.settings import Settings
from sentq.web import auth
from sentq.web.routes_console import SettingsDep, _act, _back, _number, _page, _snapshot, _to_login, _unserved

router = APIRouter(include_in_schema=False)


def _queues_message(request: Request) -> str:
    messages, count = _number(request, "messages"), _number(request, "jobs")
    if request.query_params.get("msg") != "drained" or messages is None or count is None:
        return ""
    more = "; the queue is longer than one drain reads: drain again" if request.query_params.get("more") == "1" else ""
    return f"removed {messages:,} leftover message(s) of {count:,} stopped job(s){more}"


def _queues_view(request: Request, settings: Settings, access: auth.Access, **flash: Any) -> Response:
    snap, found = queues.contents(settings)
    flash.setdefault("message", _queues_message(request))
    context: dict[str, Any] = {"queues": found, "snap": snap, "unserved": _unserved(settings, snap)}
    return _page(request, settings, access, "queues.html", **context, **flash)


@router.get("/queues", response_class=HTMLResponse)
def queues_page(request: Request, settings: SettingsDep) -> Response:
    access = auth.access(request, settings)
    return _to_login(request) if access is None else _queues_view(request, settings, access)


@router.post("/console/queues/{queue}/drain")
def drain(request: Request, queue: str, settings: SettingsDep, job: Annotated[str, Form()] = "") -> Response:
    """A stopped job's leftover messages (``job``), or every stopped job's in the queue."""

    def action() -> RedirectResponse:
        done = queues.drain(settings, queue, job_id=job or None)
        return _back("/queues", "drained", messages=done.messages, jobs=done.jobs, more=int(done.more))

    return _act(request, settings, action, partial(_queues_view, request, settings))


@router.post("/console/models/retrain")
def retrain(request: Request, settings: SettingsDep) -> Response:
    """`sentq retrain` on the default data (a labelled file goes through the CLI or POST /v1/retrain)."""

    def action() -> RedirectResponse:
        lifecycle.submit_retrain(settings, data=None, force=False)
        return _back("/models", "retrain")

    return _act(request, settings, action, partial(_models_view, request, settings))


def _workers_message(request: Request) -> str:
    if request.query_params.get("msg") != "shutdown":
        return ""
    return (
        "asked the worker to shut down: it finishes the chunks it is scoring, takes no more and exits "
        "(it leaves this list then)"
    )


def _workers_view(request: Request, settings: Settings, access: auth.Access, **flash: Any) -> Response:
    found, dead, _ = control.workers(settings)
    snap = _snapshot(settings)
    flash.setdefault("message", _workers_message(request))
    context: dict[str, Any] = {"workers": found, "dead": dead, "snap": snap, "unserved": _unserved(settings, snap)}
    return _page(request, settings, access, "workers.html", **context, **flash)


@router.get("/workers", response_class=HTMLResponse)
def workers_page(request: Request, settings: SettingsDep) -> Response:
    access = auth.access(request, settings)
    return _to_login(request) if access is None else _workers_view(request, settings, access)


@router.post("/console/workers/{name}/shutdown")
def shutdown(request: Request, name: str, settings: SettingsDep) -> Response:
    """A graceful shutdown of one worker (Celery remote control), as Flower offers it."""

    def action() -> RedirectResponse:
        control.shutdown_worker(settings, name)
        return _back("/workers", "shutdown")

    return _act(request, settings, action, partial(_workers_view, request, settings))


def _models_message(request: Request) -> str:
    version, before = _number(request, "v"), _number(request, "was")
    if request.query_params.get("msg") == "retrain":
        return (
            "retrain queued: a worker of the retrain queue trains on the default data; the new version shows here when "
            "it is done (none when the model comes out identical to the current one)"
        )
    if request.query_params.get("msg") != "used" or version is None:
        return ""
    return f"v{version} is current" + (f" (was v{before})" if before and before != version else "")


# The models page's artifact checks, kept across views (lifecycle.ArtifactChecks: why, and what it costs).
ARTIFACTS = lifecycle.ArtifactChecks()


def _models_view(request: Request, settings: Settings, access: auth.Access, **flash: Any) -> Response:
    found, current = lifecycle.versions(settings)
    flash.setdefault("message", _models_message(request))
    context: dict[str, Any] = {"versions": list(reversed(found)), "current": current}
    context["refused"] = ARTIFACTS.refusals(settings, [v.version for v in found])
    context["next_retrain"] = lifecycle.next_retrain(settings)
    context["retrain_queue"] = settings.retrain_queue
    context["now"] = time.time()
    return _page(request, settings, access, "models.html", **context, **flash)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, settings: SettingsDep) -> Response:
    access = auth.access(request, settings)
    return _to_login(request) if access is None else _models_view(request, settings, access)


@router.post("/console/models/{version}/use")
def use_model(request: Request, version: str, settings: SettingsDep) -> Response:
    def action() -> RedirectResponse:
        meta, before = lifecycle.use(settings, version)
        return _back("/models", "used", v=meta.version, **({"was": before} if before else {}))

    return _act(request, settings, action, partial(_models_view, request, settings))
