"""The public input reader: TextSource opens a file or stdin (gzipped or not), decodes it, feeds it to its format."""

from __future__ import annotations

import gzip
import io
import os
import re
import select
import stat
import sys
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TextIO, cast

from sentq.errors import ConfigError, InputError, PayloadTooLargeError
from sentq.inputs_formats import Block, FormatReader, is_index, plain_text_fits

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from sentq.settings import Settings

FORMATS = ("text", "csv", "tsv", "jsonl")

_SUFFIXES = {
    ".txt": "text",
    ".text": "text",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json-lines": "jsonl",
}
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
# 64 KiB of decoded data is what the CSV header sniffer looks at; its first 8 KiB is what the binary check looks at.
_HEAD_BYTES = 64 * 1024
_BINARY_CHECK_BYTES = 8 * 1024
# Bytes kept behind the decoder to locate a UTF-8 error: more than the 64 KiB read-ahead plus one 8 KiB decode step,
# so the bad byte is always inside, even for stdin (which cannot be read again).
_KEEP_BYTES = 256 * 1024
# Block size of validate's fast pass over plain text: big enough to amortise per-block work, small enough for cache.
_SCAN_BYTES = 1024 * 1024
# Reads of raw_lines(): several chunks' worth, so the partial run carried over to the next read is a small share.
_RUN_READ_BYTES = 8 * 1024 * 1024


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes | None: ...


@dataclass(frozen=True)
class Chunk:
    """One batch of texts and, for each, the 1-based input line where it starts."""

    index: int
    lines: list[int]
    texts: list[str]


@dataclass(frozen=True)
class RawLines:
    """``count`` whole lines of a validated plain-text file as its bytes, the first being line ``first``.

    What the producer stages for a worker instead of decoded texts: the worker decodes, splits at \n and strips them
    exactly as the reader would (``rows.decode_chunk``), so the producer neither decodes nor re-encodes. ``texts`` is
    how many are not blank.
    """

    first: int
    count: int
    texts: int
    data: bytes


# A line that may be blank starts with whitespace (or is empty): after a \n, one of the bytes str.strip() may strip
# (ASCII whitespace, \x1c-\x1f, or the lead byte of a non-ASCII space). Only such lines are decoded to be sure.
_MAYBE_BLANK = re.compile(rb"\n(?=[\t\n\x0b\x0c\r \x1c-\x1f\xc2\xe1\xe2\xe3])")
_MAYBE_BLANK_FIRST = frozenset(b"\t\n\x0b\x0c\r \x1c\x1d\x1e\x1f\xc2\xe1\xe2\xe3")


