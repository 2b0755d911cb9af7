"""The operator console: server-rendered pages over the same control functions, live progress by SSE when JS runs.

Every page reads Redis (jobs, the ledger, heartbeats, the registry), so it shows the same on every API process and
survives restarts. Actions are plain HTML forms (POST, then a redirect back), so the pages work without JavaScript.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from sentq import control, errors, follow, jobs, keys
from sentq.inputs import TextSource
from sentq.settings import Settings, mask_secrets, mask_url
from sentq.web import auth
from sentq.web.auth import settings_of
from sentq.web.problems import status_for, web_words

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
SettingsDep = Annotated[Settings, Depends(settings_of)]


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


def unavailable_page(request: Request, detail: str) -> Response | None:
    """A console page asked for while Redis (or the broker) does not answer: the console's own page saying so and what
    it means (503), instead of the API's problem+json; None for anything but a console page."""
    path = request.url.path
    if request.method != "GET" or not (
        path == "/" or path.startswith(("/jobs/", "/queues", "/workers", "/models", "/login"))
    ):
        return None
    settings: Settings = request.app.state.settings
    context = {
        "access": None,
        "auth_on": bool(settings.api_token_kinds),
        "redis_url": mask_url(settings.backend_url),
        "message": "",
        "error": detail,
    }
    return templates.TemplateResponse(request, "unavailable.html", context, status_code=503)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


templates.env.filters["when"] = _when
templates.env.filters["duration"] = _duration
templates.env.filters["thousands"] = lambda n: f"{n:,}" if isinstance(n, int) else "-"


def _eta(job: jobs.JobRecord, waiting: bool | None = None) -> str:
    """The ETA at the job's recent pace (the same words as console.js paints); ``waiting`` as control.waiting found."""
    return "waiting for a worker" if (job.waiting_for_worker if waiting is None else waiting) else _duration(job.eta_s)


templates.env.filters["eta"] = _eta


def _page(
    request: Request,
    settings: Settings,
    access: auth.Access,
    name: str,
    *,
    message: str = "",
    error: str = "",
    status_code: int = 200,
    **context: Any,
) -> Response:
    """A console page. Its flash ``message`` and ``error`` are the console's own words: a page picks a message by the
    fixed code in ?msg= and fills in only facts it read or validated; nothing in the URL is ever shown as said by it
    (a crafted link could otherwise have the console ask for the operator's token)."""
    context |= {
        "access": access,
        "auth_on": bool(settings.api_token_kinds),
        "redis_url": mask_url(settings.backend_url),
        "message": message,
        "error": error,
    }
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _to_login(request: Request, back: str | None = None) -> Response:
    return RedirectResponse(f"/login?next={quote(back or request.url.path)}", status_code=303)


def _back(path: str, code: str, **facts: int) -> RedirectResponse:
    """Back to ``path`` after an action went through, saying so by a fixed message code (and numbers)."""
    return RedirectResponse(f"{path}?{urlencode({'msg': code} | facts)}", status_code=303)


def _number(request: Request, name: str) -> int | None:
    """A whole number from the query (at most 9 digits), or None: the only kind of fact a link may carry."""
    value = request.query_params.get(name, "")
    return int(value) if re.fullmatch(r"[0-9]{1,9}", value) else None


def _job_message(request: Request, job: jobs.JobRecord) -> str:
    """The job page's flash for ?msg=: its facts from the job's record, never from the link, and none that a client
    chose (the job's source name shows on the page, not as the console's words)."""
    code = request.query_params.get("msg")
    if code == "submitted":
        return f"job {job.id} submitted"
    if code == "cancelled":
        return f"job {job.id} is {job.state.value} ({job.texts_done:,} texts scored)"
    chunks = _number(request, "chunks")
    if code == "retried" and chunks is not None:
        return f"queued {chunks} failed chunk(s) again"
    return ""


def _jobs_message(request: Request) -> str:
    """The jobs page's flash for ?msg=: only numbers the link carries, checked, in the console's words."""
    code, count = request.query_params.get("msg"), _number(request, "jobs")
    if code == "forgot" and count is not None:
        more = request.query_params.get("more") == "1"
        return f"forgot {count} job(s)" + ("; more remain: forget again" if more else "")
    return ""


FINISHED = ("done", "failed", "cancelled", "invalid")


def _may_write(request: Request, settings: Settings) -> Response | str | None:
    """None if this request may change things; else a redirect to log in, or why it may not (read-only)."""
    auth.check_origin(request)
    access = auth.access(request, settings)
    if access is None:
        return _to_login(request, "/")
    if access != "full":
        return (
            "this token is read-only: it may look, not submit, cancel, retry, drain, retrain, stop workers or switch "
            "models"
        )
    return None


