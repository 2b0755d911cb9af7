"""The data path's formats: chunks as staged in Redis for workers, and the JSONL rows workers write back."""

from __future__ import annotations

import array
import functools
import json
import operator
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
# FAILED for a text that failed alone (it has no row). Rows are made from it and the chunk's staged texts.
#
# Since #20 a worker stores them together (_ZIPPED), so the staged input can go once its chunk is done: magic, then
# little-endian uint32s: texts, rows (texts less those that failed alone), first input line, the bytes a downloader
# holds once it is decompressed; the model version's length and name; the codes; then the staged payload as it was,
# in one zstd frame. The fixed head (ZIPPED_HEAD bytes) lets a downloader plan its memory before fetching the rest.
# ~34 bytes a row instead of the ~80 of the staged text and its codes (texts of 3-30 words, zstd level 2;
# bench/costs.py), so a finished row costs Redis under half the memory; compressing costs the worker ~0.33 us a
# text (2-3% of its time), decompressing the downloader ~0.07 us a row. The codes stay out of the frame: nearly
# random, they made the texts compress worse (level 1: 38.4 bytes a row with them in it, 37.2 beside it). _PACKED
# results (2 bytes a text, the input staged beside them) are from a worker of an earlier version.
_PACKED, _ZIPPED = b"SQS1", b"SQZ1"
FAILED = b"\xff\xff"
_FAILED_CODE = 0xFFFF
_POSITIVE = 0x8000
# zstd level 2, on bench/costs.py's texts, bytes a row (with the 2 of the codes) and CPU a text to compress: level 1
# 37.2 B, 0.23 us; level 2 33.5 B, 0.33 us; level 3 32.2 B, 0.41 us. Level 2 keeps a finished row under 40 bytes in
# Redis with its allocator's slack (#20's target) for 0.1 us more of a worker's ~4 us a text.
ZSTD_LEVEL = 2


def score_codes(probs: npt.NDArray[np.float64]) -> bytes:
    """Packed result codes of scored texts (see _PACKED): the score as the row shows it, and the label."""
    import numpy as np  # here: the CLI imports this module and should not pay for numpy

    codes = np.rint(probs * 10000).astype("<u2")
    codes |= (probs >= 0.5).astype("<u2") << 15
    return codes.tobytes()


def pack_result(model: str, codes: bytes, payload: bytes | None = None, *, first: int = 0) -> bytes:
    """A chunk's stored result: its texts' codes (score_codes, FAILED) and the model version that scored them; with
    ``payload`` (the chunk's staged input; ``first`` its first input line) the two together, compressed (_ZIPPED)."""
    name = model.encode()
    if payload is None:
        return _PACKED + len(name).to_bytes(1, "little") + name + codes
    import zstandard

    texts = len(codes) // 2
    made = texts - _failed_count(codes, 0)
    head = b"".join(n.to_bytes(4, "little") for n in (texts, made, first, len(codes) + len(payload)))
    return _ZIPPED + head + len(name).to_bytes(1, "little") + name + codes + zstandard.compress(payload, ZSTD_LEVEL)


def _failed_count(codes: bytes, start: int) -> int:
    # Only FAILED has a high byte of 0xFF, so no other pair of bytes reads as FAILED, aligned or not.
    return codes.count(FAILED, start)


def is_packed(output: bytes) -> bool:
    """A stored result whose rows are made from it and the chunk's staged input (fetched beside it)."""
    return output[:4] == _PACKED


def is_zipped(output: bytes) -> bool:
    """A stored result that holds its chunk's texts (see _ZIPPED)."""
    return output[:4] == _ZIPPED


ZIPPED_HEAD = 20


def zipped_first_line(head: bytes) -> int:
    """The first input line of a _ZIPPED result, from its head (ZIPPED_HEAD bytes)."""
    return int.from_bytes(head[12:16], "little")