class TextSource:
    """One input (a path, or ``-`` for stdin) read as a stream of validated, stripped texts."""

    def __init__(
        self,
        path: str,
        *,
        fmt: str | None = None,
        column: str | None = None,
        field: str | None = None,
        header: bool | None = None,
        max_chars: int = 10_000,
        stdin: BinaryIO | None = None,
        name: str | None = None,
        idle_s: float = 0.0,
        max_gunzip_bytes: int | None = None,
    ) -> None:
        """``path`` ``-`` reads ``stdin`` (default: the process's), shown in messages as ``name`` (``<stdin>``);
        gzipped input inflating past ``max_gunzip_bytes`` is refused (SENTQ_MAX_GUNZIP_BYTES).

        With ``idle_s``, a pipe or terminal read as text or JSONL yields the texts read so far as a short chunk once
        it has been quiet that long (``pause_cut`` then says so), instead of waiting for a whole chunk.
        """
        self.name = name or ("<stdin>" if path == "-" else path)
        self.is_stream = path == "-"
        self.blank_lines = 0
        self.texts = 0
        # Whether the chunk just yielded was cut short because a live stream went quiet (queue it now); on_pause is
        # called when it goes quiet between chunks (queue what is held).
        self.pause_cut = False
        self.on_pause: Callable[[], None] | None = None
        self._idle_s = idle_s
        self._reading: _Live | None = None
        self._path = path
        self._stdin = stdin
        self._column = column
        self._field = field or "text"
        self._header = header
        self._max_chars = max_chars
        self._max_gunzip_bytes = max_gunzip_bytes
        self._used = False
        # Set by validate(): the file passed the fast bytes-level check, so raw_lines() may stage its bytes as is.
        self.raw_ok = False
        self._no_lone_cr = False
        lowered = os.path.basename(path).lower()
        self._gzip_suffix = lowered.endswith(".gz")
        if fmt is None:
            fmt = "text" if self.is_stream else _SUFFIXES.get(os.path.splitext(lowered.removesuffix(".gz"))[1], "text")
        if fmt not in FORMATS:
            raise ConfigError(f"unknown input format {fmt!r}; use one of: {', '.join(FORMATS)}")
        self.format = fmt
        if max_chars < 1:
            raise ConfigError(f"SENTQ_MAX_TEXT_CHARS must be a positive whole number, got {max_chars}")
        if column is not None and fmt not in ("csv", "tsv"):
            raise ConfigError(
                f"--column applies to CSV/TSV input, but {self.name} is read as {fmt}; "
                "add --format csv (or tsv), or drop --column"
            )
        if column is not None and (not column.strip() or (is_index(column) and int(column) == 0)):
            raise ConfigError(f"--column needs a column name or a number counting from 1, got {column!r}")
        # The default field name is allowed everywhere, so callers may always pass it.
        if field not in (None, "text") and fmt != "jsonl":
            raise ConfigError(
                f"--field applies to JSONL input, but {self.name} is read as {fmt}; add --format jsonl, or drop --field"
            )
        if not self.is_stream:
            self._check_file()

    def chunks(self, size: int) -> Iterator[Chunk]:
        """Stream the input as chunks of ``size`` texts (the last may be shorter); raises InputError on bad input."""
        if size < 1:
            raise ValueError(f"chunk size must be at least 1, got {size}")
        if self.is_stream and self._used:
            raise RuntimeError(f"{self.name} can be read only once")
        self._used = True
        self.blank_lines = self.texts = 0
        return (Chunk(index, lines, texts) for index, (lines, texts) in enumerate(self._read(size)))

    @classmethod
    def from_settings(cls, path: str, settings: Settings, *, live: bool = False, **options: Any) -> TextSource:
        """``path`` read under ``settings``' limits (SENTQ_MAX_TEXT_CHARS, SENTQ_MAX_GUNZIP_BYTES); with ``live``, a
        quiet pipe's lines are queued after SENTQ_STREAM_IDLE (the CLI's stdin). ``options``: the reader's own."""
        idle_s = settings.stream_idle_s if live else 0.0
        max_chars, max_gunzip = settings.max_text_chars, settings.max_gunzip_bytes
        return cls(path, max_chars=max_chars, max_gunzip_bytes=max_gunzip, idle_s=idle_s, **options)

    @property
    def options(self) -> dict[str, str]:
        """How this input is read beyond its format (--column, --field), as a job records it to read it again."""
        return {
            **({"column": self._column} if self._column is not None else {}),
            **({"field": self._field} if self._field != "text" else {}),
        }

    def interrupt(self) -> bool:
        """Stop a live stream's read from another thread (it raises KeyboardInterrupt where it waits for input);
        False if this source cannot be woken (a file, a gzip or CSV stream: it ends with the process)."""
        reading = self._reading
        if reading is None or not reading.live:
            return False
        reading.interrupt()
        return True

    def validate(self) -> None:
        """Read the whole file once, checking every line as ``chunks`` would, then reset the counters."""
        if self.is_stream:
            raise TypeError(f"{self.name} is a stream and cannot be read twice; validate it while reading chunks")
        self.blank_lines = self.texts = 0
        self.raw_ok = False
        try:
            if self.format == "text" and not self._gzip_suffix and self._plain_text_fits():
                self.raw_ok = self._no_lone_cr
                return
            for _ in self._read(8192):
                pass
        finally:
            self.blank_lines = self.texts = 0

    def raw_lines(self, size: int, *, max_bytes: int) -> Iterator[RawLines]:
        """A validated plain-text file (``raw_ok``) as runs of lines holding ``size`` texts each (the last may hold
        fewer; a run stops early at ``max_bytes``, unless it holds one text), undecoded. Counts texts and blank lines as
        ``chunks`` does, and cuts where it does: a run is what the exact reader's chunk of ``size`` texts spans."""
        if not self.raw_ok:
            raise RuntimeError(f"{self.name}: raw_lines() needs a file that validate() passed")
        self.blank_lines = self.texts = 0
        first = 1
        with open(self._path, "rb") as f:
            buf, start, eof = f.read(_RUN_READ_BYTES).removeprefix(_BOM), 0, False
            while True:
                found = _cut_texts(buf, start, size, max_bytes, eof=eof)
                if found is None:  # the run goes past what was read
                    data = f.read(_RUN_READ_BYTES)
                    buf, start, eof = buf[start:] + data, 0, not data
                    continue
                cut, count, blanks = found
                if cut == start:
                    return
                self.blank_lines += blanks
                self.texts += count - blanks
                if count > blanks:
                    yield RawLines(first, count, count - blanks, buf[start:cut])
                first += count
                start = cut

    def _plain_text_fits(self) -> bool:
        """Whether an uncompressed plain-text file is good, by a fast bytes-level pass (False: unsure, read it exactly).

        The exact reader then only runs on a file with a problem, or one the fast pass is unsure of (NUL in the
        first 8 KiB, gzip data, a huge line), so its error messages, with their line and column, stay the only ones.
        """
        try:
            with open(self._path, "rb") as raw:
                first = raw.read(_SCAN_BYTES)
                if first.startswith(_GZIP_MAGIC) or b"\0" in first[:_BINARY_CHECK_BYTES]:
                    return False
                rest = iter(partial(raw.read, _SCAN_BYTES), b"")
                blocks = chain([first.removeprefix(_BOM)], rest)
                return plain_text_fits(self._note_lone_cr(blocks), self._max_chars)
        except OSError:
            return False

    def _note_lone_cr(self, blocks: Iterator[bytes]) -> Iterator[bytes]:
        """Pass ``blocks`` through, clearing ``_no_lone_cr`` at a \\r that may not be part of a \\r\\n: a line break
        to the exact reader but not to a worker's split at \\n, so such a file is never staged raw."""
        self._no_lone_cr = True
        for block in blocks:
            if b"\r" in block and block.count(b"\r") != block.count(b"\r\n"):
                self._no_lone_cr = False
            yield block

    # Opening.

    def _check_file(self) -> None:
        try:
            info = os.stat(self._path)
        except FileNotFoundError:
            raise InputError(f"{self.name}: no such file; check the path (use - to read standard input)") from None
        except OSError as exc:
            raise InputError(f"{self.name}: cannot open it ({exc.strerror}); check the path") from None
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{self.name}: is a directory, not a file; give the path of a file of texts")
        if not stat.S_ISREG(info.st_mode):
            # A pipe such as <(zcat a.gz): opening it here would consume it, and it cannot be read twice.
            self.is_stream = True
            if not os.access(self._path, os.R_OK):
                raise InputError(f"{self.name}: cannot read it (permission denied); check its permissions")
            return
        try:
            with open(self._path, "rb"):
                pass
        except PermissionError:
            raise InputError(f"{self.name}: cannot read it (permission denied); check its permissions") from None
        except OSError as exc:
            raise InputError(f"{self.name}: cannot open it ({exc.strerror}); check the path") from None

    def _open_raw(self, stack: ExitStack) -> BinaryIO:
        if self._path == "-":
            return self._stdin if self._stdin is not None else sys.stdin.buffer
        try:
            return stack.enter_context(open(self._path, "rb"))
        except OSError:
            self._check_file()  # gone or unreadable since __init__: raise the same message it would have
            raise

    def _read(self, size: int) -> Iterator[Block]:
        """Open, check and decode the input, then yield blocks of at most ``size`` texts from the format's reader."""
        reader = FormatReader(
            self.name,
            self.format,
            max_chars=self._max_chars,
            column=self._column,
            field=self._field,
            header=self._header,
        )
        reader.on_pause = self.on_pause
        with ExitStack() as stack:
            tap: _Tap | None = None
            try:
                text, tap, head = self._open_text(stack, record=self.is_stream, reader=reader)
                if self.format == "text":
                    blocks = reader.text_blocks(text, size)
                elif self.format == "jsonl":
                    blocks = reader.jsonl_blocks(text, size)
                else:
                    blocks = reader.csv_blocks(text, size, _sample(head))
                for block in blocks:
                    self.texts += len(block[1])
                    self.blank_lines = reader.blank_lines
                    self.pause_cut = reader.pause_cut
                    yield block
            except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
                raise self._read_error(exc, tap if self.is_stream else self._replay()) from None
            finally:
                self.blank_lines = reader.blank_lines
        if self.texts == 0:
            blanks = f"{self.blank_lines:,} blank line{'s' if self.blank_lines != 1 else ''}"
            if reader.header_row:
                why = "only a header row" + (f" and {blanks}" if self.blank_lines else "")
            elif self.blank_lines:
                why = f"{blanks} and no text"
            else:
                why = f"the {'input' if self.is_stream else 'file'} is empty"
            raise InputError(f"{self.name}: no texts to score ({why}); check that this is the right file")

    def _open_text(
        self, stack: ExitStack, *, record: bool, reader: FormatReader | None = None
    ) -> tuple[TextIO, _Tap | None, bytes]:
        """The input decoded (gunzipped, BOM dropped), its head (first 64 KiB), and the recording tap if ``record``.

        A file is read by the plain buffered stack, rewound after the head is checked: the fast path. A stream
        cannot be rewound, so its head is served again, and its recent bytes recorded, by a ``_Tap``. A live stream
        (``_live``) is read as it fills, and tells ``reader`` when it went quiet.
        """
        raw = self._open_raw(stack)
        rewind = not self.is_stream
        live = self._live(raw) if reader is not None else None
        if live is not None:
            stack.callback(live.close)
            self._reading = live
            raw = cast("BinaryIO", live)  # read and read1 are all a stream's readers use (it is never rewound)
        magic = _read_full(raw, 2)
        source: BinaryIO | gzip.GzipFile = raw
        if live is not None and magic == _GZIP_MAGIC:
            live.live = False  # a pause would read as a truncated gzip stream: whole chunks only
        if magic == _GZIP_MAGIC:
            if rewind:
                raw.seek(0)
            source = stack.enter_context(self._gunzip(raw if rewind else _Tap(magic, raw)))
            head = _read_full(source, _HEAD_BYTES)
        elif self._gzip_suffix and magic:
            raise InputError(
                f"{self.name}: not a valid gzip file (it does not start with the gzip signature); "
                "check it with gzip -t, or drop the .gz suffix if it is not compressed"
            )
        else:
            head = magic + _read_full(raw, _HEAD_BYTES - len(magic))
        if live is not None and reader is not None and live.live:
            live.owe()  # a pause may have ended the head: its lines are handed on at the next one
            reader.paused = live.resume
        self._check_head(head)
        bom = len(_BOM) if head.startswith(_BOM) else 0
        tap = None
        binary: BinaryIO | gzip.GzipFile | io.BufferedReader = source
        if rewind and not record:
            source.seek(bom)
        else:
            tap = _Tap(head[bom:], source, record=True)
            binary = io.BufferedReader(tap, _HEAD_BYTES)
        newline = "" if self.format in ("csv", "tsv") else None
        text = stack.enter_context(io.TextIOWrapper(binary, encoding="utf-8", newline=newline))
        return text, tap, head[bom:]

    def _live(self, raw: BinaryIO) -> _Live | None:
        """A reader of stdin as it fills, when it is a pipe, terminal or socket read as text or JSONL with
        ``idle_s`` set (a file never pauses; a CSV record may span lines; an upload has no descriptor)."""
        if not (self.is_stream and self._idle_s > 0 and self.format in ("text", "jsonl")):
            return None
        try:
            fd = raw.fileno()
            mode = os.fstat(fd).st_mode
        except (AttributeError, OSError, ValueError):
            return None
        if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)):
            return None
        return _Live(fd, self._idle_s)

    def _gunzip(self, compressed: BinaryIO | _Tap) -> gzip.GzipFile:
        if self._max_gunzip_bytes is None:
            return gzip.GzipFile(fileobj=compressed, mode="rb")
        return _CappedGzip(compressed, max_bytes=self._max_gunzip_bytes, name=self.name)

    def _replay(self) -> _Tap | None:
        """Read a file again through a recording tap up to the error it raised, to locate it (the slow path)."""
        with ExitStack() as stack:
            tap = None
            try:
                text, tap, _ = self._open_text(stack, record=True)
                while text.read(1 << 20):
                    pass
            except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error):
                pass
            return tap

    def _read_error(self, exc: Exception, tap: _Tap | None) -> InputError:
        if isinstance(exc, UnicodeDecodeError):
            return self._bad_utf8(tap)
        after = f" after line {_lines_read(tap):,}" if tap is not None and _lines_read(tap) else ""
        if isinstance(exc, EOFError):
            return InputError(
                f"{self.name}: gzip data is truncated{after} (the file ends inside the compressed stream); "
                "fetch or compress it again"
            )
        return InputError(
            f"{self.name}: not a valid gzip file ({exc}{';' if after else ''}{after}); "
            "check it with gzip -t, then fetch or compress it again"
        )

    def _check_head(self, head: bytes) -> None:
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise InputError(
                f"{self.name}: is UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8; "
                "re-save it as UTF-8 (e.g. iconv -f utf-16 -t utf-8)"
            )
        if b"\0" in head[:_BINARY_CHECK_BYTES]:
            raise InputError(
                f"{self.name}: looks like a binary file (NUL byte in the first 8 KiB), not text; "
                "sentq reads plain text, CSV/TSV or JSONL"
            )

    def _bad_utf8(self, tap: _Tap | None) -> InputError:
        hint = "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        if tap is None:
            return InputError(f"{self.name}: is not valid UTF-8; {hint}")
        window = tap.window
        skip = 0
        if tap.dropped_bytes:
            # The window may start inside a character whose first bytes were decoded (and dropped) already.
            while skip < 3 and skip < len(window) and 0x80 <= window[skip] <= 0xBF:
                skip += 1
        try:
            window[skip:].decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = skip + exc.start
            before = window[:bad]
            line = tap.lines_before + _count_lines(before) + 1
            start = max(before.rfind(b"\n"), before.rfind(b"\r")) + 1
            where = f"byte 0x{window[bad]:02x}"
            if start > 0 or not tap.dropped_bytes:
                where += f" at column {len(before[start:].decode('utf-8')) + 1}"
            return InputError(f"{self.name}: line {line:,} is not valid UTF-8 ({where}); {hint}")
        return InputError(f"{self.name}: is not valid UTF-8 after line {tap.lines_before:,}; {hint}")


