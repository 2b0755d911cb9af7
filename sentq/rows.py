"""The data path's formats: chunks as staged in Redis for workers, and the JSONL rows workers write back."""

from __future__ import annotations

import array
import functools
import json
import re
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from sentq.inputs import Chunk, RawLines

# A chunk of long texts is cut so one task stays small (memory in Redis and in the worker, time to redeliver):
# ~8 MB of text scores in about a second.
MAX_CHUNK_CHARS = 8_000_000

# A staged chunk: magic, count, line numbers as little-endian uint32, then the texts joined by a record
# separator (3x cheaper than JSON both ways, measured); a chunk whose texts contain the separator goes as JSON.
# Lines of a validated plain-text file go as they are in the file: magic, first line and line count (uint32 each),
# then the bytes, split and stripped by the worker (the producer's cost per line is then a few C-level scans).
_BINARY, _JSON, _RAW, _RS = b"SQB1", b"SQJ1", b"SQR1", "\x1e"


def _u32(values: list[int]) -> array.array[int]:
    """Little-endian uint32s (stdlib array, not numpy: `sentq status` should not pay numpy's import)."""
    packed = array.array("I", values)  # 4 bytes on every platform CPython supports today
    if sys.byteorder == "big":
        packed.byteswap()
    return packed


def encode_raw(run: RawLines) -> bytes:
    """A run of a plain-text file's lines as staged in Redis for a worker."""
    return _RAW + run.first.to_bytes(4, "little") + run.count.to_bytes(4, "little") + run.data


def encode_chunk(chunk: Chunk) -> bytes:
    """The chunk as staged in Redis for a worker."""
    joined = _RS.join(chunk.texts)
    if joined.count(_RS) != max(len(chunk.texts) - 1, 0):
        return _JSON + json.dumps({"lines": chunk.lines, "texts": chunk.texts}, ensure_ascii=False).encode()
    count = len(chunk.texts).to_bytes(4, "little")
    return _BINARY + count + _u32(chunk.lines).tobytes() + joined.encode()


def decode_chunk(raw: bytes) -> tuple[list[int], list[str]]:
    """Line numbers and texts of a staged chunk."""
    magic = raw[:4]
    if magic == _RAW:
        first, count = int.from_bytes(raw[4:8], "little"), int.from_bytes(raw[8:12], "little")
        parts = raw[12:].decode().split("\n")
        if parts[-1] == "":  # the run ends with a line break (all do but a file's last line)
            parts.pop()
        if len(parts) != count:
            raise ValueError(f"staged chunk is corrupt: {len(parts)} lines where {count} were staged")
        stripped = [part.strip() for part in parts]  # as the exact reader strips; \r of a \r\n goes too
        if all(stripped):
            return list(range(first, first + count)), stripped
        kept = [(n, text) for n, text in enumerate(stripped, first) if text]  # blank lines are skipped, not scored
        return [n for n, _ in kept], [text for _, text in kept]
    if magic == _JSON:
        data = json.loads(raw[4:])
        return data["lines"], data["texts"]
    if magic != _BINARY:
        raise ValueError("not a staged sentq chunk (unknown format)")
    count = int.from_bytes(raw[4:8], "little")
    lines: list[int] = _little("I", raw[8 : 8 + 4 * count]).tolist()
    texts = raw[8 + 4 * count :].decode().split(_RS) if count else []
    if len(texts) != count:
        raise ValueError(f"staged chunk is corrupt: {len(texts)} texts for {count} line numbers")
    return lines, texts


def first_line(head: bytes) -> int:
    """The first input line of a staged chunk, from its first 64 bytes."""
    if head[:4] == _RAW:
        return int.from_bytes(head[4:8], "little")
    if head[:4] == _BINARY:
        return int.from_bytes(head[8:12], "little")
    found = re.match(rb'\{"lines": \[(\d+)', head[4:])
    if head[:4] != _JSON or found is None:
        raise ValueError("not a staged sentq chunk (unknown format)")
    return int(found.group(1))


def split_large(chunks: Iterable[Chunk], *, max_chars: int = MAX_CHUNK_CHARS) -> Iterator[Chunk]:
    """Chunks renumbered in order, any over ``max_chars`` of text cut into pieces that are not."""
    from sentq.inputs import Chunk

    index = 0
    for chunk in chunks:
        if sum(map(len, chunk.texts)) <= max_chars:
            yield Chunk(index, chunk.lines, chunk.texts) if chunk.index != index else chunk
            index += 1
            continue
        start = size = 0
        for i, one in enumerate(chunk.texts):
            if size + len(one) > max_chars and i > start:
                yield Chunk(index, chunk.lines[start:i], chunk.texts[start:i])
                index += 1
                start, size = i, 0
            size += len(one)
        yield Chunk(index, chunk.lines[start:], chunk.texts[start:])
        index += 1


