"""Errors as ``application/problem+json`` (RFC 9457), with the CLI's words and the status matching its exit code."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from sentq import errors
from sentq.settings import mask_secrets, mask_url

log = logging.getLogger("sentq.api")

PROBLEM = "application/problem+json"

# Most specific first: the first class in an error's MRO that is here decides its status.
STATUS: dict[type[errors.SentqError], int] = {
    errors.PayloadTooLargeError: 413,
    errors.UnsupportedFormatError: 415,
    errors.InputError: 422,
    errors.ConfigError: 400,
    errors.ModelNotFoundError: 404,
    errors.ModelError: 422,
    errors.JobNotFoundError: 404,
    errors.UnknownNameError: 404,
    errors.JobStateError: 409,
    errors.DatasetMissingError: 409,
    errors.JobCancelledError: 409,
    errors.JobFailedError: 409,
    errors.JobTimeoutError: 504,
    errors.BrokerUnavailableError: 503,
}
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
    504: "Gateway timeout",
}


def status_for(exc: errors.SentqError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


# The reader's messages name the CLI's options; over HTTP the same choices are query parameters, in the console the
# upload form's boxes.
_OPTION = re.compile(r"--(column|field|format)\b(?: (?=[A-Z]{2,}\b|csv\b|tsv\b|jsonl\b|text\b|\d))?")
_CHOOSE_COLUMN = re.compile(r"--column NAME or --column INDEX \(counting from 1\)")
_CONSOLE_PHRASES = (
    ("no --column", "no column chosen"),
    ("drop --column", "empty the column box"),
    ("drop --field", "empty the field box"),
    ("add --format csv (or tsv)", "choose csv (or tsv) in the format box"),
    ("add --format jsonl", "choose jsonl in the format box"),
)


def web_words(detail: str, *, console: bool = False) -> str:
    """``detail`` with the CLI's --column/--field/--format said as the web says them: ``?column=`` over HTTP, "the
    column box" in the console."""
    if console:
        for cli, form in _CONSOLE_PHRASES:
            detail = detail.replace(cli, form)
        detail = _CHOOSE_COLUMN.sub("the column box (a header name, or a number counting from 1)", detail)
        return _OPTION.sub(lambda m: f"the {m.group(1)} box" + (" " if m.group(0).endswith(" ") else ""), detail)
    return _OPTION.sub(lambda m: f"?{m.group(1)}=", detail)


_LINE = re.compile(r"\bline ([\d,]+)")
_COLUMN = re.compile(r"\b(?:at column|column) (\d+)\b(?! columns)")
_FIELD = re.compile(r'\bfield "([^"]*)"')


def located(detail: str) -> dict[str, Any]:
    """Where in the input a refused upload went wrong, for programs: ``line`` (1-based), and ``column`` (a JSON
    column, or a CSV column counting from 1) and ``field`` (JSONL) where the message names them."""
    found: dict[str, Any] = {}
    if m := _LINE.search(detail):
        found["line"] = int(m.group(1).replace(",", ""))
        if m := _COLUMN.search(detail):
            found["column"] = int(m.group(1))
        if m := _FIELD.search(detail):
            found["field"] = m.group(1)
    return found


def problem_body(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": detail} | extra


def problem(status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(problem_body(status, detail, **extra), status_code=status, media_type=PROBLEM, headers=headers)


def install(app: FastAPI, *, unavailable_page: Callable[[Request, str], Response | None] | None = None) -> None:
    """The app's exception handlers: every error a client sees is problem+json, but a console page's request that
    failed because Redis does not answer, which ``unavailable_page`` answers with a page; no traceback ever leaves."""

    def down(request: Request, detail: str, **extra: Any) -> Response:
        page = unavailable_page(request, detail) if unavailable_page is not None else None
        return page if page is not None else problem(503, detail, **extra)

    @app.exception_handler(errors.SentqError)
    async def sentq_error(request: Request, exc: errors.SentqError) -> Response:
        extra = {"job": request.state.job_id} if getattr(request.state, "job_id", None) else {}
        if status_for(exc) == 503:
            return down(request, mask_secrets(str(exc)), **extra)
        detail = web_words(mask_secrets(str(exc)))
        if isinstance(exc, errors.InputError):
            extra |= located(detail)
        return problem(status_for(exc), detail, **extra)

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def redis_down(request: Request, exc: Exception) -> Response:
        url = mask_url(request.app.state.settings.backend_url)
        return down(request, f"cannot reach {url}: {mask_secrets(str(exc)) or type(exc).__name__}; is Redis running?")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{p['where']}: {p['message']}" for p in problems[:5])
        return problem(422, f"the request does not match the API: {detail}", errors=problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
        return problem(exc.status_code, detail, headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.error("unexpected error %s on %s %s", incident, request.method, request.url.path, exc_info=exc)
        return problem(500, f"unexpected error; the API's log has the details under incident {incident}")
