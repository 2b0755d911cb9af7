"""Every request body bounded before anything parses or spools it: by its Content-Length at once, else as it arrives.

FastAPI reads a declared body (JSON, a form, a multipart upload spooled to disk) before a route's dependencies run,
auth included, so without this any client could make the API read, hold and parse as much as it cares to send.
Starlette has a RequestBodyLimitMiddleware, but its limits are fixed when routes are declared (ours are settings, per
app) and it answers a bare "Content Too Large"; this one says which limit, which setting and what to do.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentq.errors import PayloadTooLargeError
from sentq.rows import MAX_CHUNK_CHARS
from sentq.settings import Settings
from sentq.web import problems

# What a form post, a login or an action takes: a token, a few fields. Anything else is not a body sentq reads.
SMALL_MAX_BYTES = 64 * 1024
# The most texts one POST /score-batch takes (its Body's max_length).
BATCH_MAX_TEXTS = 100_000


def batch_max_bytes(settings: Settings) -> int:
    """The largest body a valid /score-batch can have: its characters (at most BATCH_MAX_TEXTS texts of
    SENTQ_MAX_TEXT_CHARS, and what sentq.batch_score takes) at 4 UTF-8 bytes each, plus quotes, comma and a space a
    text."""
    return 4 * min(BATCH_MAX_TEXTS * settings.max_text_chars, MAX_CHUNK_CHARS) + 8 * BATCH_MAX_TEXTS


def body_limit(settings: Settings, method: str, path: str) -> tuple[int, str]:
    """The most bytes the body of ``method path`` may have, and the words that say why and what to do."""
    if (method == "POST" and path == "/v1/jobs") or path == "/console/submit":
        return settings.api_max_bytes, "(SENTQ_API_MAX_BYTES); split the file, gzip it, or raise the limit"
    if path == "/v1/retrain":
        return settings.retrain_max_bytes, "(SENTQ_RETRAIN_MAX_BYTES); train on less data, or raise the limit"
    if path == "/score-batch":
        return batch_max_bytes(settings), (
            f"(the most {BATCH_MAX_TEXTS:,} texts of SENTQ_MAX_TEXT_CHARS characters need); send fewer texts a call, "
            "or submit a job (POST /v1/jobs)"
        )
    return SMALL_MAX_BYTES, "(a form or an action takes no more); check what the client sends"


class BodyLimit:
    """Refuses a body over its route's limit with 413 problem+json and closes the connection (the rest is never
    read): at once when its Content-Length says so (before the app, its auth included, runs); otherwise, chunked or
    lying, once the bytes received pass the limit, whatever the app was doing with them."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root = scope["path"], scope.get("root_path", "")
        limit, why = body_limit(self.settings, scope["method"], path.removeprefix(root) if root else path)
        detail = f"the request body is larger than {limit:,} bytes {why}"
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send, detail)
            return
        unread = (declared.isdigit() and int(declared) > 0) or b"transfer-encoding" in headers
        received = 0
        over = started = replaced = False

        async def counted() -> Message:
            nonlocal received, over, unread
            if over:
                raise PayloadTooLargeError(detail)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                unread = unread and message.get("more_body", False)
                if received > limit:
                    over = True
                    raise PayloadTooLargeError(detail)  # the app stops reading; its answer is replaced below
            return message

        async def guarded(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                started = True
                if over and message["status"] != 413:  # e.g. FastAPI's 400 "error parsing the body"
                    replaced = True
                    await _refuse(send, detail)
                    return
                # The app's own 413 (an upload names the job it made invalid), or an answer given without reading
                # the body (a 401): hang up after it rather than read and drop whatever the client goes on sending.
                if over or unread:
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except PayloadTooLargeError:
            if started:
                raise
            await _refuse(send, detail)


async def _refuse(send: Send, detail: str) -> None:
    body = json.dumps(problems.problem_body(413, detail)).encode()
    headers = [
        (b"content-type", problems.PROBLEM.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is never read: the server hangs up after the answer
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
