"""The data path's pure functions: staged chunk encoding and JSONL row building (no Redis needed)."""

from __future__ import annotations

import array
import csv
import io
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentq import columnar, export, inputs, jobs, rows
from sentq.errors import InputError
from sentq.export import neutralized
from sentq.inputs import Chunk, RawLines, TextSource
from sentq.rows import (
    FAILED,
    decode_chunk,
    encode_chunk,
    encode_raw,
    format_rows,
    pack_result,
    plain_chunk,
    result_count,
    result_dicts,
    result_rows,
    score_codes,
)

AWKWARD = ["", 'say "hi"', "back\\slash", "two\nlines", "tab\there", "café 日本 🙂", "\x1e", "\u2028 sep", '", "']


@pytest.mark.parametrize("texts", [[], ["one"], AWKWARD, AWKWARD[:-2]])
def test_chunk_round_trip(texts: list[str]) -> None:
    lines = [1 + 3 * i for i in range(len(texts))]
    assert decode_chunk(encode_chunk(Chunk(0, lines, texts))) == (lines, texts)


def test_binary_format_unless_a_text_holds_the_separator() -> None:
    assert encode_chunk(Chunk(0, [1], ["plain"])).startswith(b"SQB1")
    assert encode_chunk(Chunk(0, [1], ["has \x1e inside"])).startswith(b"SQJ1")


def test_corrupt_chunk_is_refused() -> None:
    with pytest.raises(ValueError, match="not a staged sentq chunk"):
        decode_chunk(b"{garbage")
    good = encode_chunk(Chunk(0, [1, 2], ["a", "b"]))
    with pytest.raises(ValueError, match="corrupt"):
        decode_chunk(good[:-2])


def test_rows_are_exact_json_in_order() -> None:
    probs = np.array([0.5, 0.49995, 1.0, 0.0, 0.123456, 0.87654, 0.3, 0.9, 0.7])
    lines = list(range(10, 10 + len(AWKWARD)))
    rows = [json.loads(line) for line in format_rows(lines, AWKWARD, probs, "v7").decode().split("\n")[:-1]]
    assert [r["text"] for r in rows] == AWKWARD
    assert [r["line"] for r in rows] == lines
    assert [r["score"] for r in rows] == [0.5, 0.5, 1.0, 0.0, 0.1235, 0.8765, 0.3, 0.9, 0.7]
    # the label follows the unrounded probability: 0.49995 shows as 0.5000 but is negative
    assert [r["label"] for r in rows[:4]] == ["positive", "negative", "positive", "negative"]
    assert {r["model"] for r in rows} == {"v7"}
    assert list(rows[0]) == ["line", "text", "score", "label", "model"]


def test_no_rows() -> None:
    assert format_rows([], [], np.array([]), "v1") == b""


def test_large_chunks_are_cut_by_characters_and_renumbered() -> None:
    from sentq.rows import split_large

    chunks = [Chunk(0, [1, 2, 3], ["a" * 40, "b" * 40, "c" * 40]), Chunk(1, [4], ["d"]), Chunk(2, [5, 6], ["e", "f"])]
    out = list(split_large(chunks, max_chars=100))
    assert [c.index for c in out] == [0, 1, 2, 3]
    assert [c.texts for c in out] == [["a" * 40, "b" * 40], ["c" * 40], ["d"], ["e", "f"]]
    assert [c.lines for c in out] == [[1, 2], [3], [4], [5, 6]]
    # one text longer than the budget still goes, alone
    assert [c.texts for c in split_large([Chunk(0, [1, 2], ["x" * 500, "y"])], max_chars=100)] == [["x" * 500], ["y"]]


# Pieces of lines that trip up a reader: whitespace that str.strip() removes (ASCII, \x1c-\x1f, non-ASCII spaces),
# separators that are not line breaks to universal newlines (\x0b, \x0c, \x85, \u2028), multi-byte text.
_PIECES = ["hello", "  padded  ", "", " ", "\t", "\u00a0", "\u2028", "x\u2028y", "café", "\x1e", "a\x1eb", "\x85",
           "\u3000", "— dash", "“quote”", "\x0c", "\x1c", "b\x0bc", "🙂", "\u2003 em"]  # fmt: skip


