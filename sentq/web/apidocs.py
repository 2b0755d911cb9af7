"""/docs (Swagger UI), served from this process: its files come with the fastapi-offline package (FastAPI's own page
loads them from a CDN, a blank page on a closed network), and it is started by a script file of ours, not an inline
one, so its Content-Security-Policy allows scripts from this origin only. FastAPI's /redoc is not served: ReDoc fetches
its logo from its CDN whatever it is told, and Swagger UI shows the same schema.

The OpenAPI schema declares the bearer token (app._openapi), so Swagger UI's "Authorize" sends it.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
PAGES = frozenset({"/docs"})

_SWAGGER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sentq API</title>
<link rel="icon" href="/apidocs/favicon.png"><link rel="stylesheet" href="/apidocs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/apidocs/swagger-ui-bundle.js"></script><script src="/static/apidocs.js"></script></body></html>
"""


def mount(app: FastAPI) -> None:
    """The page and its files (under /apidocs); public, as the schema is."""
    app.mount("/apidocs", StaticFiles(directory=ASSETS), name="apidocs")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return HTMLResponse(_SWAGGER)
