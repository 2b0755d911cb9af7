"""Per-format readers turning decoded text, CSV/TSV or JSONL into blocks of texts, naming the line of a bad record."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from typing import TextIO

from sentq.errors import ConfigError, InputError

_HEADER_WORDS = frozenset({"text", "review", "sentence", "body", "comment", "content"})
_CHOOSE_COLUMN = "choose one with --column NAME or --column INDEX (counting from 1)"
# A line this long without a line break (in bytes) stops the fast plain-text check; the exact reader takes over.
_LONG_LINE_BYTES = 16 * 1024 * 1024

Block = tuple[list[int], list[str]]


class FormatReader:
    """One read of a decoded input in its format: blocks of exactly ``size`` texts but the last, keeping at most one.

    ``blank_lines`` counts the blank lines (or records) skipped so far; ``header_row`` says whether a CSV read found a
    header row (for the "no texts" message).
    """

    def __init__(
        self, name: str, fmt: str, *, max_chars: int, column: str | None, field: str, header: bool | None
    ) -> None:
        self.name = name
        self.format = fmt
        self.blank_lines = 0
        self.header_row = False
        self._max_chars = max_chars
        self._column = column
        self._field = field
        self._header = header
        # A live stream's "was that end a pause?" (inputs._Live.resume); a pause cuts the block short.
        self.paused: Callable[[], bool] | None = None
        self.pause_cut = False  # the block just yielded was cut short by a pause
        # Called at a pause with no texts of the reader's own to hand on: the consumer queues what it holds.
        self.on_pause: Callable[[], None] | None = None

    def _resumes(self, holding: bool) -> bool:
        """At an end of the input: whether it was only a live stream's pause (then read on). ``holding``: texts read
        since the last block, which the caller yields now; without, ``on_pause`` is told."""
        if self.paused is None or not self.paused():
            return False
        if not holding and self.on_pause is not None:
            self.on_pause()
        return True

    def text_blocks(self, f: TextIO, size: int) -> Iterator[Block]:
        max_chars = self._max_chars
        line = 0  # lines read so far
        ended = False
        while not ended:
            lines: list[int] = []
            texts: list[str] = []
            while len(texts) < size:
                want = size - len(texts)
                raw = list(islice(f, want))
                if not raw:
                    ended = not self._resumes(bool(texts))
                    break
                block = [s.strip() for s in raw]
                # The fast path: a block with no blank and no over-long line is taken whole.
                if all(block) and max(map(len, block)) <= max_chars:
                    lines.extend(range(line + 1, line + 1 + len(block)))
                    texts.extend(block)
                else:
                    for number, text in enumerate(block, line + 1):
                        if not text:
                            self.blank_lines += 1
                        elif len(text) > max_chars:
                            raise self._too_long(number, len(text))
                        else:
                            lines.append(number)
                            texts.append(text)
                line += len(raw)
                if len(raw) < want and self._resumes(bool(texts)):  # the lines before a pause: hand them on
                    break
            if texts:
                self.pause_cut = len(texts) < size and not ended
                yield lines, texts

    def jsonl_blocks(self, f: TextIO, size: int) -> Iterator[Block]:
        return self._blocks(self._jsonl_texts(f), size)

    def _jsonl_texts(self, f: TextIO) -> Iterator[tuple[int, str | None]]:
        """(line, text) per record; a live stream's pause as (line, None), so ``_blocks`` cuts its block there."""
        number = 0
        while True:
            yield from self._jsonl_run(f, number)
            number = self._jsonl_line
            if not self._resumes(True):
                return
            yield number, None

    def _jsonl_run(self, f: TextIO, start: int) -> Iterator[tuple[int, str]]:
        field, loads = self._field, json.loads
        self._jsonl_line = start
        for number, raw in enumerate(f, start + 1):
            self._jsonl_line = number
            stripped = raw.strip()
            if not stripped:
                self.blank_lines += 1
                continue
            try:
                value = loads(stripped)
            except json.JSONDecodeError as exc:
                column = exc.colno + len(raw) - len(raw.lstrip())
                raise InputError(
                    f"{self.name}: line {number} is not valid JSON ({exc.msg} at column {column}); "
                    'each line must be one JSON object, such as {"text": "..."}'
                ) from None
            if isinstance(value, dict):
                if field not in value:
                    raise InputError(
                        f'{self.name}: line {number} has no field "{field}" '
                        f"(fields: {_show(list(value))}); choose one with --field"
                    )
                value = value[field]
                if not isinstance(value, str):
                    raise InputError(
                        f'{self.name}: line {number}: field "{field}" is {_json_type(value)}, not a '
                        f'string; each line needs its text as a JSON string in "{field}"'
                    )
            elif not isinstance(value, str):
                raise InputError(
                    f"{self.name}: line {number} is {_json_type(value)}, not a JSON object; "
                    'each line must be one JSON object, such as {"text": "..."}'
                )
            yield number, value.strip()

    def _blocks(self, numbered: Iterator[tuple[int, str | None]], size: int) -> Iterator[Block]:
        """Blocks of at most ``size`` (line, text) pairs: blank texts counted and skipped, over-long ones refused; a
        pause (text None) cuts the block there."""
        max_chars = self._max_chars
        lines: list[int] = []
        texts: list[str] = []
        self.pause_cut = False
        for number, text in numbered:
            if not text:
                if text is None:  # a pause
                    if texts:
                        self.pause_cut = True
                        yield lines, texts
                        self.pause_cut = False
                        lines, texts = [], []
                    elif self.on_pause is not None:
                        self.on_pause()
                    continue
                self.blank_lines += 1
            elif len(text) > max_chars:
                raise self._too_long(number, len(text))
            else:
                lines.append(number)
                texts.append(text)
                if len(texts) == size:
                    yield lines, texts
                    lines, texts = [], []
        if texts:
            yield lines, texts

    def csv_blocks(self, f: TextIO, size: int, sample: str) -> Iterator[Block]:
        self.header_row = False
        records = self._csv_records(f)
        first = None
        for start, row in records:
            if any(cell.strip() for cell in row):
                first = (start, row)
                break
            self.blank_lines += 1
        if first is None:
            return
        column, header = self._pick_column(first[1], sample)
        self.header_row = header
        yield from self._blocks(self._csv_texts(records if header else chain([first], records), column), size)

    def _csv_texts(self, records: Iterator[tuple[int, list[str]]], column: int) -> Iterator[tuple[int, str]]:
        for start, row in records:
            try:
                text = row[column].strip()
            except IndexError:
                if any(cell.strip() for cell in row):
                    raise InputError(
                        f"{self.name}: line {start} has {len(row)} columns, column {column + 1} "
                        "missing; check the delimiter and the quoting on that line"
                    ) from None
                text = ""
            yield start, text

    def _csv_records(self, f: TextIO) -> Iterator[tuple[int, list[str]]]:
        """Yield each CSV record with the physical line it starts on (quoted fields may span lines)."""
        reader = csv.reader(f, delimiter="\t" if self.format == "tsv" else ",", strict=True)
        end = 0
        try:
            for row in reader:
                yield end + 1, row
                end = reader.line_num
        except csv.Error as exc:
            start, message = end + 1, str(exc)
            if message == "unexpected end of data":
                raise InputError(
                    f'{self.name}: line {start}: unterminated quoted field (a " opened in the record '
                    "starting on this line is never closed); close the quote, or double quotes inside "
                    'a quoted field ("")'
                ) from None
            if message.startswith("field larger than field limit"):
                limit = csv.field_size_limit()
                why = (
                    f"over the limit of {self._max_chars:,} (SENTQ_MAX_TEXT_CHARS)"
                    if self._max_chars < limit
                    else "the most the CSV reader takes"
                )
                raise InputError(
                    f"{self.name}: line {start} has a field over {limit:,} characters, {why}; split or shorten "
                    "it, or check for a quote that is never closed"
                ) from None
            raise InputError(
                f"{self.name}: line {start} is not valid CSV ({message}); quote fields that contain "
                'the delimiter, quotes or newlines, and double quotes inside them ("")'
            ) from None

    def _pick_column(self, row: list[str], sample: str) -> tuple[int, bool]:
        """The 0-based column holding the texts, and whether ``row`` (the first record) is a header."""
        cells = [cell.strip() for cell in row]
        folded = [cell.casefold() for cell in cells]
        column = self._column
        if column is not None and is_index(column):
            index = int(column) - 1
            header = self._header if self._header is not None else self._sniff_header(folded, sample)
            if header and index >= len(cells):
                raise InputError(f"{self.name}: no column {index + 1} (columns: {_show(cells)}); {_CHOOSE_COLUMN}")
            return index, header
        if column is not None:
            if self._header is False:
                raise ConfigError(
                    f"--column {column} names a column, so the first row must be a header; "
                    "use --column INDEX (counting from 1) for a file without one"
                )
            name = column.strip()
            if name in cells:
                return cells.index(name), True
            if name.casefold() in folded:
                return folded.index(name.casefold()), True
            raise InputError(f'{self.name}: no column "{name}" (columns: {_show(cells)}); {_CHOOSE_COLUMN}')
        if self._header is not False and "text" in folded:
            return folded.index("text"), True
        if len(cells) == 1:
            return 0, self._header if self._header is not None else self._sniff_header(folded, sample)
        raise InputError(f"{self.name}: {len(cells)} columns ({_show(cells)}) and no --column; {_CHOOSE_COLUMN}")

    def _sniff_header(self, folded: list[str], sample: str) -> bool:
        if _HEADER_WORDS.intersection(folded):
            return True
        if len(folded) == 1:
            # The sniffer votes on how a header cell differs from the cells below it; one column of free text gives
            # it no signal (it calls any file with a single data row headed), so only the words above decide.
            return False
        try:
            return _Sniffer(csv.excel_tab if self.format == "tsv" else csv.excel).has_header(sample)
        except csv.Error:
            return False

    def _too_long(self, line: int, length: int) -> InputError:
        return InputError(
            f"{self.name}: line {line} has {length:,} characters, over the limit of "
            f"{self._max_chars:,} (SENTQ_MAX_TEXT_CHARS); split or shorten it"
        )


