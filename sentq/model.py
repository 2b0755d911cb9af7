"""SentimentModel: a linear words+bigrams+lexicon classifier trained with scikit-learn and scored with numpy."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sentq.errors import InputError, ModelError

FORMAT = "sentq.SentimentModel"
FORMAT_VERSION = 1

# Chosen by 5-fold CV on the VADER ground truth (C in 1..30, bigram min count 1..3, with/without lexicon,
# NB log-count ratios, IDF scaling, n**-0.3..-0.7 normalisation): all within ~0.5 point, these were best.
C = 10.0
MIN_BIGRAM_COUNT = 2
MAX_ITER = 5000

# Words, emoticons and !/? (both carry sentiment in tweets); the separator joins a chunk into one string so one
# pass tokenises the whole chunk. This regex defines the tokens; _tokens() reproduces it with bytes operations.
_SEP = "\x00"
_TOKEN_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[!?]|[:;=][-o^']?[()\[\]dpbo/\\|*3]|<3|\x00")
# A lexicon word right after one of these (or one word later) counts with its own learned weight.
_NEGATORS = frozenset(
    "not no never cannot nothing nobody none neither nor without hardly barely aint ain't dont don't doesnt doesn't "
    "didnt didn't isnt isn't wasnt wasn't arent aren't werent weren't wont won't wouldnt wouldn't cant can't "
    "couldnt couldn't shouldnt shouldn't havent haven't hasnt hasn't hadnt hadn't".split()
)
_ARRAYS: dict[str, tuple[str, int]] = {
    # name: (dtype, ndim)
    "vocab": ("uint8", 1),
    "unigram_w": ("float64", 1),
    "lexicon": ("float64", 1),
    "negator": ("uint8", 1),
    "lexicon_w": ("float64", 1),
    "bigrams": ("int64", 2),
    "bigram_w": ("float64", 1),
    "intercept": ("float64", 1),
}

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Scoring tokenises with bytes.translate/replace (a few C passes over the chunk) instead of _TOKEN_RE.findall, which
# was half the scoring time (sre tries every alternative at every position). tests/test_model.py checks that both
# give the same tokens. Token bytes are UTF-8; surrogatepass keeps lone surrogates (possible from JSON) encodable.
_ENC = "utf-8"
_ENC_ERRORS = "surrogatepass"
# _TOKEN_RE's emoticon alternatives behind a one-set prefix, so sre skips to candidates without trying each position.
_EMOTICON_RE = re.compile(rb"[:;=<](?:(?<=[:;=])[-o^']?[()\[\]dpbo/\\|*3]|(?<=<)3)")
_EMOTICONS = [b"<3"] + [
    bytes([lead]) + mid + bytes([end])
    for lead in b":;="
    for mid in (b"", b"-", b"o", b"^", b"'")
    for end in b"()[]dpbo/\\|*3"
]
# Each emoticon is swapped for "\x01<n>", which survives the separator translation; a \x01 in the text (a
# separator for _TOKEN_RE) becomes a space first.
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
    """The chunk as its tokens (_TOKEN_RE.findall over the lowered text, curly apostrophes made straight) in UTF-8,
    separated by spaces, with an emoticon written as its _EMOTICON_KEY."""
    joined = _SEP.join(texts)
    if joined.count(_SEP) != len(texts) - 1:
        # A text containing the separator would split in two; this is rare enough to pay a second join for.
        joined = _SEP.join(t.replace(_SEP, " ") for t in texts)
    data = joined.encode(_ENC, _ENC_ERRORS)
    if not joined.isascii():
        # Lower and classify each distinct non-ASCII character once, then replace it where it changes; str.replace
        # of one character is a fast scan, unlike bytes.replace of a multi-byte sequence.
        chars = set(data.translate(None, _ASCII).decode(_ENC, _ENC_ERRORS))
        if _CAPITAL_SIGMA in chars:
            # Its lowercase depends on context (final sigma): let the reference tokeniser handle the chunk.
            found = _TOKEN_RE.findall(joined.lower().replace("\u2019", "'"))
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


def _tokens(texts: Sequence[str]) -> list[bytes]:
    """The chunk's tokens as _normalized() writes them."""
    return _normalized(texts).split()


