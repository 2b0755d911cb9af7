"""Tokenisation: a chunk of texts to its tokens (words, emoticons, !/? as TOKEN_RE finds them) and to vocabulary ids."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

# Words, emoticons and !/? (both carry sentiment in tweets); the separator joins a chunk into one string so one
# pass tokenises the whole chunk. This regex defines the tokens; tokens() reproduces it with bytes operations.
SEP = "\x00"
TOKEN_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[!?]|[:;=][-o^']?[()\[\]dpbo/\\|*3]|<3|\x00")

IntArray = npt.NDArray[np.int64]
U64Array = npt.NDArray[np.uint64]

# Scoring tokenises with bytes.translate/replace (a few C passes over the chunk) instead of TOKEN_RE.findall, which
# was half the scoring time (sre tries every alternative at every position). tests/test_model.py checks that both
# give the same tokens. Token bytes are UTF-8; surrogatepass keeps lone surrogates (possible from JSON) encodable.
_ENC = "utf-8"
_ENC_ERRORS = "surrogatepass"
# TOKEN_RE's emoticon alternatives behind a one-set prefix, so sre skips to candidates without trying each position.
_EMOTICON_RE = re.compile(rb"[:;=<](?:(?<=[:;=])[-o^']?[()\[\]dpbo/\\|*3]|(?<=<)3)")
_EMOTICONS = [b"<3"] + [
    bytes([lead]) + mid + bytes([end])
    for lead in b":;="
    for mid in (b"", b"-", b"o", b"^", b"'")
    for end in b"()[]dpbo/\\|*3"
]
# Each emoticon is swapped for "\x01<n>", which survives the separator translation; a \x01 in the text (a
# separator for TOKEN_RE) becomes a space first.
_EMOTICON_KEY = {e: b"\x01%d" % i for i, e in enumerate(_EMOTICONS)}
_EMOTICON_PADDED = {e: b" " + k + b" " for e, k in _EMOTICON_KEY.items()}
_EMOTICON_TEXT = {k: e.decode("ascii") for e, k in _EMOTICON_KEY.items()}
# Every ASCII byte that can never be part of a token becomes a space; non-ASCII bytes are letters by then.
_KEEP = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789'!?\x00\x01")
_TO_SPACE = bytes(c if c in _KEEP or c >= 0x80 else 0x20 for c in range(256))
_ASCII = bytes(range(128))
# An apostrophe belongs to a token only between two letters/digits.
_LOOSE_APOSTROPHE_RE = re.compile(rb"'(?:(?<![0-9a-z\x80-\xff]')|(?![0-9a-z\x80-\xff]))")
_CAPITAL_SIGMA = "\u03a3"  # the one character whose lower() depends on its neighbours


def _emoticon_key(match: re.Match[bytes]) -> bytes:
    return _EMOTICON_PADDED[match.group()]


def _lowered_letters(char: str) -> str:
    """What ``char`` becomes in the lowered text, with every non-letter/digit as a space."""
    if char == "\u2019":
        return "'"
    return "".join(c if c.isalnum() else " " for c in char.lower())


def _normalized(texts: Sequence[str]) -> bytes:
    """The chunk as its tokens (TOKEN_RE.findall over the lowered text, curly apostrophes made straight) in UTF-8,
    separated by spaces, with an emoticon written as its _EMOTICON_KEY."""
    joined = SEP.join(texts)
    if joined.count(SEP) != len(texts) - 1:
        # A text containing the separator would split in two; this is rare enough to pay a second join for.
        joined = SEP.join(t.replace(SEP, " ") for t in texts)
    data = joined.encode(_ENC, _ENC_ERRORS)
    if not joined.isascii():
        # Lower and classify each distinct non-ASCII character once, then replace it where it changes; str.replace
        # of one character is a fast scan, unlike bytes.replace of a multi-byte sequence.
        chars = set(data.translate(None, _ASCII).decode(_ENC, _ENC_ERRORS))
        if _CAPITAL_SIGMA in chars:
            # Its lowercase depends on context (final sigma): let the reference tokeniser handle the chunk.
            found = TOKEN_RE.findall(joined.lower().replace("\u2019", "'"))
            return b" ".join(_EMOTICON_KEY.get(t, t) for t in (t.encode(_ENC, _ENC_ERRORS) for t in found))
        changed = False
        for char in chars:
            letters = _lowered_letters(char)
            if letters != char:
                joined = joined.replace(char, letters)
                changed = True
        if changed:
            data = joined.encode(_ENC, _ENC_ERRORS)
    data = data.lower()  # ASCII only, which is all that is left to lower
    if b"\x01" in data:
        data = data.replace(b"\x01", b" ")
    if b":" in data or b";" in data or b"=" in data or b"<" in data:
        data = _EMOTICON_RE.sub(_emoticon_key, data)
    data = data.translate(_TO_SPACE)
    if b"'" in data:
        data = _LOOSE_APOSTROPHE_RE.sub(b" ", data)
    return data.replace(b"!", b" ! ").replace(b"?", b" ? ").replace(b"\x00", b" \x00 ")


def tokens(texts: Sequence[str]) -> list[bytes]:
    """The chunk's tokens, texts separated by SEP, as bytes; token_text() gives each one's TOKEN_RE match."""
    return _normalized(texts).split()


def token_text(token: bytes) -> str:
    """The text of a token from tokens(): what TOKEN_RE.findall gives for it."""
    return _EMOTICON_TEXT.get(token) or token.decode(_ENC, _ENC_ERRORS)


def distinct_words(texts: Sequence[str]) -> set[str]:
    """The distinct tokens of the texts as text (the separator is not one)."""
    found = {token_text(t) for t in set(tokens(texts))}
    found.discard(SEP)
    return found


# Tokens of up to 16 bytes are looked up as two zero-padded little-endian uint64 words in a numpy hash table, for
# the whole chunk at once: a dict lookup per token took ~3 dependent cache misses (slot, entry, key object) and was
# the costliest step left, worst on a loaded machine. Longer tokens fall back to the dict.
_KEY_BYTES = 16
_PAD = b" " * (_KEY_BYTES + 1)
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)
# No token contains a 0xFF byte (invalid in UTF-8), so no token key equals this.
_EMPTY = np.uint64(2**64 - 1)


def _token_keys(data: bytes) -> tuple[IntArray, IntArray, U64Array, U64Array]:
    """Start, end and the two key words of each space-separated token in ``data`` (which must end in _PAD).

    A token longer than _KEY_BYTES gets a truncated key; callers look those up by their bytes.
    """
    buf = np.frombuffer(data, np.uint8)
    space = buf == 0x20
    edges = np.flatnonzero(space[1:] != space[:-1]) + 1
    if len(edges) and not space[0]:
        edges = np.concatenate([[0], edges])
    starts, ends = edges[0::2], edges[1::2]
    # Every 8-byte window of data as a uint64 (stride 1): one gather reads a key word.
    windows: U64Array = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))
    length = ends - starts
    k0 = windows[starts] & _LOW_BYTES[np.minimum(length, 8)]
    k1 = windows[starts + 8] & _LOW_BYTES[np.clip(length - 8, 0, 8)]
    return starts, ends, k0, k1


def _slots(k0: U64Array, k1: U64Array, bits: int) -> IntArray:
    # Multiplicative (Fibonacci) hashing: the top bits of the product depend on every bit of the key.
    h = (k0 ^ (k1 * np.uint64(0xC2B2AE3D27D4EB4F))) * np.uint64(0x9E3779B97F4A7C15)
    return (h >> np.uint64(64 - bits)).view(np.int64)


class Vocabulary:
    """Token ids of a chunk of texts: a word's index in ``words``, OOV = len(words), separator = len(words) + 1."""

    def __init__(self, words: Sequence[str]) -> None:
        self.oov = len(words)
        self.sep = len(words) + 1
        index = {w: i for i, w in enumerate(words)}
        # Keyed by what _normalized() writes: UTF-8 bytes, and an emoticon also by its placeholder key.
        lookup = {w.encode(_ENC, _ENC_ERRORS): i for w, i in index.items()}
        lookup.update((key, index[text]) for key, text in _EMOTICON_TEXT.items() if text in index)
        lookup[SEP.encode()] = self.sep
        self._lookup = lookup
        # Open addressing with linear probing at load <= 1/4: most tokens resolve at their first slot. Three flat
        # columns: a 1-D gather is several times faster than gathering rows of a 2-D table.
        # (A word with a space, possible only in a hand-made file, can never match a token.)
        short = [k for k in lookup if 0 < len(k) <= _KEY_BYTES and b" " not in k]
        _, _, k0, k1 = _token_keys(b" " + b" ".join(short) + _PAD)
        self._bits = max(4, (4 * len(short) - 1).bit_length())
        size = 1 << self._bits
        table0 = np.full(size, _EMPTY, dtype=np.uint64)
        table1 = np.full(size, _EMPTY, dtype=np.uint64)
        table_ids = np.full(size, self.oov, dtype=np.int64)  # an empty slot answers OOV
        self._max_probe = 0
        for key, slot, word0, word1 in zip(short, _slots(k0, k1, self._bits).tolist(), k0, k1, strict=True):
            probe = 0
            while table0[(slot + probe) % size] != _EMPTY:
                probe += 1
            at = (slot + probe) % size
            table0[at], table1[at], table_ids[at] = word0, word1, lookup[key]
            self._max_probe = max(self._max_probe, probe)
        self._table = (table0, table1, table_ids)

    def ids(self, texts: Sequence[str]) -> IntArray:
        """The id of every token of the chunk, in order, with a separator id between consecutive texts."""
        data = b" " + _normalized(texts) + _PAD
        starts, ends, k0, k1 = _token_keys(data)
        table0, table1, table_ids = self._table
        slot = _slots(k0, k1, self._bits)
        at0 = table0[slot]
        hit = (at0 == k0) & (table1[slot] == k1)
        ids = np.where(hit, table_ids[slot], self.oov)
        # A miss at an occupied slot probes on until it finds its key or an empty slot (then it is OOV).
        todo = np.flatnonzero(~hit & (at0 != _EMPTY))
        slot, k0, k1 = slot[todo], k0[todo], k1[todo]
        mask = len(table0) - 1
        for _ in range(self._max_probe):
            if not len(todo):
                break
            slot = (slot + 1) & mask
            at0 = table0[slot]
            hit = (at0 == k0) & (table1[slot] == k1)
            ids[todo[hit]] = table_ids[slot[hit]]
            go_on = ~hit & (at0 != _EMPTY)
            todo, slot, k0, k1 = todo[go_on], slot[go_on], k0[go_on], k1[go_on]
        for i in np.flatnonzero(ends - starts > _KEY_BYTES).tolist():
            ids[i] = self._lookup.get(data[starts[i] : ends[i]], self.oov)
        return ids