def held_size(head: bytes, stored: int) -> int:
    """The bytes a downloader holds for a stored result of ``stored`` bytes whose first ZIPPED_HEAD bytes are ``head``:
    a _ZIPPED result's texts and codes uncompressed, else what is stored."""
    return int.from_bytes(head[16:20], "little") if head[:4] == _ZIPPED else stored


def unzipped(output: bytes, payload: bytes | None) -> tuple[bytes, bytes | None]:
    """A _ZIPPED result as the _PACKED result and staged input it holds; any other is returned as it is."""
    if output[:4] != _ZIPPED:
        return output, payload
    import zstandard

    texts = int.from_bytes(output[4:8], "little")
    frame = ZIPPED_HEAD + 1 + output[ZIPPED_HEAD] + 2 * texts
    try:
        payload = zstandard.decompress(output[frame:])
    except zstandard.ZstdError as exc:
        raise ValueError(f"stored result is corrupt: {exc}") from None
    return _PACKED + output[ZIPPED_HEAD:frame], payload


def result_rows(output: bytes, payload: bytes | None) -> bytes:
    """A chunk's JSONL rows from its stored result and its staged input (None: gone); a result stored as JSONL rows
    (by a worker of an earlier version) is returned as it is."""
    output, payload = unzipped(output, payload)
    if not is_packed(output):
        return output
    plain = plain_chunk(output, payload, json_escape)
    built = None if plain is None else _plain_jsonl(plain)
    if built is not None:
        return built
    model, codes, lines, texts = _decoded(output, payload)
    return _build_rows(lines, texts, codes.tolist(), model)


def result_count(output: bytes) -> int:
    """How many rows a chunk's stored result makes (its texts less those that failed alone), without making them."""
    if is_zipped(output):
        return int.from_bytes(output[8:12], "little")
    if not is_packed(output):
        return output.count(b"\n")
    start = 5 + output[4]
    return (len(output) - start) // 2 - _failed_count(output, start)


def _decoded(output: bytes, payload: bytes | None) -> tuple[str, array.array[int], list[int], list[str]]:
    """A packed result and its staged input, decoded: model, codes, line numbers, texts (ValueError: they do not
    match, or the input is gone)."""
    if payload is None:
        raise ValueError("the chunk's staged texts are gone (expired or deleted)")
    size = output[4]
    model = output[5 : 5 + size].decode()
    codes = _little("H", output[5 + size :])
    lines, texts = decode_chunk(payload)
    if len(codes) != len(texts):
        raise ValueError(f"stored result is corrupt: {len(codes)} scores for {len(texts)} texts")
    return model, codes, lines, texts


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


_quote = json.JSONEncoder(ensure_ascii=False).encode


def _build_rows(lines: list[int], texts: list[str], codes: list[int], model: str) -> bytes:
    """JSONL rows of texts and their result codes, in input order; texts with FAILED have none."""
    if _FAILED_CODE in codes:
        kept = [i for i, code in enumerate(codes) if code != _FAILED_CODE]
        lines, texts, codes = [lines[i] for i in kept], [texts[i] for i in kept], [codes[i] for i in kept]
    count = len(texts)
    if not count:
        return b""
    # Built as bytes, each column with C-level operations (28% faster than joining str and encoding: one emoji makes
    # a str 4 bytes a character). json.dumps escapes every '"' inside a string, so '", "' separates two items unless
    # an item ends with an escaped quote, a comma and a space (text ending '", '): then each text is encoded alone.
    joined = json.dumps(texts, ensure_ascii=False).encode()[2:-2]
    if b'\\", "' in joined:
        escaped = [_quote(text).encode()[1:-1] for text in texts]
    else:
        escaped = joined.split(b'", "')
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


