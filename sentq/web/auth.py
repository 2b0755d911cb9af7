"""Bearer tokens (SENTQ_API_TOKENS): full tokens may do anything, read-only ones ("ro:...") may list and read.

Tokens are compared in constant time, against every configured token, so timing tells nothing about which one or how
much of one matched. The console's login form never gives the browser the token: it starts a session, a random id
in an HttpOnly, SameSite=Strict cookie (Secure when the request came over https) that Redis maps to the token's
fingerprint for SENTQ_API_SESSION_TTL. Logging out deletes it, so a copied cookie no longer works; a session whose
token was removed from SENTQ_API_TOKENS matches none and is refused; every API process (and a restarted one) sees the
same sessions. Every state-changing request from a browser must come from this origin (checked by Origin /
Sec-Fetch-Site), so another site cannot make a logged-in browser (or one on loopback with auth off) submit, cancel or
retrain.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Literal

import anyio.to_thread
from fastapi import Depends, Request
from starlette.exceptions import HTTPException

from sentq import keys, store
from sentq.settings import Settings

COOKIE = "sentq_session"
# Before sessions the cookie held the token itself: never read any more, and cleared at login and logout.
OLD_COOKIE = "sentq_token"
Access = Literal["read", "full"]
# A cookie longer than this is no session id of ours (token_urlsafe(32) is 43 characters): not worth a hash.
MAX_SESSION_CHARS = 64


# The dependencies below do no I/O but for a session cookie: async, so FastAPI runs them on the event loop, not with a
# thread hop each; a cookie's Redis lookup alone goes to a thread.
async def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def fingerprint(token: str) -> str:
    """What a session keeps of its token: its SHA-256, so Redis never holds a token that works."""
    return hashlib.sha256(token.encode()).hexdigest()


def _match(settings: Settings, presented: str, form: Callable[[str], str]) -> str | None:
    """ "full", "read" or None: the kind of the configured token whose ``form`` is ``presented``, looking at every
    token whatever matched (constant time in the presented value's content)."""
    found = None
    given = presented.encode()
    for candidate, kind in settings.api_token_kinds.items():
        if hmac.compare_digest(form(candidate).encode(), given):
            found = kind
    return found


def kind_of(settings: Settings, token: str) -> str | None:
    """ "full", "read" or None for a token as presented."""
    return _match(settings, token, lambda candidate: candidate)


def start_session(settings: Settings, token: str) -> str:
    """A new session for a valid ``token``: the id the cookie carries."""
    session = secrets.token_urlsafe(32)
    client = store.connect_checked(settings)
    client.set(keys.session(_digest(session)), fingerprint(token), ex=settings.api_session_ttl_s)
    return session


def end_session(settings: Settings, session: str) -> None:
    """Log out: the session's id works nowhere from now on."""
    if 0 < len(session) <= MAX_SESSION_CHARS:
        store.connect_checked(settings).delete(keys.session(_digest(session)))


def session_kind(settings: Settings, session: str) -> str | None:
    """ "full", "read" or None (unknown, logged out, expired, or its token is no longer configured)."""
    if not 0 < len(session) <= MAX_SESSION_CHARS:
        return None
    raw = store.connect_checked(settings).get(keys.session(_digest(session)))
    return None if raw is None else _match(settings, store.text(raw), fingerprint)


def _digest(session: str) -> str:
    return hashlib.sha256(session.encode()).hexdigest()


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


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
    """What the request may do: "full", "read", or None when it carries no valid token or session (auth on). Blocking
    (a session is looked up in Redis): call it from a sync route."""
    if not settings.api_token_kinds:
        return "full"  # no tokens: the API listens on loopback only (refused at start otherwise)
    token = _bearer(request)
    session = request.cookies.get(COOKIE)
    if token is not None:
        kind = kind_of(settings, token)
    elif session:
        kind = session_kind(settings, session)
    else:
        return None
    return None if kind is None else ("full" if kind == "full" else "read")


async def _require(need: Access, request: Request, settings: Settings) -> Access:
    check_origin(request)
    if not settings.api_token_kinds:
        return "full"
    token = _bearer(request)
    session = request.cookies.get(COOKIE)
    if token is not None:
        kind = kind_of(settings, token)
        why = "the token is not one of SENTQ_API_TOKENS; check it"
    elif session:
        kind = await anyio.to_thread.run_sync(session_kind, settings, session)
        why = "the console session ended (logged out, expired, or its token was removed): log in again"
    else:
        raise HTTPException(
            401,
            "this API needs a token: send Authorization: Bearer TOKEN",
            {"WWW-Authenticate": 'Bearer realm="sentq"'},
        )
    if kind is None:
        raise HTTPException(401, why, {"WWW-Authenticate": 'Bearer realm="sentq", error="invalid_token"'})
    if need == "full" and kind != "full":
        raise HTTPException(
            403, "this token is read-only: it may list and read, not submit, cancel, retry, switch models or retrain"
        )
    return "full" if kind == "full" else "read"


async def can_read(request: Request, settings: Settings = Depends(settings_of)) -> Access:  # noqa: B008
    return await _require("read", request, settings)


async def can_write(request: Request, settings: Settings = Depends(settings_of)) -> Access:  # noqa: B008
    return await _require("full", request, settings)
