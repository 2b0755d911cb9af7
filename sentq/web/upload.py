"""An HTTP request body as the blocking binary stream ``TextSource`` reads, pulled chunk by chunk as it arrives.

The body is never held whole: the submitting thread asks the event loop for the next piece only when the reader
needs more, so at most one network chunk (plus the reader's buffers) is in memory however large the upload.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio.from_thread
from starlette.requests import ClientDisconnect

from sentq.errors import InputError, PayloadTooLargeError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class BodyStream(io.RawIOBase):
    """Reads ``chunks`` (an async iterator of bytes) from a worker thread; counts bytes against ``max_bytes``.

    Only usable from a thread started by ``anyio.to_thread.run_sync`` (it calls back into the event loop). A body
    past ``max_bytes`` raises PayloadTooLargeError, a client that goes away raises InputError: both are InputErrors,
    so the job being staged is marked invalid, as for a bad line in stdin.
    """

    def __init__(self, chunks: AsyncIterator[bytes], *, max_bytes: int, name: str) -> None:
        super().__init__()
        self._chunks = chunks
        self._max_bytes = max_bytes
        self._name = name
        self._pending = memoryview(b"")
        self._done = False
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending and not self._done:
            data = anyio.from_thread.run(self._next)
            if data is None:
                self._done = True
            else:
                self._pending = memoryview(data)
        size = min(len(view), len(self._pending))
        view[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    async def _next(self) -> bytes | None:
        try:
            data = await self._chunks.__anext__()
        except StopAsyncIteration:
            return None
        except ClientDisconnect:
            raise InputError(
                f"{self._name}: the upload was interrupted after {self.received:,} bytes (the client disconnected); "
                "upload the file again"
            ) from None
        self.received += len(data)
        if self.received > self._max_bytes:
            raise PayloadTooLargeError(too_large(self._name, self._max_bytes))
        return data


def too_large(name: str, max_bytes: int) -> str:
    return (
        f"{name}: the upload is larger than {max_bytes:,} bytes (SENTQ_API_MAX_BYTES); "
        "split the file, gzip it (Content-Encoding: gzip), or raise the limit"
    )