def _jobs_view(request: Request, settings: Settings, access: auth.Access, **flash: Any) -> Response:
    state, cursor = request.query_params.get("state") or None, request.query_params.get("cursor") or None
    search = request.query_params.get("q", "")[:200].strip()
    try:
        found, next_cursor = control.list_jobs(settings, state=state, limit=25, cursor=cursor, search=search)
    except errors.ConfigError:  # its words would repeat the link's: say it in ours, and show all jobs
        flash = {"error": "this link's job state or page is not one the console made: showing all jobs"}
        flash["status_code"] = 400
        state = None
        found, next_cursor = control.list_jobs(settings, limit=25, search=search)
    flash.setdefault("message", _jobs_message(request))
    snap = _snapshot(settings)
    context = {"jobs": found, "state": state or "", "next_cursor": next_cursor, "snap": snap, "q": search}
    context["finished"] = FINISHED
    context["unserved"] = _unserved(settings, snap)
    context["dash"] = _dashboard(settings, snap)
    return _page(request, settings, access, "jobs.html", **context, **flash)


def _job_view(request: Request, settings: Settings, access: auth.Access, job_id: str, **flash: Any) -> Response:
    try:
        record, failures = control.status(settings, job_id)
    except errors.JobNotFoundError:
        # Named only if it is an id: the path of a crafted link is no more the console's words than its query.
        said = f"no job {job_id}: unknown id, or its records expired" if keys.is_job_id(job_id) else "no such job"
        return _page(request, settings, access, "job.html", error=said, status_code=404)
    flash.setdefault("message", _job_message(request, record))
    where = control.ledger_summary(settings, job_id)
    no_worker = follow.unserved(control.connect(settings), record)
    context: dict[str, Any] = {"job": record, "failures": failures, "ledger": where, "no_worker": no_worker}
    context["failure_groups"] = jobs.group_failures(failures)
    context["waiting"] = control.waiting(settings, record, where)
    return _page(request, settings, access, "job.html", **context, **flash)


@router.get("/", response_class=HTMLResponse)
def jobs_page(request: Request, settings: SettingsDep) -> Response:
    access = auth.access(request, settings)
    return _to_login(request) if access is None else _jobs_view(request, settings, access)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, settings: SettingsDep) -> Response:
    access = auth.access(request, settings)
    return _to_login(request) if access is None else _job_view(request, settings, access, job_id)


# Where the browser goes after logging in: a path on this site. Not "//host" nor "/\host" (browsers read both as
# another host), nor anything with spaces or control characters (browsers drop tabs and newlines: "/\t/host").
LOCAL_PATH = re.compile(r"/(?![/\\])[!-\[\]-~]*")


def _local(path: str) -> str:
    return path if LOCAL_PATH.fullmatch(path) else "/"


def _login_form(request: Request, next: str, *, error: str = "", status_code: int = 200) -> Response:
    context = {"next": _local(next), "auth_on": True, "access": None, "error": error, "message": ""}
    return templates.TemplateResponse(request, "login.html", context, status_code=status_code)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, settings: SettingsDep, next: str = "/") -> Response:
    if not settings.api_token_kinds:  # auth is off (loopback only): nothing to log in to
        return RedirectResponse("/", status_code=303)
    return _login_form(request, next)