class _Live:
    """A pipe or terminal read as it fills (what is there, never waiting for a whole buffer), that pauses when quiet.

    Once the stream has been quiet ``idle_s`` at a line end, with bytes handed on since the last pause, a read answers
    b"" once and ``resume()`` then says True: the readers above take it for an end (so the lines read so far come
    out as a short chunk), ask ``resume()`` whether it was a pause, and read on. The descriptor is read directly, so
    nothing may have been read from it through a buffer before.
    """

    def __init__(self, fd: int, idle_s: float) -> None:
        self.live = True
        self._fd = fd
        self._idle_s = idle_s
        self._owed = False  # bytes were handed on since the last pause
        self._line_end = True
        self._due = time.monotonic() + idle_s  # when a pause is due if nothing more arrives
        self._paused = False
        self._wake_r, self._wake_w = os.pipe()  # interrupt() ends a wait for input from another thread

    def read(self, size: int = -1, /) -> bytes:
        if self.live and self._owed and self._line_end:
            if not self._wait(max(0.0, self._due - time.monotonic())):
                self._owed = False
                self._paused = True
                return b""
        else:
            self._wait(None)
        data = os.read(self._fd, size if size > 0 else _HEAD_BYTES)
        if data:
            self._owed = True
            self._line_end = data.endswith(b"\n")
            self._due = time.monotonic() + self._idle_s
        return data

    read1 = read

    def owe(self) -> None:
        """The lines read so far are not handed on yet (the head was read ahead): pause again when due."""
        if self._paused:
            self._paused = False
            self._owed = True

    def resume(self) -> bool:
        """Whether the end just seen was a pause (read on), not the stream's end."""
        paused, self._paused = self._paused, False
        return paused

    def interrupt(self) -> None:
        """Make the reading thread's wait for input raise KeyboardInterrupt (its Ctrl-C went to the main thread)."""
        os.write(self._wake_w, b"!")

    def close(self) -> None:
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _wait(self, timeout: float | None) -> bool:
        ready = select.select([self._fd, self._wake_r], [], [], timeout)[0]
        if self._wake_r in ready:
            raise KeyboardInterrupt
        return bool(ready)


