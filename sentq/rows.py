"""The data path's formats: chunks as staged in Redis for workers, and the JSONL rows workers write back."""

from __future__ import annotations

import array
import json
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from sentq.inputs import Chunk

# A chunk of long texts is cut so one task stays small (memory in Redis and in the worker, time to redeliver):
# ~8 MB of text scores in about a second.
MAX_CHUNK_CHARS = 8_000_000

# A staged chunk: magic, count, line numbers as little-endian uint32, then the texts joined by a record
# separator (3x cheaper than JSON both ways, measured); a chunk whose texts contain the separator goes as JSON.
_BINARY, _JSON, _RS = b"SQB1", b"SQJ1", "\x1e"


def _u32(values: list[int]) -> array.array[int]:
    """Little-endian uint32s (stdlib array, not numpy: `sentq status` should not pay numpy's import)."""
    packed = array.array("I", values)  # 4 bytes on every platform CPython supports today
    if sys.byteorder == "big":
        packed.byteswap()
    return packed


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
    if magic == _JSON:
        data = json.loads(raw[4:])
        return data["lines"], data["texts"]
    if magic != _BINARY:
        raise ValueError("not a staged sentq chunk (unknown format)")
    count = int.from_bytes(raw[4:8], "little")
    packed = _u32([])
    packed.frombytes(raw[8 : 8 + 4 * count])
    if sys.byteorder == "big":
        packed.byteswap()
    lines: list[int] = packed.tolist()
    texts = raw[8 + 4 * count :].decode().split(_RS) if count else []
    if len(texts) != count:
        raise ValueError(f"staged chunk is corrupt: {len(texts)} texts for {count} line numbers")
    return lines, texts


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


# Every score a row can show ("0.0000" .. "1.0000"): a table lookup instead of formatting a float per row.
_SCORES = [f"{i / 10000:.4f}" for i in range(10001)]


def format_rows(lines: list[int], texts: list[str], probs: npt.NDArray[np.float64], model: str) -> bytes:
    """The job's output rows as JSONL, in input order (built column by column with C-level operations)."""
    count = len(texts)
    if not count:
        return b""
    import numpy as np  # here: the CLI imports this module and should not pay for numpy

    # json.dumps escapes every '"' inside a string, so '", "' only ever separates two list items.
    escaped = json.dumps(texts, ensure_ascii=False)[2:-2].split('", "')
    scores = map(_SCORES.__getitem__, np.rint(probs * 10000).astype(np.intp).tolist())
    neg_tail, pos_tail = (f',"label":"{label}","model":"{model}"}}\n' for label in ("negative", "positive"))
    parts: list[str] = [""] * (7 * count)
    parts[0::7] = ['{"line":'] * count
    parts[1::7] = map(str, lines)
    parts[2::7] = [',"text":"'] * count
    parts[3::7] = escaped
    parts[4::7] = ['","score":'] * count
    parts[5::7] = scores
    parts[6::7] = map((neg_tail, pos_tail).__getitem__, (probs >= 0.5).tolist())
    return "".join(parts).encode()