@router.post("/login")
def login(
    request: Request, settings: SettingsDep, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/"
) -> Response:
    auth.check_origin(request)
    if auth.kind_of(settings, token.strip()) is None:  # the form again, still headed where the user was going
        return _login_form(request, next, error="that token is not one of SENTQ_API_TOKENS", status_code=401)
    session = auth.start_session(settings, token.strip())
    response = RedirectResponse(_local(next), status_code=303)
    secure = request.url.scheme == "https"  # behind TLS (directly or via a trusted proxy) never sent in clear
    response.set_cookie(auth.COOKIE, session, httponly=True, samesite="strict", secure=secure, path="/")
    response.delete_cookie(auth.OLD_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(request: Request, settings: SettingsDep) -> Response:
    auth.check_origin(request)
    session = request.cookies.get(auth.COOKIE)
    if session and settings.api_token_kinds:
        auth.end_session(settings, session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/")
    response.delete_cookie(auth.OLD_COOKIE, path="/")
    return response


@router.post("/console/submit")
async def submit(
    request: Request,
    settings: SettingsDep,
    file: UploadFile,
    format: Annotated[str, Form()] = "",
    column: Annotated[str, Form()] = "",
    field: Annotated[str, Form()] = "",
) -> Response:
    """The upload form: the browser's multipart body is spooled to disk by Starlette, then read as a stream. A
    refused upload shows the jobs page again with why (this browser's own upload's words), not a redirect."""
    refused = await anyio.to_thread.run_sync(_may_write, request, settings)
    if isinstance(refused, Response):
        return refused
    if refused:
        return await anyio.to_thread.run_sync(lambda: _jobs_view(request, settings, "read", error=refused))
    name = file.filename or "<upload>"
    suffix = name.lower().removesuffix(".gz").rsplit(".", 1)[-1]
    fmt = format or {"csv": "csv", "tsv": "tsv", "jsonl": "jsonl", "ndjson": "jsonl"}.get(suffix)

    def run() -> str:
        source = TextSource.from_settings(
            "-", settings, fmt=fmt, column=column or None, field=field or None, stdin=file.file, name=name
        )
        return control.submit(settings, source).id

    try:
        job_id = await anyio.to_thread.run_sync(run)
    except errors.SentqError as exc:
        said, status = web_words(mask_secrets(str(exc)), console=True), status_for(exc)
        return await anyio.to_thread.run_sync(
            lambda: _jobs_view(request, settings, "full", error=said, status_code=status)
        )
    return _back(f"/jobs/{job_id}", "submitted")


def _act(
    request: Request,
    settings: Settings,
    action: Callable[[], RedirectResponse],
    view: Callable[..., Response],
) -> Response:
    """Run a form's action if this request may change things; on success its redirect (a message code), else the
    page again (``view(access, error=..., status_code=...)``) saying why not, in the console's or the core's words."""
    refused = _may_write(request, settings)
    if isinstance(refused, Response):
        return refused
    if refused:
        return view("read", error=refused, status_code=403)
    try:
        return action()
    except errors.SentqError as exc:
        return view("full", error=web_words(mask_secrets(str(exc)), console=True), status_code=status_for(exc))


@router.post("/console/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: str, settings: SettingsDep) -> Response:
    def action() -> RedirectResponse:
        control.cancel(settings, job_id)
        return _back(f"/jobs/{job_id}", "cancelled")

    return _act(request, settings, action, partial(_job_view, request, settings, job_id=job_id))


@router.post("/console/jobs/{job_id}/retry")
def retry(request: Request, job_id: str, settings: SettingsDep) -> Response:
    def action() -> RedirectResponse:
        return _back(f"/jobs/{job_id}", "retried", chunks=len(control.retry(settings, job_id)))

    return _act(request, settings, action, partial(_job_view, request, settings, job_id=job_id))


@router.post("/console/jobs/{job_id}/forget")
def forget(request: Request, job_id: str, settings: SettingsDep) -> Response:
    def action() -> RedirectResponse:
        control.forget(settings, job_id)
        return _back("/", "forgot", jobs=1)

    return _act(request, settings, action, partial(_job_view, request, settings, job_id=job_id))


@router.post("/console/jobs/forget")
def forget_all(request: Request, settings: SettingsDep, state: Annotated[str, Form()]) -> Response:
    """Every finished job of one state (done, failed, cancelled, invalid), a batch a request (the page says if more
    remain)."""

    def action() -> RedirectResponse:
        count, more = control.forget_finished(settings, state)  # ConfigError for a state that is not finished
        facts = {"state": state, "msg": "forgot", "jobs": count, "more": int(more)}
        return RedirectResponse(f"/?{urlencode(facts)}", status_code=303)

    return _act(request, settings, action, partial(_jobs_view, request, settings))


def _snapshot(settings: Settings) -> Any:
    from sentq import stats

    return stats.snapshot(control.connect(settings), settings)


def _dashboard(settings: Settings, snap: Any) -> dict[str, Any]:
    """The home page's last hour (texts/s and failures a minute, from the ledger's per-minute counts), the busiest
    queues (most chunks waiting, then most messages) and the oldest chunk waiting for a worker."""
    from sentq import stats
    from sentq.web import chart

    hour = stats.last_hour(control.connect(settings))
    into = max(snap.at - hour[-1].start, 1.0)  # seconds of the current minute so far
    lately = hour[-5:]
    busiest = sorted(
        ((name, q) for name, q in snap.queues.items() if q.length or q.chunks_waiting),
        key=lambda item: (-item[1].chunks_waiting, -item[1].length, item[0]),
    )[:3]
    waiting = [(q.oldest_waiting_s, name) for name, q in snap.queues.items() if q.chunks_waiting]
    return {
        "chart": chart.last_hour_svg(hour),
        "texts": sum(m.texts for m in hour),
        "chunks_failed": sum(m.chunks_failed for m in hour),
        "texts_failed": sum(m.texts_failed for m in hour),
        "rate_now": sum(m.texts for m in lately) / (60 * (len(lately) - 1) + into),
        "busiest": busiest,
        "oldest": max(waiting) if waiting else None,
    }


def _unserved(settings: Settings, snap: Any) -> dict[str, str]:
    """Queue -> what `sentq wait` says of it, for each queue with unfinished jobs and no live worker consuming it."""
    from sentq import ledger

    client = control.connect(settings)
    served = {queue for worker in ledger.live_workers(client) for queue in worker.queues}
    return {
        name: f"{q.jobs} job(s) waiting: {follow.no_worker(name)}"
        for name, q in snap.queues.items()
        if q.jobs and name not in served
    }
