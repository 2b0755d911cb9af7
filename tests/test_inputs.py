"""Tests of sentq.inputs: every format, chunking, stdin, gzip, and one clear message per kind of bad input."""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentq.errors import ConfigError, InputError
from sentq.inputs import FORMATS, Chunk, TextSource
from sentq.inputs_formats import plain_text_fits


def write(tmp_path: Path, name: str, data: bytes | str) -> str:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def rows(source: TextSource, size: int = 1000) -> list[tuple[int, str]]:
    """Every (line, text) the source yields, checking chunk indexes run 0..n-1 on the way."""
    out: list[tuple[int, str]] = []
    for expected, chunk in enumerate(source.chunks(size)):
        assert chunk.index == expected
        assert len(chunk.lines) == len(chunk.texts)
        out.extend(zip(chunk.lines, chunk.texts, strict=True))
    return out


def error(source: TextSource, size: int = 1000) -> str:
    with pytest.raises(InputError) as info:
        for _ in source.chunks(size):
            pass
    return str(info.value)


def stdin(data: bytes, **options: Any) -> TextSource:
    return TextSource("-", stdin=io.BytesIO(data), **options)


class Trickle(io.RawIOBase):
    """A pipe that hands out at most ``step`` bytes per read, as a slow producer would."""

    def __init__(self, data: bytes, step: int = 997) -> None:
        self._data = memoryview(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self._step, len(self._data))
        buffer[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


class Endless(io.RawIOBase):
    """Generates numbered lines on demand and counts the bytes handed out (to prove reading is streamed)."""

    def __init__(self) -> None:
        self.served = 0
        self._number = 0
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self._pending) < len(buffer):
            self._number += 1
            self._pending += f"text number {self._number}\n".encode()
        size = len(buffer)
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.served += size
        return size


# Plain text.


def test_text_skips_and_counts_blank_lines_keeping_line_numbers(tmp_path: Path) -> None:
    source = TextSource(write(tmp_path, "t.txt", "hello\n\n   \n  world  \n\t\nlast"))
    assert (source.name, source.format, source.is_stream) == (str(tmp_path / "t.txt"), "text", False)
    assert rows(source) == [(1, "hello"), (4, "world"), (6, "last")]
    assert (source.texts, source.blank_lines) == (3, 3)


def test_text_crlf_and_lone_cr(tmp_path: Path) -> None:
    assert rows(TextSource(write(tmp_path, "crlf.txt", b"a\r\nb\r\n\r\nc\r\n"))) == [(1, "a"), (2, "b"), (4, "c")]
    assert rows(TextSource(write(tmp_path, "cr.txt", b"a\rb\r\rc"))) == [(1, "a"), (2, "b"), (4, "c")]


def test_bom_is_stripped(tmp_path: Path) -> None:
    source = TextSource(write(tmp_path, "bom.txt", b"\xef\xbb\xbfhello\nworld\n"))
    assert rows(source) == [(1, "hello"), (2, "world")]


def test_non_ascii_texts_round_trip(tmp_path: Path) -> None:
    texts = ["café crème", "日本語のテキスト", "great 😀👍", "Ünïcödé ß"]
    path = write(tmp_path, "u.txt", "\n".join(texts) + "\n")
    assert [text for _, text in rows(TextSource(path))] == texts
    assert [text for _, text in rows(stdin("\n".join(texts).encode()))] == texts


def test_text_line_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "big.txt", "short\n\n" + "x" * 11 + "\n")
    assert error(TextSource(path, max_chars=10)) == (
        f"{path}: line 3 has 11 characters, over the limit of 10 (SENTQ_MAX_TEXT_CHARS); split or shorten it"
    )
    assert [text for _, text in rows(TextSource(path, max_chars=11))] == ["short", "x" * 11]
    big = write(tmp_path, "big2.txt", "ok\n" * 8 + "y" * 12_345 + "\n")
    assert "line 9 has 12,345 characters, over the limit of 10,000" in error(TextSource(big))


def test_limit_applies_to_the_stripped_text(tmp_path: Path) -> None:
    path = write(tmp_path, "pad.txt", "   " + "x" * 10 + "   \n")
    assert rows(TextSource(path, max_chars=10)) == [(1, "x" * 10)]


