"""Writing a job's rows to stdout or a file, as JSONL (as workers produce them) or CSV."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, BinaryIO

from sentq.errors import InputError

COLUMNS = ("line", "text", "score", "label", "model")


CSV_HEADER = (",".join(COLUMNS) + "\r\n").encode()


def parse_rows(jsonl: bytes) -> list[dict[str, Any]]:
    """A chunk's JSONL rows as dicts: one json.loads per chunk (rows made into one array), ~5x faster than per row."""
    return json.loads(b"[" + jsonl.rstrip(b"\n").replace(b"\n", b",") + b"]") if jsonl.strip() else []


# A spreadsheet runs a cell that starts with one of these as a formula (`=HYPERLINK(...)`, `+1+1`, `@SUM(1+1)`).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralized(text: str) -> str:
    """``text`` as a spreadsheet shows it without running it: a leading ' before a formula start (OWASP's rule for
    CSV injection; the spreadsheet hides the quote). Other texts are unchanged."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def to_csv(jsonl: bytes, *, raw: bool = False) -> bytes:
    """A chunk's JSONL rows as CSV lines (no header: that is CSV_HEADER, written once). A text a spreadsheet would
    run as a formula gets a leading ' unless ``raw`` (the text exactly as it was submitted)."""
    buf = io.StringIO()
    safe = (lambda text: text) if raw else neutralized
    csv.writer(buf).writerows(
        [r["line"], safe(r["text"]), r["score"], r["label"], r["model"]] for r in parse_rows(jsonl)
    )
    return buf.getvalue().encode()


def line_of(row: bytes) -> int:
    """The input line of a JSONL row (or of a chunk's first row) without parsing it: rows start ``{"line":N,``."""
    return int(row[8 : row.index(b",")])


def rows_from_line(jsonl: bytes, first_line: int) -> bytes:
    """The rows of a chunk whose input line is ``first_line`` or later."""
    return b"".join(row for row in jsonl.splitlines(keepends=True) if line_of(row) >= first_line)


def format_for(path: Path | None, fmt: str | None) -> str:
    """``--format`` if given, else by the output's suffix (.csv -> csv), else JSONL."""
    if fmt:
        if fmt not in ("jsonl", "csv"):
            raise InputError(f"unknown output format {fmt!r}; use jsonl or csv")
        return fmt
    if path is not None and path.suffix.lower() == ".csv":
        return "csv"
    return "jsonl"


class Sink:
    """Where rows go; JSONL bytes pass straight through, CSV is converted one chunk at a time."""

    def __init__(self, path: Path | None, fmt: str, *, raw_csv: bool = False) -> None:
        self.path = path
        self.fmt = fmt
        self.raw_csv = raw_csv
        self.rows = 0
        if path is None:
            self._file: BinaryIO = sys.stdout.buffer
        else:
            try:
                self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise InputError(f"cannot write {path}: {exc.strerror}") from None
        if fmt == "csv":
            self._file.write(CSV_HEADER)

    def write(self, jsonl: bytes) -> None:
        self.rows += jsonl.count(b"\n")
        self._file.write(jsonl if self.fmt == "jsonl" else to_csv(jsonl, raw=self.raw_csv))

    def close(self) -> None:
        self._file.flush()
        if self.path is not None:
            self._file.close()