# The rows of a plain chunk (the common case) are built from its bytes with a few C-level passes over the whole chunk
# instead of text by text (3-4x faster, measured with bench/download.py). Plain: every text scored, staged as raw
# lines or binary (not JSON), no text holding a control character (JSON escapes those one by one), no raw line blank
# or with whitespace at its ends (the reader strips those). Any other chunk is decoded and built text by text
# (_build_rows); both give the same bytes (tests/test_rows.py checks it).
# A space, or the lead byte of a Unicode space (U+0085 ...) / a space, or the last byte of one.
SPACE_FIRST_BYTES = b" \xc2\xe1\xe2\xe3"
SPACE_LAST_BYTES = b" " + bytes(range(0x80, 0x8B)) + b"\x9f\xa0\xa8\xa9\xaf"


def _any_of(members: bytes) -> re.Pattern[bytes]:
    return re.compile(b"[" + b"".join(re.escape(bytes([c])) for c in members) + b"]")


_SUSPECT_FIRST, _SUSPECT_LAST = _any_of(SPACE_FIRST_BYTES), _any_of(SPACE_LAST_BYTES)


@dataclass(frozen=True)
class PlainChunk:
    """A plain chunk's rows as columns: ``texts`` escaped as its writer asked, ``joined`` the same joined by ``sep``,
    ``firsts`` each text's first byte (before escaping)."""

    model: str
    lines: range | list[int]
    codes: array.array[int]
    texts: list[bytes]
    joined: bytes
    sep: bytes
    firsts: bytes


def plain_chunk(output: bytes, payload: bytes | None, escape: Callable[[bytes], bytes]) -> PlainChunk | None:
    """The chunk as columns if it is plain (see above), its texts escaped by ``escape`` (which must keep every byte
    that is not a quote or backslash, so separators and ends stay as they were); None: build it text by text."""
    output, payload = unzipped(output, payload)
    if payload is None or not is_packed(output):
        return None
    size = output[4]
    if FAILED in output[5 + size :]:  # a text that failed alone (or a code no worker writes: 0xFF.. is no score)
        return None
    codes = _little("H", output[5 + size :])
    magic, sep = payload[:4], b"\n"
    lines: range | list[int]
    if magic == _RAW:
        first, count = int.from_bytes(payload[4:8], "little"), int.from_bytes(payload[8:12], "little")
        data = payload[12:-1] if payload.endswith(b"\n") else payload[12:]
        lines = range(first, first + count)
    elif magic == _BINARY:
        count, sep = int.from_bytes(payload[4:8], "little"), _RS.encode()
        lines = _little("I", payload[8 : 8 + 4 * count]).tolist()
        data = payload[8 + 4 * count :]
    else:
        return None
    if not count or len(codes) != count or len(data.translate(None, _controls_but(sep))) != len(data):
        return None
    try:
        firsts = bytes(map(_FIRST, data.split(sep))) if magic == _BINARY else b""
    except IndexError:  # an empty text
        return None
    joined = escape(data)
    texts = joined.split(sep)
    if len(texts) != count:
        return None  # corrupt: the text-by-text path says how
    if magic == _RAW:
        try:
            firsts, lasts = bytes(map(_FIRST, texts)), bytes(map(_LAST, texts))
        except IndexError:  # a blank line: skipped by the reader, so the line numbers are not a range
            return None
        suspects = {m.start() for m in _SUSPECT_FIRST.finditer(firsts)} | {
            m.start() for m in _SUSPECT_LAST.finditer(lasts)
        }
        for i in suspects:
            text = texts[i].decode()
            if text.strip() != text:
                return None
        # texts were escaped before their first bytes were taken: json_escape put a backslash before a leading quote
        # or backslash (the only escape that changes a first byte), which is the text's second byte now
        if escape is json_escape and b"\\" in firsts:
            fixed = bytearray(firsts)
            for found in _BACKSLASH.finditer(firsts):
                fixed[found.start()] = texts[found.start()][1]
            firsts = bytes(fixed)
    return PlainChunk(output[5 : 5 + size].decode(), lines, codes, texts, joined, sep, firsts)


