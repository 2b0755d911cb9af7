"""The FastAPI app: ``create_app(settings)`` mounts one router per area; ``sentq api`` serves it with uvicorn."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentq import __version__, store
from sentq.settings import Settings
from sentq.web import (
    apidocs,
    problems,
    routes_console,
    routes_console_ops,
    routes_jobs,
    routes_models,
    routes_ops,
    routes_seed,
)
from sentq.web.limits import BodyLimit
from sentq.web.metrics import HttpStats

log = logging.getLogger("sentq.api")
# Each process adds its request counts to Redis this often, so /metrics on any process shows every process's.
FLUSH_EVERY_S = 1.0


def create_app(settings: Settings) -> FastAPI:
    """The API on ``settings`` (tests build one per test; ``sentq api`` builds it from the environment)."""
    stats = HttpStats()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        flusher = threading.Thread(target=_flush_loop, args=(settings, stats, stop), name="sentq-http-stats")
        flusher.daemon = True
        flusher.start()
        try:
            yield
        finally:
            stop.set()
            flusher.join(timeout=5)

    app = FastAPI(
        title="sentq",
        version=__version__,
        description="Score files of texts for sentiment on Celery workers: jobs, results in input order, models, "
        "workers, metrics. Errors are application/problem+json (RFC 9457).",
        lifespan=lifespan,
        docs_url=None,  # served below from the package's own copies: no CDN, no inline script
        redoc_url=None,
    )
    apidocs.mount(app)
    app.state.settings = settings
    app.state.stats = stats
    problems.install(app, unavailable_page=routes_console.unavailable_page)
    for router in (routes_seed.router, routes_jobs.router, routes_models.router, routes_ops.router):
        app.include_router(router)
    routes_console.mount(app)
    app.include_router(routes_console_ops.router)
    # Inside the request counts (a refused body is counted too), outside everything that reads a body.
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(RequestStats, stats=stats)
    # A request for a name this API does not answer (DNS rebinding with auth off) is refused first.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.api_hosts)
    # Outermost, so every answer carries them, the Host refusal too.
    app.add_middleware(SecurityHeaders, docs_paths=apidocs.PAGES)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details; `detail` says what went wrong and what to do.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "job": {"type": "string", "description": "The job the request created, when it then failed (bad body)."},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with every error documented as what it is: problem+json, 4XX and 503."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        problem = {"content": {problems.PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)  # FastAPI's own shape; ours is a problem like every other error
                responses["4XX"] = {"description": "Bad request, auth, unknown id, conflict, too large...", **problem}
                responses["503"] = {"description": "Redis or the broker does not answer.", **problem}
        for unused in ("HTTPValidationError", "ValidationError"):
            schema["components"]["schemas"].pop(unused, None)
        # The token (when SENTQ_API_TOKENS sets any), so Swagger UI's "Authorize" sends it; {}: none needed otherwise.
        schema["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "A token of SENTQ_API_TOKENS."}
        }
        schema["security"] = [{"bearer": []}, {}]
        app.openapi_schema = schema
    return app.openapi_schema


def create_app_from_env() -> FastAPI:
    """The factory `sentq api` hands uvicorn (each of its worker processes calls it)."""
    return create_app(Settings.from_env())


def _flush_loop(settings: Settings, stats: HttpStats, stop: threading.Event) -> None:
    client = store.connect(settings)
    while True:
        stopping = stop.wait(FLUSH_EVERY_S)
        try:
            stats.flush(client)
        except Exception as exc:  # noqa: BLE001 - Redis away: the counts are kept and flushed next time
            log.debug("could not flush request stats: %s", exc)
        if stopping:
            return


class RequestStats:
    """Counts each request by route template, method and status, with its time to the response's headers."""

    def __init__(self, app: ASGIApp, stats: HttpStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                self.stats.record(_route(scope), scope["method"], status, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            self.stats.record(_route(scope), scope["method"], 500, time.perf_counter() - started)
            raise


# No page of this API may be framed (clickjacking) or sniffed into another type. A console page runs only this
# origin's scripts and styles, nothing inline, so an injection that escaped Jinja's escaping would still run nothing;
# anything else (JSON, rows, streams, static files) loads nothing at all if a browser renders it as a document.
API_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
CONSOLE_POLICY = "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
# /docs (sentq/web/apidocs.py): Swagger UI from this origin, started by a script file, nothing from elsewhere; it sets
# styles as it renders, which the console never does.
DOCS_POLICY = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeaders:
    """Adds to every response: nosniff, no framing, no referrer to other sites, and the Content-Security-Policy for
    its kind (a console page, a docs page, anything else)."""

    def __init__(self, app: ASGIApp, docs_paths: frozenset[str]) -> None:
        self.app = app
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if scope["path"] in self.docs_paths:
                    policy = DOCS_POLICY
                elif headers.get("content-type", "").startswith("text/html"):
                    policy = CONSOLE_POLICY
                else:
                    policy = API_POLICY
                headers["Content-Security-Policy"] = policy
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "same-origin"
            await send(message)

        await self.app(scope, receive, send_wrapper)


def _route(scope: Scope) -> str:
    """The matched route's template (/v1/jobs/{job_id}), never the raw path: bounded label values. A mount's files
    (/static, /apidocs) are counted under the mount, as /static/{path}."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    mount = scope.get("root_path")  # set by the mount that served the request
    return f"{mount}/{{path}}" if mount else "unmatched"