@given(
    lines=st.lists(st.lists(st.sampled_from(_PIECES), max_size=3).map(" ".join), min_size=1, max_size=40),
    breaks=st.lists(st.sampled_from(["\n", "\n", "\r\n", "\r"]), min_size=40, max_size=40),
    last_break=st.booleans(),
    bom=st.booleans(),
    size=st.integers(1, 7),
    max_bytes=st.sampled_from([6, 40, 8_000_000]),
    read_bytes=st.sampled_from([3, 64, 1 << 20]),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_raw_staging_gives_what_the_exact_reader_gives(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lines: list[str],
    breaks: list[str],
    last_break: bool,
    bom: bool,
    size: int,
    max_bytes: int,
    read_bytes: int,
) -> None:
    """A validated plain-text file staged as raw runs of lines decodes, in a worker, to exactly the chunks (line numbers
    and texts) the exact reader yields, with the same text and blank-line counts (CRLF, lone CR, BOM, odd whitespace,
    runs cut short by the byte limit, runs across reads)."""
    body = "".join(line + brk for line, brk in zip(lines, breaks, strict=False))
    if not last_break:
        body = body[: len(body) - len(breaks[len(lines) - 1])]
    path = tmp_path / "in.txt"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body.encode())
    monkeypatch.setattr(inputs, "_SCAN_BYTES", read_bytes)
    monkeypatch.setattr(inputs, "_RUN_READ_BYTES", read_bytes)
    monkeypatch.setattr(jobs, "MAX_CHUNK_CHARS", max_bytes)

    def read(raw: bool) -> tuple[list[tuple[list[int], list[str]]], int, int] | str:
        source = TextSource(str(path))
        chunks = []
        try:
            source.validate()
            if "\r" in body.replace("\r\n", ""):
                assert not source.raw_ok  # a lone \r is a line break a worker's split at \n would miss
            source.raw_ok = source.raw_ok and raw
            for payload, count in jobs.payloads(source, size):
                numbers, texts = decode_chunk(payload)
                assert len(texts) == count and texts and len(numbers) == count
                if payload.startswith(b"SQR1"):  # at most max_bytes of the file, unless its one text is longer
                    assert len(payload) - 12 <= max_bytes or count == 1
                chunks.append((numbers, texts))
        except InputError as exc:
            return str(exc)
        if max_bytes < 8_000_000:  # cut short by bytes, not by the exact reader's characters: compare what they hold
            chunks = [([n for c in chunks for n in c[0]], [t for c in chunks for t in c[1]])]
        return chunks, source.texts, source.blank_lines

    assert read(raw=True) == read(raw=False)  # the same chunks, texts, line numbers and counts


def test_stored_result_makes_the_rows_a_waiter_writes() -> None:
    """A worker stores 2 bytes a text; the rows made from them and the staged texts are byte for byte what formatting
    the scores directly gives, and a text that failed alone (FAILED) has no row."""
    probs = np.array([0.5, 0.49995, 1.0, 0.0, 0.123456, 0.87654, 0.3, 0.9, 0.7])
    lines = list(range(10, 10 + len(AWKWARD)))
    payload = encode_chunk(Chunk(0, lines, AWKWARD))
    stored = pack_result("v7", score_codes(probs))
    assert len(stored) == 4 + 1 + 2 + 2 * len(AWKWARD)
    assert result_rows(stored, payload) == format_rows(lines, AWKWARD, probs, "v7")
    codes = score_codes(probs)
    with_failed = pack_result("v7", codes[:4] + FAILED + codes[6:])
    keep = [i for i in range(len(AWKWARD)) if i != 2]
    expected = format_rows([lines[i] for i in keep], [AWKWARD[i] for i in keep], probs[keep], "v7")
    assert result_rows(with_failed, payload) == expected
    assert result_rows(b'{"line":1}\n', None) == b'{"line":1}\n'  # rows stored by an earlier worker pass through
    with pytest.raises(ValueError, match="gone"):
        result_rows(stored, None)
    with pytest.raises(ValueError, match="corrupt"):
        result_rows(stored[:-2], payload)
    zipped = pack_result("v7", score_codes(probs), payload, first=lines[0])
    assert result_rows(zipped, None) == format_rows(lines, AWKWARD, probs, "v7")
    with pytest.raises(ValueError, match="corrupt"):
        result_rows(zipped[:-2], None)


# What the downloader makes of a stored result, written the straightforward way: json.dumps and csv.writer per row.
def _reference(payload: bytes, codes: list[int], model: str, *, raw_csv: bool) -> tuple[bytes, bytes, list[dict]]:
    lines, texts = decode_chunk(payload)
    jsonl, dicts, buf = [], [], io.StringIO()
    writer = csv.writer(buf)
    for line, text, code in zip(lines, texts, codes, strict=True):
        if code == 0xFFFF:
            continue
        score, label = f"{(code & 0x7FFF) / 10000:.4f}", "positive" if code & 0x8000 else "negative"
        row = f'{{"line":{line},"text":{json.dumps(text, ensure_ascii=False)},"score":{score},"label":"{label}"'
        jsonl.append(f'{row},"model":"{model}"}}\n'.encode())
        dicts.append(json.loads(jsonl[-1]))
        writer.writerow([line, text if raw_csv else neutralized(text), float(score), label, model])
    return b"".join(jsonl), buf.getvalue().encode(), dicts


