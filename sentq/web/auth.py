"""Bearer tokens (SENTQ_API_TOKENS): full tokens may do anything, read-only ones ("ro:...") may list and read.

Tokens are compared in constant time, against every configured token, so timing tells nothing about which one or how
much of one matched. The console's login form keeps the token in an HttpOnly, SameSite=Strict cookie, and every
state-changing request from a browser must come from this origin (checked by Origin / Sec-Fetch-Site), so another
site cannot make a logged-in browser (or one on loopback with auth off) submit, cancel or retrain.
"""

from __future__ import annotations

import hmac
from typing import Literal

from fastapi import Depends, Request
from starlette.exceptions import HTTPException

from sentq.settings import Settings

COOKIE = "sentq_token"
Access = Literal["read", "full"]


# The dependencies below do no I/O: async, so FastAPI runs them on the event loop, not with a thread hop each.
async def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def kind_of(settings: Settings, token: str) -> str | None:
    """ "full", "read" or None, looking at every token whatever matched (constant time in the token's content)."""
    found = None
    presented = token.encode()
    for candidate, kind in settings.api_token_kinds.items():
        if hmac.compare_digest(candidate.encode(), presented):
            found = kind
    return found


def presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) or None


def check_origin(request: Request) -> None:
    """Refuse a state-changing request that a browser sends on behalf of another site (CSRF)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(403, "cross-site request refused: submit from this API's own pages or a non-browser client")
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise HTTPException(403, f"request from origin {origin} refused: it is not this API's origin")


def access(request: Request, settings: Settings) -> Access | None:
    """What the request may do: "full", "read", or None when it carries no valid token (auth on)."""
    if not settings.api_token_kinds:
        return "full"  # no tokens: the API listens on loopback only (refused at start otherwise)
    token = presented_token(request)
    if token is None:
        return None
    kind = kind_of(settings, token)
    return None if kind is None else ("full" if kind == "full" else "read")


def _require(need: Access, request: Request, settings: Settings) -> Access:
    check_origin(request)
    if not settings.api_token_kinds:
        return "full"
    token = presented_token(request)
    if token is None:
        raise HTTPException(
            401,
            "this API needs a token: send Authorization: Bearer TOKEN",
            {"WWW-Authenticate": 'Bearer realm="sentq"'},
        )
    kind = kind_of(settings, token)
    if kind is None:
        raise HTTPException(
            401,
            "the token is not one of SENTQ_API_TOKENS; check it",
            {"WWW-Authenticate": 'Bearer realm="sentq", error="invalid_token"'},
        )
    if need == "full" and kind != "full":
        raise HTTPException(
            403, "this token is read-only: it may list and read, not submit, cancel, retry, switch models or retrain"
        )
    return "full" if kind == "full" else "read"


async def can_read(request: Request, settings: Settings = Depends(settings_of)) -> Access:  # noqa: B008
    return _require("read", request, settings)


async def can_write(request: Request, settings: Settings = Depends(settings_of)) -> Access:  # noqa: B008
    return _require("full", request, settings)