# Tokens of up to 16 bytes are looked up as two zero-padded little-endian uint64 words in a numpy hash table, for
# the whole chunk at once: a dict lookup per token took ~3 dependent cache misses (slot, entry, key object) and was
# the costliest step left, worst on a loaded machine. Longer tokens fall back to the dict.
_KEY_BYTES = 16
_PAD = b" " * (_KEY_BYTES + 1)
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)
# No token contains a 0xFF byte (invalid in UTF-8), so no token key equals this.
_EMPTY = np.uint64(2**64 - 1)
U64Array = npt.NDArray[np.uint64]


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


@dataclass(frozen=True)
class _Features:
    """Where each token and known bigram of a chunk sits; the one input of both training and scoring."""

    ids: IntArray  # token ids: vocab index, OOV = V, separator = V + 1
    starts: IntArray  # first token position of each text
    n_tokens: IntArray  # tokens per text (OOV included: they dilute what is known)
    negated: npt.NDArray[np.bool_]  # token follows a negator within two positions, in the same text
    bigram_pos: IntArray  # position of the first token of each known bigram
    bigram_idx: IntArray  # its row in the bigram table


class SentimentModel:
    """P(positive) from unigrams, word bigrams and (optionally) VADER lexicon valences, normalised by sqrt(length).

    Every feature is a per-token or per-bigram additive term, so at scoring time the logistic regression folds into
    two weight tables and a chunk is scored with a handful of numpy operations.
    """

    def __init__(self, *, lexicon: Mapping[str, float] | None = None) -> None:
        self.vocab: dict[str, int] = {}
        self.estimator: Any = None  # the fitted sklearn LogisticRegression, kept after fit() for checks; not saved
        self._lexicon_source = {
            k.lower(): float(v) for k, v in (lexicon or {}).items() if _TOKEN_RE.fullmatch(k.lower())
        }
        self._arrays: dict[str, npt.NDArray[Any]] = {}
        self._sha256 = ""

    # -- features ------------------------------------------------------------------------------------------------

    def _set_vocab(self, words: list[str]) -> None:
        self.vocab = {w: i for i, w in enumerate(words)}
        # Keyed by what _normalized() writes: UTF-8 bytes, and an emoticon also by its placeholder key.
        lookup = {w.encode(_ENC, _ENC_ERRORS): i for w, i in self.vocab.items()}
        lookup.update((key, self.vocab[text]) for key, text in _EMOTICON_TEXT.items() if text in self.vocab)
        lookup[_SEP.encode()] = len(words) + 1
        self._lookup = lookup
        self._oov = len(words)
        # Open addressing with linear probing at load <= 1/4: most tokens resolve at their first slot. Three flat
        # columns: a 1-D gather is several times faster than gathering rows of a 2-D table.
        # (A word with a space, possible only in a hand-made file, can never match a token.)
        short = [k for k in lookup if 0 < len(k) <= _KEY_BYTES and b" " not in k]
        _, _, k0, k1 = _token_keys(b" " + b" ".join(short) + _PAD)
        self._bits = max(4, (4 * len(short) - 1).bit_length())
        size = 1 << self._bits
        table0 = np.full(size, _EMPTY, dtype=np.uint64)
        table1 = np.full(size, _EMPTY, dtype=np.uint64)
        table_ids = np.full(size, self._oov, dtype=np.int64)  # an empty slot answers OOV
        self._max_probe = 0
        for key, slot, word0, word1 in zip(short, _slots(k0, k1, self._bits).tolist(), k0, k1, strict=True):
            probe = 0
            while table0[(slot + probe) % size] != _EMPTY:
                probe += 1
            at = (slot + probe) % size
            table0[at], table1[at], table_ids[at] = word0, word1, lookup[key]
            self._max_probe = max(self._max_probe, probe)
        self._table = (table0, table1, table_ids)

    def _ids(self, texts: Sequence[str]) -> IntArray:
        data = b" " + _normalized(texts) + _PAD
        starts, ends, k0, k1 = _token_keys(data)
        table0, table1, table_ids = self._table
        slot = _slots(k0, k1, self._bits)
        at0 = table0[slot]
        hit = (at0 == k0) & (table1[slot] == k1)
        ids = np.where(hit, table_ids[slot], self._oov)
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
            ids[i] = self._lookup.get(data[starts[i] : ends[i]], self._oov)
        return ids

    def _features(self, texts: Sequence[str]) -> _Features:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        n = len(texts)
        ids = self._ids(texts) if n else np.zeros(0, np.int64)
        sep = self._oov + 1
        starts = np.zeros(n, np.int64)
        if n > 1:
            starts[1:] = np.flatnonzero(ids == sep) + 1
        # Each text's segment runs to the next one's start and holds its separator (the last holds none).
        n_tokens = np.diff(np.append(starts, len(ids) + 1)) - 1
        is_neg = self._is_negator[ids]
        negated = np.zeros(len(ids), bool)
        negated[1:] = is_neg[:-1]
        negated[2:] |= is_neg[:-2] & (ids[1:-1] != sep)
        # Only pairs whose both tokens occur in some known bigram are searched: most pairs are ruled out by two
        # cheap table lookups, and the binary search (cache misses) was the costliest step of scoring.
        cand = np.flatnonzero(self._bigram_head[ids[:-1]] & self._bigram_tail[ids[1:]])
        keys = ids[cand] * (self._oov + 2) + ids[cand + 1]
        table = self._bigram_keys
        pos = np.minimum(np.searchsorted(table, keys), max(len(table) - 1, 0))
        # Table keys only pair in-vocabulary tokens, so a pair with OOV or a separator can never match.
        hit = np.flatnonzero(table[pos] == keys) if len(table) else np.zeros(0, np.int64)
        return _Features(ids, starts, n_tokens, negated, cand[hit], pos[hit])

    def feature_matrix(self, texts: Sequence[str]) -> Any:
        """The sparse matrix scikit-learn trains on: columns are unigrams, bigrams, then 3 lexicon sums."""
        from scipy import sparse

        f = self._features(texts)
        v, b, n = self._oov, len(self._bigram_keys), len(texts)
        doc = np.repeat(np.arange(n), f.n_tokens + 1)[: len(f.ids)]
        known = np.flatnonzero(f.ids < v)
        valence = self._valence[f.ids]
        lex_cols = np.where(f.negated, 2, np.where(valence > 0, 0, 1))
        lex = np.flatnonzero(valence != 0)
        rows = np.concatenate([doc[known], doc[f.bigram_pos], doc[lex]])
        cols = np.concatenate([f.ids[known], v + f.bigram_idx, v + b + lex_cols[lex]])
        vals = np.concatenate([np.ones(len(known) + len(f.bigram_pos)), valence[lex]])
        vals *= _scale(f.n_tokens)[rows]
        return sparse.csr_matrix((vals, (rows, cols)), shape=(n, v + b + 3))

    # -- training and scoring --------------------------------------------------------------------------------------

    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> SentimentModel:
        """Learn the vocabulary, bigram table and weights from labelled texts (1 = positive, 0 = negative)."""
        from sklearn.linear_model import LogisticRegression

        y = _check_training_data(texts, labels)
        seen = {_EMOTICON_TEXT.get(t) or t.decode(_ENC, _ENC_ERRORS) for t in set(_tokens(texts))}
        seen.discard(_SEP)
        # Lexicon words join the vocabulary even if unseen: their valence still scores.
        self._set_vocab(sorted(seen | set(self._lexicon_source)))
        v = len(self.vocab)
        valence = np.array([self._lexicon_source.get(w, 0.0) for w in self.vocab], dtype=np.float64)
        negator = np.array([w in _NEGATORS for w in self.vocab], dtype=np.uint8)
        self._arrays = {"lexicon": valence, "negator": negator}
        self._set_token_tables()
        ids = self._ids(texts)
        keys = ids[:-1] * (v + 2) + ids[1:]
        keys = keys[(ids[:-1] < v) & (ids[1:] < v)]
        uniq, cnt = np.unique(keys, return_counts=True)
        self._set_bigram_table(uniq[cnt >= MIN_BIGRAM_COUNT])

        x = self.feature_matrix(texts)
        clf = LogisticRegression(C=C, max_iter=MAX_ITER).fit(x, y)
        coef = clf.coef_[0].astype(np.float64)
        b = len(self._bigram_keys)
        t = v + 2
        self._arrays.update(
            vocab=np.frombuffer(json.dumps(list(self.vocab), ensure_ascii=False).encode("utf-8"), np.uint8),
            unigram_w=coef[:v],
            lexicon_w=coef[v + b :],
            bigrams=np.stack([self._bigram_keys // t, self._bigram_keys % t], axis=1).astype(np.int64),
            bigram_w=coef[v : v + b],
            intercept=np.array([clf.intercept_[0]], dtype=np.float64),
        )
        self.estimator = clf
        self._finish()
        return self

    def _set_bigram_table(self, keys: IntArray) -> None:
        t = self._oov + 2
        self._bigram_keys = keys
        self._bigram_head = np.zeros(t, bool)
        self._bigram_head[keys // t] = True
        self._bigram_tail = np.zeros(t, bool)
        self._bigram_tail[keys % t] = True

    def _set_token_tables(self) -> None:
        # Padded with OOV and separator entries so any token id indexes them directly.
        pad = np.zeros(2)
        self._valence = np.concatenate([self._arrays["lexicon"], pad])
        self._is_negator = np.concatenate([self._arrays["negator"], pad]).astype(bool)

    def _finish(self) -> None:
        """Derive the scoring tables from the stored arrays (after fit and after load)."""
        a = self._arrays
        lw = a["lexicon_w"]
        valence = a["lexicon"]
        # Two per-token weight tables: the right one is picked per position by whether a negator precedes it.
        plain = a["unigram_w"] + np.where(valence > 0, lw[0], lw[1]) * valence
        negated = a["unigram_w"] + lw[2] * valence
        pad = np.zeros(2)  # OOV and separator weigh nothing
        self._w_plain = np.concatenate([plain, pad])
        self._w_negated = np.concatenate([negated, pad])
        self._intercept = float(a["intercept"][0])
        self._sha256 = _arrays_sha256(a)

    def _require_fitted(self) -> None:
        if not self._sha256:
            raise ModelError("model is not trained: call fit() or load a saved model first")

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """P(positive) per text as a 1-D float64 array; a text with no known tokens gets the intercept-only value."""
        self._require_fitted()
        f = self._features(texts)
        if not len(texts):
            return np.zeros(0, np.float64)
        m = len(f.ids)
        # One spare zero at the end keeps every reduceat segment non-empty (an empty last text included).
        contrib = np.zeros(m + 1)
        contrib[:m] = np.where(f.negated, self._w_negated[f.ids], self._w_plain[f.ids])
        # Positions are distinct (one bigram starts at each), so plain fancy-index += is exact.
        contrib[f.bigram_pos] += self._arrays["bigram_w"][f.bigram_idx]
        z = np.add.reduceat(contrib, f.starts) * _scale(f.n_tokens) + self._intercept
        # tanh form of the logistic: no overflow warning for large |z|.
        return 0.5 + 0.5 * np.tanh(0.5 * z)

    # -- persistence ------------------------------------------------------------------------------------------------

    @property
    def sha256(self) -> str:
        """Hex sha256 of the model's arrays (what save() records); the same model always gives the same value."""
        self._require_fitted()
        return self._sha256

    def to_bytes(self) -> bytes:
        """The saved model as bytes (an .npz archive of plain arrays; no pickle)."""
        self._require_fitted()
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "sha256": self._sha256,
            "vocab_size": len(self.vocab),
            "n_bigrams": len(self._bigram_keys),
            "hyperparameters": {"C": C, "min_bigram_count": MIN_BIGRAM_COUNT},
        }
        arrays: dict[str, Any] = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8), **self._arrays}
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    def save(self, path: str | Path) -> None:
        """Write the model to ``path`` atomically (readers never see half a file)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(self.to_bytes())
        os.replace(tmp, path)

    @classmethod
    def from_bytes(cls, data: bytes) -> SentimentModel:
        """Load a model from to_bytes() output; anything else raises ModelError."""
        return cls._from_buffer(data, "model bytes")

    @classmethod
    def load(cls, path: str | Path) -> SentimentModel:
        """Load a model saved with save(); a missing, truncated, tampered or unsafe file raises ModelError."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
        return cls._from_buffer(data, f"model file {path}")

    @classmethod
    def _from_buffer(cls, data: bytes, where: str) -> SentimentModel:
        if not data.startswith(b"PK"):
            raise ModelError(f"{where} is not a sentq model (.npz archive); refusing to load it")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
            raise ModelError(f"{where} is truncated or corrupt ({exc})") from None
        missing = sorted({"meta", *_ARRAYS} - set(arrays))
        if missing:
            raise ModelError(f"{where} is not a sentq model: missing arrays {', '.join(missing)}")
        for name, (dtype, ndim) in {"meta": ("uint8", 1), **_ARRAYS}.items():
            if arrays[name].dtype != np.dtype(dtype) or arrays[name].ndim != ndim:
                raise ModelError(f"{where}: array {name!r} has the wrong type or shape")
        try:
            meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
            version, recorded = meta["format_version"], meta["sha256"]
            fmt = meta["format"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{where}: unreadable metadata ({exc})") from None
        if fmt != FORMAT or version != FORMAT_VERSION:
            raise ModelError(
                f"{where} has format {fmt!r} version {version!r}; this sentq reads {FORMAT!r} version {FORMAT_VERSION}"
            )
        actual = _arrays_sha256(arrays)
        if actual != recorded:
            raise ModelError(f"{where} is tampered or corrupt: sha256 {actual} does not match recorded {recorded}")
        model = cls()
        model._restore(arrays, where)
        return model

    def _restore(self, a: dict[str, npt.NDArray[Any]], where: str) -> None:
        try:
            words = json.loads(a["vocab"].tobytes().decode("utf-8"))
        except ValueError as exc:
            raise ModelError(f"{where}: unreadable vocabulary ({exc})") from None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words) or len(set(words)) != len(words):
            raise ModelError(f"{where}: vocabulary is not a list of distinct strings")
        v, t = len(words), len(words) + 2
        pairs = a["bigrams"]
        problems = [
            (any(len(a[k]) != v for k in ("unigram_w", "lexicon", "negator")), "per-token arrays do not match vocab"),
            (len(a["lexicon_w"]) != 3 or len(a["intercept"]) != 1, "lexicon_w/intercept have the wrong length"),
            (pairs.shape[1:] != (2,) or len(pairs) != len(a["bigram_w"]), "bigram arrays do not match"),
            (bool(pairs.size) and not (pairs.min() >= 0 and pairs.max() < v), "bigram token ids out of range"),
            (
                not all(
                    np.isfinite(a[k]).all() for k in ("unigram_w", "lexicon", "lexicon_w", "bigram_w", "intercept")
                ),
                "weights are not finite",
            ),
        ]
        for bad, message in problems:
            if bad:
                raise ModelError(f"{where}: {message}")
        keys = pairs[:, 0] * t + pairs[:, 1]
        if len(keys) > 1 and not (np.diff(keys) > 0).all():
            raise ModelError(f"{where}: bigram table is not sorted")
        self._set_vocab(words)
        self._set_bigram_table(keys)
        self._arrays = a
        self._set_token_tables()
        self._finish()