class _CappedGzip(gzip.GzipFile):
    """A GzipFile that refuses to inflate past ``max_bytes``: its reader never holds much, but a small gzip of one
    repeated line would keep it (and a file's validating first pass) inflating, and staging, without end."""

    def __init__(self, compressed: BinaryIO | _Tap, *, max_bytes: int, name: str) -> None:
        super().__init__(fileobj=compressed, mode="rb")
        self._max_bytes = max_bytes
        self._name = name
        self._out = 0

    def _count(self, data: bytes) -> bytes:
        self._out += len(data)
        if self._out > self._max_bytes:
            raise PayloadTooLargeError(
                f"{self._name}: the gzip data inflates to more than {self._max_bytes:,} bytes, the limit "
                "(SENTQ_MAX_GUNZIP_BYTES); split the input into smaller files, or raise the limit"
            )
        return data

    # Every way a reader takes bytes: read() (readinto's default), read1() (TextIOWrapper, _Tap), readline().
    def read(self, size: int | None = -1) -> bytes:
        return self._count(super().read(size))

    def read1(self, size: int = -1) -> bytes:
        return self._count(super().read1(size))

    def readline(self, size: int | None = -1) -> bytes:
        return self._count(super().readline(size))

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._out = super().seek(offset, whence)  # a file is read again from its start (the fast path's rewind)
        return self._out


