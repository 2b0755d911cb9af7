"""The operator console: server-rendered pages over the same control functions, live progress by SSE when JS runs.

Every page reads Redis (jobs, the ledger, heartbeats, the registry), so it shows the same on every API process and
survives restarts. Actions are plain HTML forms (POST, then a redirect back), so the pages work without JavaScript.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from sentq import control, errors, lifecycle
from sentq.inputs import TextSource
from sentq.settings import Settings, mask_url
from sentq.web import auth
from sentq.web.auth import settings_of

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
SettingsDep = Annotated[Settings, Depends(settings_of)]


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


class LoginNeeded(Exception):
    pass


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


def _page(request: Request, settings: Settings, name: str, **context: Any) -> Response:
    access = auth.access(request, settings)
    if access is None:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    context |= {
        "access": access,
        "auth_on": bool(settings.api_token_kinds),
        "redis_url": mask_url(settings.backend_url),
        "message": request.query_params.get("msg", ""),
        "error": request.query_params.get("error", ""),
    }
    return templates.TemplateResponse(request, name, context)


def _back(path: str, *, msg: str = "", error: str = "") -> RedirectResponse:
    query = f"?msg={quote(msg)}" if msg else f"?error={quote(error)}" if error else ""
    return RedirectResponse(path + query, status_code=303)


def _may_write(request: Request, settings: Settings) -> str | None:
    """Why this request may not change anything, or None if it may."""
    auth.check_origin(request)
    access = auth.access(request, settings)
    if access is None:
        return "log in first"
    if access != "full":
        return "this token is read-only: it may look, not submit, cancel, retry or switch models"
    return None


@router.get("/", response_class=HTMLResponse)
def jobs_page(
    request: Request, settings: SettingsDep, state: Annotated[str | None, Query()] = None, cursor: str | None = None
) -> Response:
    if auth.access(request, settings) is None:
        return _page(request, settings, "jobs.html")
    try:
        found, next_cursor = control.list_jobs(settings, state=state or None, limit=25, cursor=cursor)
    except errors.ConfigError as exc:
        return _back("/", error=str(exc))
    snap = _snapshot(settings)
    return _page(request, settings, "jobs.html", jobs=found, state=state or "", next_cursor=next_cursor, snap=snap)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, settings: SettingsDep) -> Response:
    if auth.access(request, settings) is None:
        return _page(request, settings, "job.html")
    try:
        record, failures = control.status(settings, job_id)
    except errors.JobNotFoundError as exc:
        return _back("/", error=str(exc))
    where = control.ledger_summary(settings, job_id)
    return _page(request, settings, "job.html", job=record, failures=failures, ledger=where)


@router.get("/workers", response_class=HTMLResponse)
def workers_page(request: Request, settings: SettingsDep) -> Response:
    if auth.access(request, settings) is None:
        return _page(request, settings, "workers.html")
    found, dead, _ = control.workers(settings)
    return _page(request, settings, "workers.html", workers=found, dead=dead, snap=_snapshot(settings))


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, settings: SettingsDep) -> Response:
    if auth.access(request, settings) is None:
        return _page(request, settings, "models.html")
    found, current = lifecycle.versions(settings)
    return _page(request, settings, "models.html", versions=list(reversed(found)), current=current)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, settings: SettingsDep, next: str = "/") -> Response:
    if not settings.api_token_kinds:  # auth is off (loopback only): nothing to log in to
        return RedirectResponse("/", status_code=303)
    context = {"next": next if next.startswith("/") and not next.startswith("//") else "/", "auth_on": True}
    context |= {"access": None, "error": request.query_params.get("error", ""), "message": ""}
    return templates.TemplateResponse(request, "login.html", context)


@router.post("/login")
def login(
    request: Request, settings: SettingsDep, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/"
) -> Response:
    auth.check_origin(request)
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    if auth.kind_of(settings, token.strip()) is None:  # back to the form, still headed where the user was going
        why = quote("that token is not one of SENTQ_API_TOKENS")
        return RedirectResponse(f"/login?next={quote(target)}&error={why}", status_code=303)
    response = RedirectResponse(target, status_code=303)
    secure = request.url.scheme == "https"  # behind TLS the cookie never travels in clear
    response.set_cookie(auth.COOKIE, token.strip(), httponly=True, samesite="strict", secure=secure, path="/")
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    auth.check_origin(request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/")
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
    """The upload form: the browser's multipart body is spooled to disk by Starlette, then read as a stream."""
    why = _may_write(request, settings)
    if why:
        return _back("/", error=why)
    name = file.filename or "<upload>"
    suffix = name.lower().removesuffix(".gz").rsplit(".", 1)[-1]
    fmt = format or {"csv": "csv", "tsv": "tsv", "jsonl": "jsonl", "ndjson": "jsonl"}.get(suffix)

    def run() -> str:
        source = TextSource(
            "-",
            fmt=fmt,
            column=column or None,
            field=field or None,
            max_chars=settings.max_text_chars,
            max_gunzip_bytes=settings.max_gunzip_bytes,
            stdin=file.file,
            name=name,
        )
        return control.submit(settings, source).id

    try:
        job_id = await anyio.to_thread.run_sync(run)
    except errors.SentqError as exc:
        return _back("/", error=str(exc))
    return _back(f"/jobs/{job_id}", msg=f"job {job_id} submitted from {name}")


def _act(request: Request, settings: Settings, back: str, action: Callable[[], str]) -> Response:
    """Run a form's action if this request may change things; back to ``back`` with what it said, or why not."""
    why = _may_write(request, settings)
    if why:
        return _back(back, error=why)
    try:
        return _back(back, msg=action())
    except errors.SentqError as exc:
        return _back(back, error=str(exc))


@router.post("/console/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: str, settings: SettingsDep) -> Response:
    def action() -> str:
        record = control.cancel(settings, job_id)
        return f"job {job_id} is {record.state.value} ({record.texts_done:,} texts scored)"

    return _act(request, settings, f"/jobs/{job_id}", action)


@router.post("/console/jobs/{job_id}/retry")
def retry(request: Request, job_id: str, settings: SettingsDep) -> Response:
    def action() -> str:
        return f"queued {len(control.retry(settings, job_id))} failed chunk(s) again"

    return _act(request, settings, f"/jobs/{job_id}", action)


@router.post("/console/models/{version}/use")
def use_model(request: Request, version: str, settings: SettingsDep) -> Response:
    def action() -> str:
        meta, before = lifecycle.use(settings, version)
        was = f" (was v{before})" if before and before != meta.version else ""
        return f"v{meta.version} is current{was}"

    return _act(request, settings, "/models", action)


def _snapshot(settings: Settings) -> Any:
    from sentq import stats

    return stats.snapshot(control.connect(settings), settings)