# Pieces of texts that need care in JSON (quotes, backslashes, control characters), in CSV (commas, quotes, line
# breaks, formula starts) or in a raw line (whitespace that str.strip() removes), and plain multi-byte text.
_TRICKY = ['"', ",", "\\", "=", "+", "-", "@", "'", "\t", "\r", " ", "\x00", "\x1f", "\x7f", "\x1e", "\x85", "\u00a0",
           "\u2028", "\u3000", "\u2009", "’", "“", "é", "日本", "🙂", "plain", "two words", "\u0661"]  # fmt: skip


# ...and only those a plain chunk may hold (built from its columns), so that path is taken often.
_PRINTABLE = [piece for piece in _TRICKY if piece.isprintable() and piece != " "]


@given(
    texts=st.sampled_from([(_TRICKY, 0), (_PRINTABLE, 1)]).flatmap(
        lambda alphabet: st.lists(
            st.lists(st.sampled_from(alphabet[0]), min_size=alphabet[1], max_size=4).map("".join),
            min_size=1,
            max_size=30,
        )
    ),
    staged_raw=st.booleans(),
    first=st.integers(1, 10**7),
    data=st.data(),
    raw_csv=st.booleans(),
)
@settings(max_examples=400, deadline=None)
def test_rows_built_from_columns_are_the_straightforward_rows(
    texts: list[str], staged_raw: bool, first: int, data: st.DataObject, raw_csv: bool
) -> None:
    """JSONL, CSV and dicts made of a stored result and its staged input, plain chunks from their columns, others text
    by text, are byte for byte json.dumps / csv.writer / json.loads of each row: every text kept in order, failed texts
    left out, raw lines stripped and blank ones skipped as the reader does."""
    if staged_raw:
        texts = [t.replace("\r", "") for t in texts]  # a lone \r is a line break: such a file is never staged raw
        body = "".join(t + "\n" for t in texts).encode()
        last_break = not texts[-1] or data.draw(st.booleans())  # a file's last line may go without one
        payload = encode_raw(RawLines(first, len(texts), 0, body if last_break else body[:-1]))
    else:
        payload = encode_chunk(
            Chunk(0, sorted(data.draw(st.sets(st.integers(1, 10**7), min_size=len(texts), max_size=len(texts)))), texts)
        )
    scored = len(decode_chunk(payload)[1])
    code = st.integers(0, 10000).flatmap(lambda c: st.sampled_from([c, c | 0x8000]))
    codes = data.draw(
        st.lists(
            st.one_of(code, st.just(0xFFFF)) if data.draw(st.booleans()) else code, min_size=scored, max_size=scored
        )
    )
    stored = pack_result("v12", array.array("H", codes).tobytes())
    jsonl, csv_lines, dicts = _reference(payload, codes, "v12", raw_csv=raw_csv)
    assert result_rows(stored, payload) == jsonl
    assert export.result_csv(stored, payload, raw=raw_csv) == csv_lines
    assert result_dicts(stored, payload) == dicts
    assert result_count(stored) == len(dicts)
    # The same result stored with its texts, compressed (as workers store it since #20): the same rows, no input
    lines = decode_chunk(payload)[0]
    zipped = pack_result("v12", array.array("H", codes).tobytes(), payload, first=lines[0] if lines else 0)
    assert rows.is_zipped(zipped) and not rows.is_packed(zipped)
    assert result_rows(zipped, None) == jsonl
    assert export.result_csv(zipped, None, raw=raw_csv) == csv_lines
    assert result_dicts(zipped, None) == dicts
    # ... and as an Arrow record batch (job.batches(), Parquet): the same rows, column by column
    assert columnar.result_batch(zipped, None).to_pylist() == dicts
    assert columnar.result_batch(stored, payload).to_pylist() == dicts
    assert result_count(zipped) == len(dicts)
    assert rows.zipped_first_line(zipped[: rows.ZIPPED_HEAD]) == (lines[0] if lines else 0)
    assert rows.held_size(zipped[: rows.ZIPPED_HEAD], len(zipped)) == 2 * len(codes) + len(payload)