# Chunking.


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (1, [[1], [2], [3], [4], [5], [6], [7], [8], [9], [10]]),
        (5, [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]),
        (3, [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]),
        (10, [list(range(1, 11))]),
        (100, [list(range(1, 11))]),
    ],
)
def test_chunk_boundaries(tmp_path: Path, size: int, expected: list[list[int]]) -> None:
    path = write(tmp_path, "ten.txt", "".join(f"text {n}\n" for n in range(1, 11)))
    chunks = list(TextSource(path).chunks(size))
    assert [chunk.index for chunk in chunks] == list(range(len(expected)))
    assert [chunk.lines for chunk in chunks] == expected
    assert [chunk.texts for chunk in chunks] == [[f"text {n}" for n in lines] for lines in expected]


def test_chunks_are_filled_across_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "gaps.txt", "a\n\nb\nc\n\nd\ne\n")
    assert list(TextSource(path).chunks(2)) == [
        Chunk(0, [1, 3], ["a", "b"]),
        Chunk(1, [4, 6], ["c", "d"]),
        Chunk(2, [7], ["e"]),
    ]


def test_fast_and_slow_blocks_mix_with_exact_line_numbers(tmp_path: Path) -> None:
    numbers = [n for n in range(1, 12_001) if n not in (7000, 11_999)]
    path = write(tmp_path, "mix.txt", "".join("\n" if n in (7000, 11_999) else f"t{n}\n" for n in range(1, 12_001)))
    source = TextSource(path)
    chunks = list(source.chunks(5000))
    assert [len(chunk.texts) for chunk in chunks] == [5000, 5000, 1998]
    assert [line for chunk in chunks for line in chunk.lines] == numbers
    assert [text for chunk in chunks for text in chunk.texts] == [f"t{n}" for n in numbers]
    assert (source.texts, source.blank_lines) == (11_998, 2)


def test_file_can_be_read_again_and_counters_reset(tmp_path: Path) -> None:
    source = TextSource(write(tmp_path, "again.txt", "a\n\nb\n"))
    assert rows(source) == rows(source) == [(1, "a"), (3, "b")]
    assert (source.texts, source.blank_lines) == (2, 1)
    validate_fast(source)
    assert (source.texts, source.blank_lines) == (0, 0)


def test_chunk_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        TextSource(write(tmp_path, "a.txt", "a\n")).chunks(0)


def test_validate_checks_every_line(tmp_path: Path) -> None:
    path = write(tmp_path, "late.txt", "ok\n" * 20_000 + "x" * 50 + "\n")
    with pytest.raises(InputError, match="line 20,?001 has 50 characters"):
        TextSource(path, max_chars=40).validate()
    TextSource(path).validate()


# validate()'s fast pass over plain text: it only ever says "all good"; every error comes from the exact reader.


def validate_error(source: TextSource) -> str:
    with pytest.raises(InputError) as info:
        source.validate()
    assert (source.texts, source.blank_lines) == (0, 0)
    return str(info.value)


def validate_fast(source: TextSource) -> None:
    """validate(), proving the fast pass took the file: the exact reader must not run."""

    def exact_reader(*args: Any) -> None:
        pytest.fail("validate fell back to the exact reader")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TextSource, "_read", exact_reader)
        source.validate()


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


SCAN_SAMPLES = [
    b"a\nb\n",
    b"a\r\nb\r\n\r\nc",
    b"a\rb\r\rc\r",
    b"   \n\t\n",
    b"\xc2\xa0\n\x1c\n\x0c\r\n",  # Unicode and ASCII whitespace only: blank lines
    "日本語\n😀😀😀😀\nxx\n".encode(),
    "  日本語日本  \r\nab\n".encode(),
    b"12345\r\n123456\r\n",
    b"1234\r12345\r123456",
    b"ok\ncaf\xe9\n",
    b"ok\nab\xe6\x97",
    b"\xed\xa0\x80\n",  # an encoded surrogate: not UTF-8
    b"x" * 40 + b"\n",
    b"\n" * 9,
    b"",
]


@pytest.mark.parametrize("data", SCAN_SAMPLES)
def test_plain_text_fast_pass_agrees_with_the_exact_reader_at_every_block_size(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, "s.txt", data)
    for max_chars in (1, 4, 5, 6, 10):
        try:
            rows(TextSource(path, max_chars=max_chars))
            exact = True
        except InputError:
            exact = False
        for size in range(1, len(data) + 1):
            assert plain_text_fits(pieces(data, size), max_chars) == exact, (max_chars, size)