class _Tap(io.RawIOBase):
    """Serves bytes already read, then the rest of a stream; with ``record``, remembers recent bytes for error reports.

    The kept bytes (``window``) and the count of line breaks before them (``lines_before``) let a decode error be
    placed at its exact line without reading the input again (stdin cannot be). Chunks are kept by reference, not
    copied, and counted only as they leave the window: this costs the happy path one pass of ``bytes.count``.
    """

    def __init__(self, head: bytes, rest: _Readable, *, record: bool = False) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._read_rest: Any = getattr(rest, "read1", rest.read)
        self._record = record
        self._kept: deque[bytes] = deque()
        self._kept_bytes = 0
        self.dropped_bytes = 0
        self.lines_before = 0

    @property
    def window(self) -> bytes:
        return b"".join(self._kept)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            data = bytes(self._head[: len(view)])
            self._head = self._head[len(data) :]
        else:
            data = self._read_rest(len(view))
        size = len(data)
        view[:size] = data
        if self._record and size:
            kept = self._kept
            kept.append(data)
            self._kept_bytes += size
            while self._kept_bytes - len(kept[0]) >= _KEEP_BYTES:
                old = kept.popleft()
                self._kept_bytes -= len(old)
                self.dropped_bytes += len(old)
                # A \r\n split across two chunks is one line break, not two.
                self.lines_before += _count_lines(old) - (old.endswith(b"\r") and kept[0].startswith(b"\n"))
        return size