_FIRST, _LAST = operator.itemgetter(0), operator.itemgetter(-1)
_BACKSLASH = re.compile(rb"\\")


@functools.cache
def _controls_but(sep: bytes) -> bytes:
    return bytes(c for c in range(0x20) if c != sep[0])


def json_escape(data: bytes) -> bytes:
    """UTF-8 text as inside a JSON string, for text with no control character: what json.dumps(ensure_ascii=False)
    makes of it."""
    return data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')


def _plain_jsonl(plain: PlainChunk) -> bytes | None:
    tails = jsonl_tails(plain.model)
    args: list[object] = [None] * (3 * len(plain.texts))
    args[0::3] = plain.lines
    args[1::3] = plain.texts
    args[2::3] = map(tails.__getitem__, plain.codes)
    try:
        return fill_rows(b'{"line":%d,"text":"%b%b', args, 3)
    except TypeError:  # a code no worker writes: the text-by-text path says so
        return None


# A cached template holds at most this many rows (~200 KB): a larger chunk (up to SENTQ_CHUNK_SIZE's 1,000,000 texts)
# is formatted this many rows at a time, so the cache stays small whatever the chunk sizes.
TEMPLATE_ROWS = 8192


def fill_rows(row: bytes, args: list[object], per_row: int) -> bytes:
    """Rows made by % of ``row`` (``per_row`` fields) repeated over ``args``: every row's fields, in order."""
    count = len(args) // per_row
    if count <= TEMPLATE_ROWS:
        return _template(row, count) % tuple(args)
    step = TEMPLATE_ROWS * per_row
    pieces = (args[at : at + step] for at in range(0, len(args), step))
    return b"".join(_template(row, len(piece) // per_row) % tuple(piece) for piece in pieces)


@functools.lru_cache(maxsize=16)
def _template(row: bytes, count: int) -> bytes:
    """``row`` repeated ``count`` times (chunks of a job are mostly of one size)."""
    return row * count


@functools.lru_cache(maxsize=4)
def jsonl_tails(model: str) -> list[bytes | None]:
    """code -> the end of a JSONL row from its score on (None: not a valid code), for one model version."""
    tails: list[bytes | None] = [None] * (_POSITIVE + 10001)
    for code, middle in score_label_table().items():
        tails[code] = middle + f'","model":"{model}"}}\n'.encode()
    return tails


@functools.cache
def score_values() -> tuple[list[float | None], list[str | None]]:
    """code -> the score and the label a row shows (None: not a valid code)."""
    scores: list[float | None] = [None] * (_POSITIVE + 10001)
    labels: list[str | None] = [None] * (_POSITIVE + 10001)
    for code in range(10001):
        for flag, label in ((0, "negative"), (_POSITIVE, "positive")):
            scores[code | flag], labels[code | flag] = float(f"{code / 10000:.4f}"), label
    return scores, labels


def result_dicts(output: bytes, payload: bytes | None) -> list[dict[str, Any]]:
    """A chunk's rows as dicts (``job.rows()``): the rows of ``result_rows``, as json.loads makes them."""
    output, payload = unzipped(output, payload)
    plain = plain_chunk(output, payload, bytes) if is_packed(output) else None
    scores, labels = score_values()
    if plain is not None and None not in (picked := [scores[c] for c in plain.codes]):
        model = plain.model
        return [
            {"line": line, "text": text, "score": score, "label": label, "model": model}
            for line, text, score, label in zip(
                plain.lines, map(bytes.decode, plain.texts), picked, map(labels.__getitem__, plain.codes), strict=True
            )
        ]
    jsonl = result_rows(output, payload)
    # One json.loads per chunk (its rows made into one array), not one per row.
    return json.loads(b"[" + jsonl.rstrip(b"\n").replace(b"\n", b",") + b"]") if jsonl.strip() else []