def test_plain_chunks_take_the_column_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Texts with quotes, commas, backslashes, formula starts and multi-byte characters, staged raw or binary, are
    plain (built from columns), and still the straightforward rows; a control character, a padded or blank raw line,
    or a failed text sends a chunk the text-by-text way."""
    texts = ['say "hi", then', "back\\slash", "=1+1", "-minus", "@at", "+plus", "café 日本 🙂", "’tis", "a,b", '"']
    codes = [0, 10000, 5000 | 0x8000, 1234, 9999 | 0x8000, 42, 7, 8, 9, 10]
    stored = pack_result("v3", array.array("H", codes).tobytes())
    staged = [
        encode_raw(RawLines(5, len(texts), 0, "\n".join(texts).encode() + b"\n")),
        encode_chunk(Chunk(0, [3 * i + 1 for i in range(len(texts))], texts)),
    ]
    for payload, template_rows in itertools.product(staged, [8192, 3]):  # a chunk longer than a template, too
        monkeypatch.setattr(rows, "TEMPLATE_ROWS", template_rows)
        assert plain_chunk(stored, payload, bytes) is not None
        for raw_csv in (False, True):
            jsonl, csv_lines, dicts = _reference(payload, codes, "v3", raw_csv=raw_csv)
            assert result_rows(stored, payload) == jsonl
            assert export.result_csv(stored, payload, raw=raw_csv) == csv_lines
            assert result_dicts(stored, payload) == dicts
            assert columnar.result_batch(stored, payload).to_pylist() == dicts
        assert columnar._plain_columns(payload, len(texts)) is not None  # built from whole-chunk operations
    # every character str.strip() removes, at either end of a raw line (a control character anywhere)
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace() and c != 0x0A]
    for odd in ["tab\there", *[f"{c}x" for c in spaces], *[f"x{c}" for c in spaces]]:
        payload = encode_raw(RawLines(1, 2, 0, f"plain\n{odd}\n".encode()))
        assert plain_chunk(pack_result("v3", bytes(4)), payload, bytes) is None, repr(odd)
        assert (columnar._plain_columns(payload, 2) is None) == (odd.strip() != odd), repr(odd)  # a tab inside is fine
        assert (
            columnar.result_batch(pack_result("v3", bytes(4)), payload).to_pylist()
            == _reference(payload, [0, 0], "v3", raw_csv=False)[2]
        )
        assert result_rows(pack_result("v3", bytes(4)), payload) == _reference(payload, [0, 0], "v3", raw_csv=False)[0]
    assert plain_chunk(pack_result("v3", bytes(4)), encode_raw(RawLines(1, 3, 0, b"a\n\nb\n")), bytes) is None
    assert plain_chunk(pack_result("v3", bytes(2) + FAILED), encode_raw(RawLines(1, 2, 0, b"a\nb\n")), bytes) is None


def test_a_text_ending_in_quote_comma_space_keeps_its_row() -> None:
    """Texts were cut out of one json.dumps of them all at '", "': a text ending '", ' (its quote escaped) was cut
    there too, and the rows got shifted texts (found by the property test above)."""
    texts = ['say "yes", ', "next", 'a\\", ', "last"]
    lines = [1, 2, 3, 4]
    payload = encode_chunk(Chunk(0, lines, texts))
    stored = pack_result("v1", array.array("H", [1, 2, 3, 4]).tobytes())
    rows_made = [json.loads(row) for row in result_rows(stored, payload).splitlines()]
    assert [row["text"] for row in rows_made] == texts
    assert format_rows(lines, texts, np.array([0.1, 0.2, 0.3, 0.4]), "v1").count(b"\n") == 4
    assert [json.loads(row)["text"] for row in format_rows(lines, texts, np.zeros(4), "v1").splitlines()] == texts


def test_csv_rows_from_a_line_keep_quoted_line_breaks() -> None:
    """A resumed CSV download cuts a chunk at rows, not at line breaks inside a quoted text."""
    chunk = b'7,"two\r\nlines, 8,",0.5,positive,v1\r\n8,plain,0.1,negative,v1\r\n9,"""q""",0.2,negative,v1\r\n'
    assert export.rows_from_line(chunk, 8) == b'8,plain,0.1,negative,v1\r\n9,"""q""",0.2,negative,v1\r\n'
    assert export.rows_from_line(chunk, 7) == chunk
    assert export.line_of(chunk) == 7


def test_columns_of_a_chunk_whose_head_holds_separator_bytes() -> None:
    """A staged chunk's head (line numbers, counts) may hold the separator's byte: line 10 is 0x0A, line 30 is 0x1E.
    The texts cut from the whole payload at once still come out whole."""
    texts = ["first", 'say "hi"', "café 🙂", "last one"]
    codes = array.array("H", [1, 2, 3 | 0x8000, 4]).tobytes()
    for payload in (
        encode_raw(RawLines(10, len(texts), 0, "\n".join(texts).encode() + b"\n")),
        encode_raw(RawLines(10, len(texts), 0, "\n".join(texts).encode())),  # a file's last line, no line break
        encode_chunk(Chunk(0, [10, 30, 0x1E1E, 0x0A0A0A], texts)),
    ):
        assert columnar._plain_columns(payload, len(texts)) is not None  # the whole-chunk path, not text by text
        batch = columnar.result_batch(pack_result("v3", codes, payload, first=10), None)
        assert batch["text"].to_pylist() == texts
        assert batch.to_pylist() == result_dicts(pack_result("v3", codes), payload)