def _read_full(stream: _Readable, size: int) -> bytes:
    """Read ``size`` bytes, or up to the end: one ``read`` may return less from a pipe."""
    parts = []
    while size > 0:
        data = stream.read(size)
        if not data:
            break
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def _cut_texts(buf: bytes, start: int, size: int, max_bytes: int, *, eof: bool) -> tuple[int, int, int] | None:
    """The run of lines from ``start`` that holds ``size`` texts (blank lines do not count), stopping early at
    ``max_bytes`` (but one line at least): (end, lines, blank lines); None when it goes past ``buf`` before ``eof``."""
    cut, count, blanks = start, 0, 0
    while count - blanks < size and cut - start < max_bytes:
        more, lines = _cut_lines(buf, cut, size - (count - blanks), max_bytes - (cut - start))
        if more < 0:
            if not eof:
                return None
            more = len(buf)  # the rest of the file; its last line may have no line break
            lines = buf.count(b"\n", cut) + (not buf.endswith(b"\n")) if more > cut else 0
            if not lines:
                break
        if more - start > max_bytes and count > blanks:
            break  # a line longer than what is left of max_bytes starts the next run
        blanks += _blank_lines(buf, cut, more)
        count += lines
        cut = more
    return cut, count, blanks


def _blank_lines(buf: bytes, start: int, end: int) -> int:
    """Blank lines (what str.strip() empties) of the whole lines ``buf[start:end]``: only lines that start like a
    blank one (see _MAYBE_BLANK) are decoded."""
    blanks = 0
    line_starts = [start] if start < end and buf[start] in _MAYBE_BLANK_FIRST else []
    line_starts += [found.start() + 1 for found in _MAYBE_BLANK.finditer(buf, start, end)]
    for line in line_starts:
        stop = buf.find(b"\n", line, end)
        blanks += not buf[line : stop if stop >= 0 else end].decode("utf-8").strip()
    return blanks


