"""Errors as ``application/problem+json`` (RFC 9457), with the CLI's words and the status matching its exit code."""

from __future__ import annotations

import logging
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
        return problem(status_for(exc), mask_secrets(str(exc)), **extra)

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
