"""A job's rows as Arrow record batches: ``job.batches()``, ``job.to_arrow()``, ``job.to_pandas()``, and Parquet files
(`sentq wait JOB -o rows.parquet`, the API's ``/results?format=parquet``).

Each finished chunk becomes one record batch built from its stored columns (the scores and the staged texts, see
rows._ZIPPED) with a few whole-chunk operations: no row is made as JSON or as a Python object. pyarrow is an optional
extra (``pip install 'sentq[arrow]'``): worker hosts, most of an installation, never need it.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import TYPE_CHECKING, Any, BinaryIO

from sentq import rows
from sentq.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa

# Any byte str.strip() may remove at the start or the end of a line, as its first or last byte: ASCII whitespace and
# the other control characters (rows' JSON path never sees those: it leaves such a chunk first), and the bytes of
# Unicode spaces rows checks for. A line with one at either end is checked exactly; one the reader strips sends its
# chunk the text-by-text way.
_SUSPECT_FIRST = bytes(range(0x20)) + rows.SPACE_FIRST_BYTES
_SUSPECT_LAST = bytes(range(0x20)) + rows.SPACE_LAST_BYTES
_LABELS = ("negative", "positive")
# Parquet row groups of at least this many rows (a chunk is a few thousand): what readers scan in parallel.
ROW_GROUP_ROWS = 131_072


def available() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def need_pyarrow(what: str) -> None:
    """InputError naming the extra to install if pyarrow is missing."""
    if not available():
        raise InputError(f"{what} needs pyarrow, which is not installed here: pip install 'sentq[arrow]'")


@functools.cache
def schema() -> pa.Schema:
    """line int64, text string, score float64 (as the JSONL row shows it), label and model dictionary-encoded."""
    import pyarrow as pa

    return pa.schema(
        [
            ("line", pa.int64()),
            ("text", pa.string()),
            ("score", pa.float64()),
            ("label", pa.dictionary(pa.int8(), pa.string())),
            ("model", pa.dictionary(pa.int8(), pa.string())),
        ]
    )


def result_batch(output: bytes, payload: bytes | None) -> pa.RecordBatch:
    """A chunk's rows as one record batch, from its stored result and staged input (the rows of rows.result_rows,
    as columns)."""
    import numpy as np
    import pyarrow as pa

    output, payload = rows.unzipped(output, payload)
    if not rows.is_packed(output):  # JSONL rows stored by a worker of an earlier version
        return _from_dicts(rows.result_dicts(output, payload))
    if payload is None:
        raise ValueError("the chunk's staged texts are gone (expired or deleted)")
    size = output[4]
    model = output[5 : 5 + size].decode()
    codes = np.frombuffer(output[5 + size :], "<u2")
    columns = _plain_columns(payload, len(codes))
    if columns is None:
        listed, texts = rows.decode_chunk(payload)
        if len(texts) != len(codes):
            raise ValueError(f"stored result is corrupt: {len(codes)} scores for {len(texts)} texts")
        lines, text = np.asarray(listed, dtype=np.int64), pa.array(texts, pa.string())
    else:
        lines, text = columns
    batch = _batch(lines, text, codes, model)
    failed = codes == 0xFFFF
    return batch.filter(pa.array(~failed)) if failed.any() else batch


def _batch(lines: Any, text: pa.Array, codes: Any, model: str) -> pa.RecordBatch:
    import numpy as np
    import pyarrow as pa

    if (codes & 0x7FFF)[codes != 0xFFFF].max(initial=0) > 10000:
        raise ValueError("stored result is corrupt: a score code no worker writes")
    scores = (codes & 0x7FFF) / 10000.0  # the double nearest c/10000, which "0.cccc" in a JSONL row parses to
    labels = pa.DictionaryArray.from_arrays(pa.array((codes >> 15).astype(np.int8)), pa.array(_LABELS))
    models = pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(codes), np.int8)), pa.array([model]))
    return pa.RecordBatch.from_arrays([pa.array(lines), text, pa.array(scores), labels, models], schema=schema())


def _plain_columns(payload: bytes, count: int) -> tuple[Any, pa.Array] | None:
    """Line numbers and texts of a chunk staged raw or binary, cut with whole-chunk operations; None: a chunk the
    reader strips (a blank line, whitespace at a line's end) or staged as JSON, to decode text by text.

    The payload is never sliced (a slice of bytes is a copy): numpy views it past its head, the texts are its bytes
    with every separator removed (the head's own separator bytes too: the body then starts that many bytes earlier),
    and Arrow's buffer is a zero-copy slice of that."""
    import numpy as np
    import pyarrow as pa

    magic = payload[:4]
    if magic == b"SQR1":
        first, staged = int.from_bytes(payload[4:8], "little"), int.from_bytes(payload[8:12], "little")
        head, sep = 12, b"\n"
        lines = np.arange(first, first + staged, dtype=np.int64)
    elif magic == b"SQB1":
        staged, sep = int.from_bytes(payload[4:8], "little"), b"\x1e"
        head = 8 + 4 * staged
        lines = np.frombuffer(payload, "<u4", count=staged, offset=8).astype(np.int64)
    else:
        return None
    if staged != count or not count or len(payload) < head:
        return None
    size = len(payload) - head - (magic == b"SQR1" and payload.endswith(b"\n"))  # the texts and separators
    buf = np.frombuffer(payload, np.uint8, count=size, offset=head)
    ends = np.flatnonzero(buf == sep[0])
    if len(ends) != count - 1:
        return None  # corrupt: the text-by-text path says how
    offsets = np.empty(count + 1, np.int64)
    offsets[0], offsets[1:-1], offsets[-1] = 0, ends + 1, size + 1
    starts, stops = offsets[:-1], offsets[1:] - 1  # each text is buf[start:stop]
    if magic == b"SQR1":
        if (stops == starts).any():
            return None  # a blank line: the reader skips it
        suspects = _byte_table(_SUSPECT_FIRST)[buf[starts]] | _byte_table(_SUSPECT_LAST)[buf[stops - 1]]
        for i in np.flatnonzero(suspects).tolist():  # a few: ’tis starts with the lead byte of U+2000's
            found = buf[starts[i] : stops[i]].tobytes().decode()
            if found.strip() != found:
                return None
    # The texts without their separators, each shifted back by the separators before it
    packed = offsets - np.arange(count + 1)
    joined = pa.py_buffer(payload.replace(sep, b""))
    body = head - payload.count(sep, 0, head)
    if packed[-1] > 2**31 - 1 or body + int(packed[-1]) > joined.size:
        return None
    text = pa.Array.from_buffers(
        pa.string(), count, [None, pa.py_buffer(packed.astype(np.int32)), joined.slice(body, int(packed[-1]))]
    )
    return lines, text


@functools.cache
def _byte_table(members: bytes) -> Any:
    """byte -> whether it is one of ``members``: a lookup, 3x faster than np.isin on a chunk's first bytes (built on
    first use: numpy is imported lazily)."""
    import numpy as np

    table = np.zeros(256, bool)
    table[list(members)] = True
    return table


def _from_dicts(found: list[dict[str, Any]]) -> pa.RecordBatch:
    import pyarrow as pa

    columns = {name: [row[name] for row in found] for name in ("line", "text", "score", "label", "model")}
    return pa.RecordBatch.from_pydict(
        {
            "line": pa.array(columns["line"], pa.int64()),
            "text": pa.array(columns["text"], pa.string()),
            "score": pa.array(columns["score"], pa.float64()),
            "label": pa.array(columns["label"], pa.string()).dictionary_encode().cast(schema().field("label").type),
            "model": pa.array(columns["model"], pa.string()).dictionary_encode().cast(schema().field("model").type),
        },
        schema=schema(),
    )


class ParquetSink:
    """Record batches written to ``out`` (a file or a file-like object) as one Parquet file, in row groups of
    ROW_GROUP_ROWS or more. ``close()`` writes the footer (a file with no batch still gets the schema)."""

    def __init__(self, out: str | BinaryIO) -> None:
        import pyarrow.parquet as pq

        # Uncompressed: already 40% smaller than the JSONL, and compressing is most of the writing's time (2M rows of
        # 3-30 word texts: 18M rows/s uncompressed, lz4 4.1M, snappy 3.4M, zstd level 1 3.1M at 45% of the size,
        # one core, bench/download.py's data); recompress it where size matters more than time. Statistics only where
        # a reader filters (line, score), not for the texts (min/max of every text's bytes costs and says nothing).
        self._writer = pq.ParquetWriter(
            out,
            schema(),
            compression="none",
            use_dictionary=["label", "model"],
            write_statistics=["line", "score"],
        )
        self._held: list[pa.RecordBatch] = []
        self._rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._held.append(batch)
        self._rows += batch.num_rows
        if self._rows >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self._held:
            self._writer.write_table(pa.Table.from_batches(self._held), row_group_size=max(self._rows, 1))
            self._held, self._rows = [], 0

    def close(self) -> None:
        self.flush()
        self._writer.close()