def _cut_lines(buf: bytes, start: int, lines: int, max_bytes: int) -> tuple[int, int]:
    """Where the first ``lines`` whole lines of ``buf[start:]`` end (after their \\n) and how many lines that is: fewer
    when they would pass ``max_bytes`` (but one line at least). (-1, 0) when it holds fewer whole lines and bytes.

    Counts line breaks a window at a time; the window that holds the one wanted is counted again in windows a 16th
    its size, down to 1 KiB, where the last few are found one by one: each byte is scanned about twice, with a
    few dozen calls a run (one `index` a line in the last 64 KiB took a third of the producer's time).
    """
    limit = min(len(buf), start + max_bytes)
    pos, left, step = start, lines, 64 * 1024
    while pos < limit:
        end = min(pos + step, limit)
        n = buf.count(b"\n", pos, end)
        if n >= left:
            if step > 1024:
                step //= 16
                continue
            for _ in range(left):
                pos = buf.index(b"\n", pos) + 1
            return pos, lines
        left -= n
        pos = end
    if len(buf) - start < max_bytes:
        return -1, 0  # more to read
    last = buf.rfind(b"\n", start, limit)
    if last >= 0:
        return last + 1, lines - left
    end = buf.find(b"\n", limit)  # one line longer than max_bytes: it goes alone
    return (end + 1, 1) if end >= 0 else (-1, 0)


def _count_lines(data: bytes) -> int:
    """Line breaks in ``data`` as universal newlines count them: \\n, \\r\\n and a lone \\r."""
    count = data.count(b"\n")
    if b"\r" in data:  # a fast memchr; the two extra counts only for data with CRs
        count += data.count(b"\r") - data.count(b"\r\n")
    return count


def _lines_read(tap: _Tap | None) -> int:
    return 0 if tap is None else tap.lines_before + _count_lines(tap.window)


def _sample(head: bytes) -> str:
    """The head as text for the header sniffer, cut at the last line break when the input goes on."""
    text = head.decode("utf-8", errors="replace")
    if len(head) >= _HEAD_BYTES - len(_BOM) and "\n" in text:
        text = text[: text.rindex("\n") + 1]
    return text