class _Sniffer(csv.Sniffer):
    """``csv.Sniffer`` told the dialect, so ``has_header`` judges columns instead of guessing the delimiter."""

    def __init__(self, dialect: type[csv.Dialect]) -> None:
        super().__init__()
        self._dialect = dialect

    def sniff(self, sample: str, delimiters: str | None = None) -> type[csv.Dialect]:
        return self._dialect


def is_index(column: str) -> bool:
    """Whether ``--column`` is a number (counting from 1) rather than a name."""
    return column.strip().isascii() and column.strip().isdigit()


def _show(names: list[str]) -> str:
    shown = [(name if len(name) <= 30 else name[:29] + "…") or '""' for name in names[:12]]
    return ", ".join(shown) + (f", … ({len(names)} in all)" if len(names) > 12 else "")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a string"


def plain_text_fits(blocks: Iterable[bytes], max_chars: int) -> bool:
    """Whether plain text, given as blocks of raw bytes (no BOM), passes every check ``text_blocks`` makes.

    A bytes-level pass, several times faster than decoding line by line: valid UTF-8, at least one text, no text
    over ``max_chars`` characters. False means "not sure", never "bad": the caller reads the input again exactly.
    """
    carry = b""
    found = False  # a line that is not blank
    for data in chain(blocks, [b""]):
        block = carry + data if carry else data
        # Blocks are cut after a line break so each holds whole lines (a \r\n cut in two is two harmless breaks).
        cut = max(block.rfind(b"\n"), block.rfind(b"\r")) + 1 if data else len(block)
        if cut == 0 and data:
            if len(block) > _LONG_LINE_BYTES:
                return False  # one huge line: leave it to the exact reader
            carry = block
            continue
        text = None
        if not block.isascii():
            try:
                text = block[:cut].decode("utf-8")
            except UnicodeDecodeError:
                return False
        if not found:
            found = bool((block[:cut].decode("ascii") if text is None else text).strip())
        if not _lines_fit(block, cut, max_chars):
            return False
        carry = block[cut:]
    return found


def _lines_fit(block: bytes, end: int, max_chars: int) -> bool:
    """Whether no line of ``block[:end]`` (valid UTF-8 ending at a line break) has over ``max_chars`` characters."""
    start = 0
    while end - start > max_chars:
        # Lines that fit in bytes fit in characters: jump to the last \n within max_chars bytes of this line's start.
        newline = block.rfind(b"\n", start, start + max_chars + 1)
        if newline < 0:
            # Longer in bytes: count the characters (fewer when multi-byte), as universal newlines split the line.
            newline = block.find(b"\n", start, end)
            newline = end if newline < 0 else newline
            if any(len(line.strip()) > max_chars for line in block[start:newline].decode("utf-8").split("\r")):
                return False
        start = newline + 1
    return True
