"""Writing a job's rows to stdout or a file, as JSONL (as workers produce them) or CSV."""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from sentq import rows
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


def result_csv(output: bytes, payload: bytes | None, *, raw: bool = False) -> bytes:
    """A chunk's CSV lines from its stored result and staged input: ``to_csv`` of its JSONL rows, byte for byte, built
    from the columns of a plain chunk (rows.plain_chunk) without making JSON first."""
    output, payload = rows.unzipped(output, payload)
    plain = rows.plain_chunk(output, payload, _csv_escape)
    tails = None if plain is None else csv_tails(plain.model)
    if plain is None or tails is None:
        return to_csv(rows.result_rows(output, payload), raw=raw)
    texts = plain.texts
    if not raw:  # a formula start: the control characters among them never reach here
        for found in _FORMULA.finditer(plain.firsts):
            texts[found.start()] = b"'" + texts[found.start()]
    # A text holding a comma or a quote is quoted, as csv.writer does (its quotes were doubled with the whole chunk)
    marks = plain.joined.translate(None, _not_quoted_for(plain.sep)).split(plain.sep)
    for i in itertools.compress(range(len(texts)), marks):
        texts[i] = b'"' + texts[i] + b'"'
    args: list[object] = [None] * (3 * len(texts))
    args[0::3] = plain.lines
    args[1::3] = texts
    args[2::3] = map(tails.__getitem__, plain.codes)
    try:
        return rows.fill_rows(b"%d,%b%b", args, 3)
    except TypeError:  # a code no worker writes: the JSON path says so
        return to_csv(rows.result_rows(output, payload), raw=raw)


_FORMULA = re.compile(rb"[=+\-@]")  # FORMULA_STARTS without the control characters


def _csv_escape(data: bytes) -> bytes:
    return data.replace(b'"', b'""')


@functools.cache
def _not_quoted_for(sep: bytes) -> bytes:
    """Every byte but the separator and those that make csv.writer quote a field (its line ends have no place in a
    plain chunk)."""
    return bytes(c for c in range(256) if c not in (sep[0], ord(","), ord('"')))


@functools.lru_cache(maxsize=4)
def csv_tails(model: str) -> list[bytes | None] | None:
    """code -> the end of a CSV line from its score on (None: not a valid code), for one model version, as to_csv
    writes it; None if the model's name needs quoting (no worker names one so; to_csv then does it)."""
    buf = io.StringIO()
    csv.writer(buf).writerow(["", "", model])
    if buf.getvalue() != f",,{model}\r\n":
        return None
    scores, labels = rows.score_values()
    return [
        None if score is None else f",{score!r},{label},{model}\r\n".encode()
        for score, label in zip(scores, labels, strict=True)
    ]


def result_writer(fmt: str, *, raw_csv: bool = False) -> Callable[[bytes, bytes | None], Any]:
    """What makes a chunk's rows in ``fmt`` from its stored result and staged input: JSONL or CSV bytes, or for
    "parquet" an Arrow record batch (sentq.columnar)."""
    if fmt == "parquet":
        from sentq import columnar

        return columnar.result_batch
    return rows.result_rows if fmt == "jsonl" else functools.partial(result_csv, raw=raw_csv)


def line_of(row: bytes) -> int:
    """The input line of a JSONL or CSV row (or of a chunk's first row) without parsing it: JSONL rows start
    ``{"line":N,``, CSV lines ``N,``."""
    return int(row[8 : row.index(b",")]) if row.startswith(b"{") else int(row[: row.index(b",")])


def rows_from_line(chunk: bytes, first_line: int) -> bytes:
    """The rows of a chunk (JSONL, or CSV lines) whose input line is ``first_line`` or later."""
    if chunk.startswith(b"{"):
        return b"".join(row for row in chunk.splitlines(keepends=True) if line_of(row) >= first_line)
    # CSV: a quoted text may hold line breaks, so the chunk is cut only where a line break ends a row
    return b"".join(row for row in _csv_rows(chunk) if line_of(row) >= first_line)


def _csv_rows(chunk: bytes) -> list[bytes]:
    """A chunk's CSV lines, one per row: a line break ends a row where the quotes before it are balanced (a quoted
    text may hold line breaks)."""
    found: list[bytes] = []
    start = scanned = quotes = 0
    while (end := chunk.find(b"\r\n", scanned)) >= 0:
        quotes += chunk.count(b'"', scanned, end)
        scanned = end + 2
        if quotes % 2 == 0:
            found.append(chunk[start:scanned])
            start = scanned
    return found


FORMATS = ("jsonl", "csv", "parquet")


def format_for(path: Path | None, fmt: str | None) -> str:
    """``--format`` if given, else by the output's suffix (.csv -> csv, .parquet -> parquet), else JSONL."""
    if fmt:
        if fmt not in FORMATS:
            raise InputError(f"unknown output format {fmt!r}; use jsonl, csv or parquet")
        return fmt
    suffix = path.suffix.lower() if path is not None else ""
    return {".csv": "csv", ".parquet": "parquet"}.get(suffix, "jsonl")


class Sink:
    """Where rows go: ``rows_of`` makes a chunk's rows in the sink's format (given to follow.follow as its ``write``,
    counting them), ``write`` writes them. Parquet (an Arrow record batch a chunk, see sentq.columnar) goes to a
    file only."""

    def __init__(self, path: Path | None, fmt: str, *, raw_csv: bool = False) -> None:
        self.path = path
        self.fmt = fmt
        self.raw_csv = raw_csv
        self.rows = 0
        self._parquet: Any = None
        self._make: Callable[[bytes, bytes | None], Any] = result_writer(fmt, raw_csv=raw_csv)
        if fmt == "parquet":
            from sentq import columnar

            columnar.need_pyarrow("Parquet output")
            if path is None:
                raise InputError("Parquet output goes to a file: add -o rows.parquet")
        if path is None:
            self._file: BinaryIO = sys.stdout.buffer
        else:
            try:
                self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise InputError(f"cannot write {path}: {exc.strerror}") from None
        if fmt == "csv":
            self._file.write(CSV_HEADER)
        elif fmt == "parquet":
            self._parquet = columnar.ParquetSink(self._file)

    def rows_of(self, output: bytes, payload: bytes | None) -> Any:
        made = self._make(output, payload)
        self.rows += rows.result_count(output)
        return made

    def write(self, made: Any) -> None:
        if self._parquet is not None:
            self._parquet.write(made)
        else:
            self._file.write(made)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        self._file.flush()
        if self.path is not None:
            self._file.close()
