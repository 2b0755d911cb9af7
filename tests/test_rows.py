"""The data path's pure functions: staged chunk encoding and JSONL row building (no Redis needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sentq.inputs import Chunk
from sentq.rows import decode_chunk, encode_chunk, format_rows

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