def test_fast_pass_takes_good_files_without_the_exact_reader(tmp_path: Path) -> None:
    good = [
        b"a\r\nb\r\n\r\n",
        b"a\rb\r\rc",
        "é" * 10 + "\n" + "日" * 10 + "\r\n" + "😀" * 10,  # 10 characters in 20, 30 and 40 bytes
        "   " + "日" * 10 + "   \n",
        "\ufeff" + "x" * 10,  # a BOM is not part of the first line
    ]
    for n, data in enumerate(good):
        raw = data.encode() if isinstance(data, str) else data
        assert plain_text_fits([raw.removeprefix(b"\xef\xbb\xbf")], 10), data
        validate_fast(TextSource(write(tmp_path, f"g{n}.txt", raw), max_chars=10))


def test_validate_big_file_with_the_problem_on_the_last_line(tmp_path: Path) -> None:
    body = "".join(f"line {n} 日本語\n" for n in range(1, 200_001)).encode()  # several MiB: many fast-pass blocks
    assert len(body) > 4 * 1024 * 1024
    validate_fast(TextSource(write(tmp_path, "good.txt", body + b"last")))
    long = write(tmp_path, "long.txt", body + "é".encode() * 41)  # the last line, no line break after it
    expected = (
        f"{long}: line 200001 has 41 characters, over the limit of 40 (SENTQ_MAX_TEXT_CHARS); split or shorten it"
    )
    assert validate_error(TextSource(long, max_chars=40)) == error(TextSource(long, max_chars=40)) == expected
    validate_fast(TextSource(long, max_chars=41))
    cut = write(tmp_path, "cut.txt", body + b"ends in half a char \xe6\x97")
    expected = (
        f"{cut}: line 200,001 is not valid UTF-8 (byte 0xe6 at column 21); "
        "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )
    assert validate_error(TextSource(cut)) == error(TextSource(cut)) == expected
    blank_end = write(tmp_path, "blank.txt", b"\n" * (3 * 1024 * 1024) + b"   x\r\n\r\n")
    validate_fast(TextSource(blank_end))


@pytest.mark.parametrize("offset", [-2, -1, 0, 1, 2])
def test_validate_bad_byte_or_long_line_at_a_block_boundary(tmp_path: Path, offset: int) -> None:
    mib = 1024 * 1024
    for boundary in (mib, 4 * mib):
        before = boundary + offset
        filler = b"".join(b"%07d\n" % n for n in range(before // 8 + 1))[:before]
        filler = filler[: filler.rfind(b"\n") + 1]
        line = filler.count(b"\n") + 1
        column = before - len(filler) + 1
        data = filler + b"-" * (column - 1) + b"\xff tail\n" + b"more\n" * 10
        path = write(tmp_path, "bad.txt", data)
        expected = f"{path}: line {line:,} is not valid UTF-8 (byte 0xff at column {column})"
        assert validate_error(TextSource(path)).startswith(expected)
        # A 3-byte character across the boundary is fine; 11 of them on one line are one too many for 10.
        split = filler + b"-" * (column - 1) + "日".encode() * 11 + b"\r\nend\r\n"
        path = write(tmp_path, "split.txt", split)
        limit = max(column + 10, 11)
        validate_fast(TextSource(path, max_chars=limit))
        if column == 1:
            expected = f"{path}: line {line} has 11 characters, over the limit of 10 (SENTQ_MAX_TEXT_CHARS)"
            assert validate_error(TextSource(path, max_chars=10)).startswith(expected)


def test_validate_crlf_and_multibyte_near_the_limit(tmp_path: Path) -> None:
    lines = ["日本語のテキスト" * 5, "ok", "😀" * 40, "  " + "é" * 40 + "  "]  # each 40 characters stripped
    path = write(tmp_path, "crlf.txt", ("\r\n".join(lines * 30_000) + "\r\n").encode())
    validate_fast(TextSource(path, max_chars=40))
    expected = f"{path}: line 1 has 40 characters, over the limit of 39 (SENTQ_MAX_TEXT_CHARS); split or shorten it"
    assert validate_error(TextSource(path, max_chars=39)) == expected
    late = write(tmp_path, "late.txt", ("\r\n".join(lines * 30_000) + "\r\n" + "ü" * 41 + "\r\n").encode())
    expected = (
        f"{late}: line 120001 has 41 characters, over the limit of 40 (SENTQ_MAX_TEXT_CHARS); split or shorten it"
    )
    assert validate_error(TextSource(late, max_chars=40)) == expected


def test_validate_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.txt", b"\xef\xbb\xbf" + b"x" * 10 + b"\n" + b"y\n" * 100_000)
    validate_fast(TextSource(path, max_chars=10))
    assert "line 1 has 10 characters, over the limit of 9" in validate_error(TextSource(path, max_chars=9))
    blanks = write(tmp_path, "bomblank.txt", b"\xef\xbb\xbf\n \n\r\n")
    assert validate_error(TextSource(blanks)) == (
        f"{blanks}: no texts to score (3 blank lines and no text); check that this is the right file"
    )


def test_validate_whole_file_problems_keep_their_messages(tmp_path: Path) -> None:
    blanks = write(tmp_path, "blank.txt", "\n\u00a0\n\x1c\r\n \t \n" * 1000)
    assert validate_error(TextSource(blanks)) == error(TextSource(blanks))
    assert "no texts to score (4,000 blank lines and no text)" in error(TextSource(blanks))
    nul = write(tmp_path, "nul.txt", b"a\x00\n")
    assert "looks like a binary file (NUL byte in the first 8 KiB)" in validate_error(TextSource(nul))
    TextSource(write(tmp_path, "late_nul.txt", b"a\n" * 5000 + b"\x00\n")).validate()  # as the exact reader does
    assert "is UTF-16 text" in validate_error(TextSource(write(tmp_path, "w.txt", "hi\n".encode("utf-16"))))
    TextSource(write(tmp_path, "z.txt", gzip.compress(b"a\n"))).validate()  # gzip data without the suffix
    assert "gzip data is truncated" in validate_error(TextSource(write(tmp_path, "t.txt", gzip.compress(b"a\n")[:-9])))
    empty = write(tmp_path, "empty.txt", "")
    assert validate_error(TextSource(empty)) == error(TextSource(empty))


def test_validate_resets_counters(tmp_path: Path) -> None:
    source = TextSource(write(tmp_path, "c.txt", "a\n\nb\n"))
    assert rows(source) == [(1, "a"), (3, "b")]
    validate_fast(source)
    assert (source.texts, source.blank_lines) == (0, 0)


# stdin.


def test_stdin_is_a_stream_read_once() -> None:
    source = stdin(b"one\n\ntwo\n")
    assert (source.name, source.format, source.is_stream) == ("<stdin>", "text", True)
    assert rows(source) == [(1, "one"), (3, "two")]
    assert (source.texts, source.blank_lines) == (2, 1)
    with pytest.raises(RuntimeError):
        source.chunks(10)
    with pytest.raises(TypeError):
        source.validate()


def test_stdin_defaults_to_sys_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = io.TextIOWrapper(io.BytesIO(b"from the real stdin\n"))
    monkeypatch.setattr("sys.stdin", fake)
    assert rows(TextSource("-")) == [(1, "from the real stdin")]


def test_stdin_formats_and_gzip() -> None:
    assert rows(stdin(b"id,text\n1,hi\n", fmt="csv")) == [(2, "hi")]
    assert rows(stdin(b'{"text": "hi"}\n', fmt="jsonl")) == [(1, "hi")]
    assert rows(stdin(gzip.compress(b"\xef\xbb\xbfzipped\n\nagain\n"))) == [(1, "zipped"), (3, "again")]


def test_stdin_in_small_reads() -> None:
    data = "".join(f"日本語 {n}\n" for n in range(1, 3001)).encode()
    source = TextSource("-", stdin=Trickle(data))  # type: ignore[arg-type]
    got = rows(source, 1000)
    assert len(got) == 3000 and got[0] == (1, "日本語 1") and got[-1] == (3000, "日本語 3000")


def test_stdin_is_streamed_not_read_whole() -> None:
    endless = Endless()
    first = next(TextSource("-", stdin=endless).chunks(10))  # type: ignore[arg-type]
    assert first.texts == [f"text number {n}" for n in range(1, 11)]
    assert endless.served < 1024 * 1024


# Formats by suffix; gzip.


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.txt", "text"),
        ("A.TXT", "text"),
        ("a.text", "text"),
        ("noext", "text"),
        ("notes.md", "text"),
        ("a.csv", "csv"),
        ("a.tsv", "tsv"),
        ("a.tab", "tsv"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.json-lines", "jsonl"),
        ("a.csv.gz", "csv"),
        ("a.txt.gz", "text"),
        ("a.gz", "text"),
    ],
)
def test_format_from_suffix(tmp_path: Path, name: str, fmt: str) -> None:
    assert TextSource(write(tmp_path, name, "")).format == fmt
    assert fmt in FORMATS


def test_format_option_wins(tmp_path: Path) -> None:
    source = TextSource(write(tmp_path, "data.txt", "id,text\n1,hi\n"), fmt="csv")
    assert (source.format, rows(source)) == ("csv", [(2, "hi")])


def test_gzip_by_suffix_and_by_magic(tmp_path: Path) -> None:
    packed = gzip.compress('id,text\n1,"multi\nline"\n2,ok ü\n'.encode())
    expected = [(2, "multi\nline"), (4, "ok ü")]
    assert rows(TextSource(write(tmp_path, "d.csv.gz", packed))) == expected
    assert rows(TextSource(write(tmp_path, "d.csv", packed))) == expected
    plain = TextSource(write(tmp_path, "t.txt", gzip.compress(b"a\n\nb\n")))
    assert rows(plain) == [(1, "a"), (3, "b")]
    assert rows(plain) == [(1, "a"), (3, "b")]  # a gzipped file can be read twice too


def test_gzip_binary_check_is_after_gunzip(tmp_path: Path) -> None:
    path = write(tmp_path, "bin.txt.gz", gzip.compress(b"abc\x00def"))
    assert "looks like a binary file (NUL byte in the first 8 KiB)" in error(TextSource(path))


def test_truncated_gzip(tmp_path: Path) -> None:
    data = "".join(f"line {n}\n" for n in range(200_000)).encode()
    packed = gzip.compress(data)
    path = write(tmp_path, "cut.txt.gz", packed[: len(packed) // 2])
    message = error(TextSource(path))
    assert message.startswith(f"{path}: gzip data is truncated after line ")
    assert "fetch or compress it again" in message
    assert "truncated" in error(stdin(packed[: len(packed) // 2]))
    assert "truncated" in error(TextSource(write(tmp_path, "tiny.gz", gzip.compress(b"a\nb\n")[:-12])))


def test_corrupt_gzip(tmp_path: Path) -> None:
    packed = bytearray(gzip.compress("".join(f"line {n}\n" for n in range(50_000)).encode()))
    packed[len(packed) // 2 : len(packed) // 2 + 40] = b"\xff" * 40
    path = write(tmp_path, "bad.txt.gz", bytes(packed))
    message = error(TextSource(path))
    assert message.startswith(f"{path}: not a valid gzip file (") and "gzip -t" in message
    crc = bytearray(gzip.compress(b"hello\n"))
    crc[-8] ^= 0xFF  # the CRC32 of the member
    assert "not a valid gzip file (CRC check failed" in error(TextSource(write(tmp_path, "crc.gz", bytes(crc))))


def test_gz_suffix_without_gzip_data(tmp_path: Path) -> None:
    path = write(tmp_path, "fake.txt.gz", "plain text\n")
    assert error(TextSource(path)) == (
        f"{path}: not a valid gzip file (it does not start with the gzip signature); "
        "check it with gzip -t, or drop the .gz suffix if it is not compressed"
    )


# Opening and whole-file errors.


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="nope.txt: no such file; check the path"):
        TextSource(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory, not a file"):
        TextSource(str(tmp_path))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.txt", "x\n")
    os.chmod(path, 0)
    with pytest.raises(InputError, match="secret.txt: cannot read it \\(permission denied\\)"):
        TextSource(path)


def test_file_removed_after_opening(tmp_path: Path) -> None:
    path = write(tmp_path, "gone.txt", "x\n")
    source = TextSource(path)
    os.unlink(path)
    assert "gone.txt: no such file" in error(source)


def test_binary_file(tmp_path: Path) -> None:
    path = write(tmp_path, "photo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert error(TextSource(path)) == (
        f"{path}: looks like a binary file (NUL byte in the first 8 KiB), not text; "
        "sentq reads plain text, CSV/TSV or JSONL"
    )
    late_nul = write(tmp_path, "late.txt", b"a\n" * 5000 + b"\x00\n")
    assert rows(TextSource(late_nul))[-1] == (5001, "\x00")  # only the first 8 KiB is checked


def test_utf16_file(tmp_path: Path) -> None:
    path = write(tmp_path, "w.txt", "hello\n".encode("utf-16"))
    assert "is UTF-16 text" in error(TextSource(path)) and "iconv -f utf-16 -t utf-8" in error(TextSource(path))


def test_empty_inputs(tmp_path: Path) -> None:
    empty = write(tmp_path, "empty.txt", "")
    message = f"{empty}: no texts to score (the file is empty); check that this is the right file"
    assert error(TextSource(empty)) == message
    blanks = write(tmp_path, "blank.txt", "\n  \n\t\n" * 4)
    assert f"{blanks}: no texts to score (12 blank lines and no text)" in error(TextSource(blanks))
    assert "<stdin>: no texts to score (the input is empty)" in error(stdin(b""))
    header = write(tmp_path, "h.csv", "id,text\n")
    assert f"{header}: no texts to score (only a header row)" in error(TextSource(header))
    with pytest.raises(InputError, match="the file is empty"):
        TextSource(empty).validate()


# Invalid UTF-8: the exact line, file or stream.


def test_invalid_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "texts.txt", b"ok\n\ncaf\xe9 au lait\n")
    assert error(TextSource(path)) == (
        f"{path}: line 3 is not valid UTF-8 (byte 0xe9 at column 4); "
        "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )
    assert "<stdin>: line 3 is not valid UTF-8 (byte 0xe9 at column 4)" in error(stdin(b"ok\n\ncaf\xe9 au lait\n"))


def test_invalid_utf8_column_counts_characters(tmp_path: Path) -> None:
    path = write(tmp_path, "col.txt", "日本語".encode() + b"\xff\n")
    assert "line 1 is not valid UTF-8 (byte 0xff at column 4)" in error(TextSource(path))


def test_truncated_utf8_at_end(tmp_path: Path) -> None:
    path = write(tmp_path, "end.txt", b"ok\nab\xe6\x97")
    assert "line 2 is not valid UTF-8 (byte 0xe6 at column 3)" in error(TextSource(path))


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_invalid_utf8_deep_in_large_inputs(tmp_path: Path, newline: bytes) -> None:
    good = b"".join(f"日本語のテキスト {n} 😀".encode() + newline for n in range(1, 150_001))
    data = good + b"still fine\xc3(\n" + b"after\n" * 10
    expected = "line 150,001 is not valid UTF-8 (byte 0xc3 at column 11)"
    assert expected in error(TextSource(write(tmp_path, "deep.txt", data)))
    assert expected in error(TextSource(write(tmp_path, "deep.txt.gz", gzip.compress(data, compresslevel=1))))
    assert expected in error(stdin(data))
    assert expected in error(TextSource("-", stdin=Trickle(data, 4093)))  # type: ignore[arg-type]
    assert expected in error(stdin(data, fmt="csv"))


def test_invalid_utf8_in_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = write(tmp_path, "d.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    assert "line 2 is not valid UTF-8 (byte 0xe9 at column 14)" in error(TextSource(jsonl))
    csv_path = write(tmp_path, "d.csv", b'id,text\n1,"two\nlines \xff"\n')
    assert "line 3 is not valid UTF-8 (byte 0xff at column 7)" in error(TextSource(csv_path))


# CSV / TSV.


def test_csv_quoted_newlines_number_records_by_start_line(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", 'id,text\r\n1,"first\nsecond"\r\n2,plain\r\n3,"a, ""quoted"" b\r\nc"\r\n4,last\r\n')
    assert rows(TextSource(path)) == [(2, "first\nsecond"), (4, "plain"), (5, 'a, "quoted" b\r\nc'), (7, "last")]


def test_csv_text_column_found_case_insensitively(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "ID, Text ,stars\n1,  good  ,5\n2,bad,1\n")
    assert rows(TextSource(path)) == [(2, "good"), (3, "bad")]


def test_csv_column_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", "id,body,stars\n1,good,5\n2,bad,1\n")
    assert rows(TextSource(path, column="body")) == [(2, "good"), (3, "bad")]
    assert rows(TextSource(path, column="BODY")) == [(2, "good"), (3, "bad")]
    assert error(TextSource(path, column="review")) == (
        f'{path}: no column "review" (columns: id, body, stars); '
        "choose one with --column NAME or --column INDEX (counting from 1)"
    )


def test_csv_column_by_index(tmp_path: Path) -> None:
    with_header = write(tmp_path, "h.csv", "id,body,stars\n1,good,5\n2,bad movie,1\n")
    assert rows(TextSource(with_header, column="2", header=True)) == [(2, "good"), (3, "bad movie")]
    assert rows(TextSource(with_header, column="2")) == [(2, "good"), (3, "bad movie")]  # sniffed
    assert rows(TextSource(with_header, column="2", header=False)) == [(1, "body"), (2, "good"), (3, "bad movie")]
    no_header = write(tmp_path, "n.csv", "1,good movie,5\n2,bad,1\n3,fine i guess,3\n")
    assert rows(TextSource(no_header, column="2")) == [(1, "good movie"), (2, "bad"), (3, "fine i guess")]
    assert "no column 4 (columns: id, body, stars)" in error(TextSource(with_header, column="4", header=True))


def test_csv_single_column(tmp_path: Path) -> None:
    plain = write(tmp_path, "one.csv", 'great film\n\nterrible "really"\n')
    assert rows(TextSource(plain)) == [(1, "great film"), (3, 'terrible "really"')]
    assert rows(TextSource(plain, column="1")) == [(1, "great film"), (3, 'terrible "really"')]
    assert rows(TextSource(plain, header=True)) == [(3, 'terrible "really"')]
    titled = write(tmp_path, "titled.csv", "Review\ngreat\nbad\n")
    assert rows(TextSource(titled)) == [(2, "great"), (3, "bad")]
    assert rows(TextSource(titled, header=False)) == [(1, "Review"), (2, "great"), (3, "bad")]


def test_csv_many_columns_and_no_choice(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", "id,body,stars\n1,good,5\n")
    assert error(TextSource(path)) == (
        f"{path}: 3 columns (id, body, stars) and no --column; "
        "choose one with --column NAME or --column INDEX (counting from 1)"
    )


def test_csv_blank_records_are_skipped_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "b.csv", "\nid,text\n1,\n\n2,   \n,\n3,ok\n")
    source = TextSource(path)
    assert rows(source) == [(7, "ok")]
    assert (source.texts, source.blank_lines) == (1, 5)


def test_csv_short_row(tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", "id,stars,text\n1,5,hi\n2,3\n")
    assert error(TextSource(path)) == (
        f"{path}: line 3 has 2 columns, column 3 missing; check the delimiter and the quoting on that line"
    )


def test_csv_unterminated_quote_at_end(tmp_path: Path) -> None:
    path = write(tmp_path, "u.csv", 'id,text\n1,ok\n2,"broken\n3,more\n')
    message = error(TextSource(path))
    assert message.startswith(f"{path}: line 3: unterminated quoted field")
    assert "close the quote" in message


def test_csv_bad_quoting(tmp_path: Path) -> None:
    path = write(tmp_path, "bq.csv", 'id,text\n1,"ab"c\n')
    assert error(TextSource(path)).startswith(f"{path}: line 2 is not valid CSV (',' expected after '\"'); quote")


def test_csv_too_long_uses_start_line(tmp_path: Path) -> None:
    path = write(tmp_path, "long.csv", 'id,text\n1,"a\nb"\n2,"' + "x\n" * 6 + '"\n')
    assert "line 4 has 11 characters, over the limit of 10" in error(TextSource(path, max_chars=10))


def test_csv_field_over_the_csv_module_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "huge.csv", "text\n" + "x" * 140_000 + "\n")
    assert "line 2 has a field over 131,072 characters, over the limit of 10,000" in error(TextSource(path))


def test_csv_bom_does_not_hide_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.csv", b"\xef\xbb\xbftext,id\nhi,1\n")
    assert rows(TextSource(path)) == [(2, "hi")]


def test_tsv(tmp_path: Path) -> None:
    path = write(tmp_path, "d.tsv", "id\ttext\n1\thello, world\n2\t\n3\tbye\n")
    source = TextSource(path)
    assert rows(source) == [(2, "hello, world"), (4, "bye")]
    assert source.blank_lines == 1
    assert rows(TextSource(write(tmp_path, "d.tab", "a\tb\nx\ty\n"), column="b")) == [(2, "y")]


def test_csv_chunks(tmp_path: Path) -> None:
    path = write(tmp_path, "many.csv", "text\n" + "".join(f"t{n}\n" for n in range(2, 12)))
    chunks = list(TextSource(path).chunks(4))
    assert [chunk.lines for chunk in chunks] == [[2, 3, 4, 5], [6, 7, 8, 9], [10, 11]]


# JSONL.


def test_jsonl_field_blanks_and_bare_strings(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"id": 1, "text": "hi"}\n\n{"text": "  there  "}\n"bare string"\n{"text": ""}\n')
    source = TextSource(path)
    assert rows(source) == [(1, "hi"), (3, "there"), (4, "bare string")]
    assert (source.texts, source.blank_lines) == (3, 2)


def test_jsonl_other_field(tmp_path: Path) -> None:
    path = write(tmp_path, "d.ndjson", '{"id": 1, "body": "good"}\n{"id": 2, "body": "bad"}\n')
    assert rows(TextSource(path, field="body")) == [(1, "good"), (2, "bad")]
    assert error(TextSource(path)) == f'{path}: line 1 has no field "text" (fields: id, body); choose one with --field'


def test_jsonl_non_ascii(tmp_path: Path) -> None:
    path = write(tmp_path, "u.jsonl", '{"text": "日本語 😀"}\n{"text": "caf\\u00e9 \\ud83d\\ude00"}\n')
    assert rows(TextSource(path)) == [(1, "日本語 😀"), (2, "café 😀")]


def test_jsonl_invalid_json(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", '{"text": "a"}\n\n{"text": "a" "b"}\n')
    assert error(TextSource(path)) == (
        f"{path}: line 3 is not valid JSON (Expecting ',' delimiter at column 14); "
        'each line must be one JSON object, such as {"text": "..."}'
    )
    indented = write(tmp_path, "i.jsonl", '  {"text": "a",}\n')
    assert "line 1 is not valid JSON (Expecting property name enclosed in double quotes at column 16)" in error(
        TextSource(indented)
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"text": 5}', 'line 2: field "text" is a number, not a string'),
        ('{"text": null}', 'line 2: field "text" is null, not a string'),
        ('{"text": ["a"]}', 'line 2: field "text" is a list, not a string'),
        ('{"text": true}', 'line 2: field "text" is a boolean, not a string'),
        ("[1, 2]", "line 2 is a list, not a JSON object"),
        ("42", "line 2 is a number, not a JSON object"),
    ],
)
def test_jsonl_wrong_types(tmp_path: Path, line: str, expected: str) -> None:
    path = write(tmp_path, "t.jsonl", '{"text": "ok"}\n' + line + "\n")
    message = error(TextSource(path))
    assert message.startswith(f"{path}: {expected}; ")


def test_jsonl_too_long(tmp_path: Path) -> None:
    path = write(tmp_path, "l.jsonl", '{"text": "ok"}\n{"text": "' + "z" * 21 + '"}\n')
    assert "line 2 has 21 characters, over the limit of 20" in error(TextSource(path, max_chars=20))


# Options.


def test_bad_options(tmp_path: Path) -> None:
    text = write(tmp_path, "a.txt", "x\n")
    with pytest.raises(ConfigError, match="unknown input format 'xml'"):
        TextSource(text, fmt="xml")
    with pytest.raises(ConfigError, match="--column applies to CSV/TSV input"):
        TextSource(text, column="2")
    with pytest.raises(ConfigError, match="--field applies to JSONL input"):
        TextSource(text, field="body")
    with pytest.raises(ConfigError, match="counting from 1"):
        TextSource(write(tmp_path, "a.csv", "x\n"), column="0")
    with pytest.raises(ConfigError, match="must be a header"):
        list(TextSource(write(tmp_path, "b.csv", "text\nx\n"), column="text", header=False).chunks(5))
    assert rows(TextSource(text, field="text")) == [(1, "x")]  # the default field is accepted everywhere


def chunk_texts(chunks: Iterator[Chunk]) -> list[str]:
    return [text for chunk in chunks for text in chunk.texts]


def test_error_mid_stream_after_good_chunks() -> None:
    source = stdin(b"a\nb\nc\n" + b"x" * 30 + b"\n", max_chars=20)
    chunks = source.chunks(2)
    assert next(chunks).texts == ["a", "b"]
    with pytest.raises(InputError, match="<stdin>: line 4 has 30 characters"):
        chunk_texts(chunks)