# A chunk's result as a worker stores it: magic, the model version's length and name, then one little-endian uint16
# per text of the staged chunk, in order: the score in 1/10000ths, the label in the top bit (set: positive), or
# FAILED for a text that failed alone (it has no row). The waiter makes the rows from it and the staged texts (which
# stay in Redis until the job expires): 2 bytes a row instead of the ~140 of its JSONL, written once, read once.
_PACKED = b"SQS1"
FAILED = b"\xff\xff"
_FAILED_CODE = 0xFFFF
_POSITIVE = 0x8000


def score_codes(probs: npt.NDArray[np.float64]) -> bytes:
    """Packed result codes of scored texts (see _PACKED): the score as the row shows it, and the label."""
    import numpy as np  # here: the CLI imports this module and should not pay for numpy

    codes = np.rint(probs * 10000).astype("<u2")
    codes |= (probs >= 0.5).astype("<u2") << 15
    return codes.tobytes()


def pack_result(model: str, codes: bytes) -> bytes:
    """A chunk's stored result: its texts' codes (score_codes, FAILED) and the model version that scored them."""
    name = model.encode()
    return _PACKED + len(name).to_bytes(1, "little") + name + codes


def is_packed(output: bytes) -> bool:
    return output[:4] == _PACKED


def result_rows(output: bytes, payload: bytes | None) -> bytes:
    """A chunk's JSONL rows from its stored result and its staged input (None: gone); a result stored as JSONL rows
    (by a worker of an earlier version) is returned as it is."""
    if not is_packed(output):
        return output
    if payload is None:
        raise ValueError("the chunk's staged texts are gone (expired or deleted)")
    size = output[4]
    model = output[5 : 5 + size].decode()
    codes = _little("H", output[5 + size :])
    lines, texts = decode_chunk(payload)
    if len(codes) != len(texts):
        raise ValueError(f"stored result is corrupt: {len(codes)} scores for {len(texts)} texts")
    return _build_rows(lines, texts, codes.tolist(), model)


def format_rows(lines: list[int], texts: list[str], probs: npt.NDArray[np.float64], model: str) -> bytes:
    """The job's output rows as JSONL, in input order (what a waiter writes; built column by column)."""
    return _build_rows(lines, texts, _little("H", score_codes(probs)).tolist(), model)


def _little(typecode: str, raw: bytes) -> array.array[int]:
    """Little-endian unsigned ints ("H": 2 bytes, "I": 4 on every platform CPython supports today) from bytes."""
    packed = array.array(typecode)
    packed.frombytes(raw)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed


def _build_rows(lines: list[int], texts: list[str], codes: list[int], model: str) -> bytes:
    """JSONL rows of texts and their result codes, in input order; texts with FAILED have none."""
    if _FAILED_CODE in codes:
        kept = [i for i, code in enumerate(codes) if code != _FAILED_CODE]
        lines, texts, codes = [lines[i] for i in kept], [texts[i] for i in kept], [codes[i] for i in kept]
    count = len(texts)
    if not count:
        return b""
    # Built as bytes, each column with C-level operations (28% faster than joining str and encoding: one emoji makes
    # a str 4 bytes a character). json.dumps escapes every '"' inside a string, so '", "' only separates two items.
    escaped = json.dumps(texts, ensure_ascii=False).encode()[2:-2].split(b'", "')
    numbers = " ".join(map(str, lines)).encode().split(b" ")
    tail = f'","model":"{model}"}}\n'.encode()
    parts: list[bytes] = [b""] * (6 * count)
    parts[0::6] = [b'{"line":'] * count
    parts[1::6] = numbers
    parts[2::6] = [b',"text":"'] * count
    parts[3::6] = escaped
    parts[4::6] = map(score_label_table().__getitem__, codes)
    parts[5::6] = [tail] * count
    return b"".join(parts)


@functools.cache
def score_label_table() -> dict[int, bytes]:
    """code -> b'","score":0.1234,"label":"positive' (the part of a row between text and model), for every valid
    code: a table lookup instead of formatting a float per row. Built on first use (~10 ms), not by every process
    that imports this module (`sentq status` never makes a row)."""
    return {
        code | flag: f'","score":{code / 10000:.4f},"label":"{"positive" if flag else "negative"}'.encode()
        for code in range(10001)
        for flag in (0, _POSITIVE)
    }