def _scale(n_tokens: IntArray) -> FloatArray:
    # sum / sqrt(n) keeps long texts from saturating while costing one vector op (exact L2 would not).
    return 1.0 / np.sqrt(np.maximum(n_tokens, 1))


def _arrays_sha256(arrays: Mapping[str, npt.NDArray[Any]]) -> str:
    digest = hashlib.sha256()
    for name in sorted(_ARRAYS):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def _check_training_data(texts: Sequence[str], labels: Sequence[int]) -> npt.NDArray[np.int64]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    if len(texts) != len(labels):
        raise InputError(f"training data has {len(texts)} texts but {len(labels)} labels")
    y = np.asarray(labels, dtype=np.int64)
    if len(y) and not np.isin(y, (0, 1)).all():
        raise InputError("training labels must be 0 (negative) or 1 (positive)")
    if len(np.unique(y)) < 2:
        raise InputError("training data needs both positive and negative examples")
    return y


def train(
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    lexicon: Mapping[str, float] | None = None,
) -> tuple[SentimentModel, dict[str, float | int]]:
    """Fit on a stratified train split and measure on the held-out rest; the accuracy describes the returned model."""
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise InputError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    y = _check_training_data(texts, labels)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=y)
    model = SentimentModel(lexicon=lexicon).fit([texts[i] for i in idx_train], y[idx_train].tolist())
    predicted = model.predict_proba([texts[i] for i in idx_test]) >= 0.5
    accuracy = float(np.mean(predicted == y[idx_test].astype(bool)))
    return model, {"accuracy": round(accuracy, 4), "n_train": len(idx_train), "n_test": len(idx_test)}


def cross_validate(
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    folds: int = 5,
    seed: int = 0,
    lexicon: Mapping[str, float] | None = None,
) -> float:
    """Mean accuracy over stratified k folds (how the hyperparameters above were chosen)."""
    from sklearn.model_selection import StratifiedKFold

    y = _check_training_data(texts, labels)
    scores = []
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        model = SentimentModel(lexicon=lexicon).fit([texts[i] for i in tr], y[tr].tolist())
        scores.append(float(np.mean((model.predict_proba([texts[i] for i in te]) >= 0.5) == y[te].astype(bool))))
    return round(math.fsum(scores) / len(scores), 4)
