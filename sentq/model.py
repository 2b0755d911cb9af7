"""SentimentModel: a linear words+bigrams+lexicon classifier trained with scikit-learn and scored with numpy."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sentq.errors import InputError, ModelError
from sentq.tokens import TOKEN_RE, IntArray, Vocabulary, distinct_words

FORMAT = "sentq.SentimentModel"
FORMAT_VERSION = 1

# Chosen by 5-fold CV on the VADER ground truth (C in 1..30, bigram min count 1..3, with/without lexicon,
# NB log-count ratios, IDF scaling, n**-0.3..-0.7 normalisation): all within ~0.5 point, these were best.
C = 10.0
MIN_BIGRAM_COUNT = 2
MAX_ITER = 5000

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
            k.lower(): float(v) for k, v in (lexicon or {}).items() if TOKEN_RE.fullmatch(k.lower())
        }
        self._arrays: dict[str, npt.NDArray[Any]] = {}
        self._sha256 = ""

    # -- features ------------------------------------------------------------------------------------------------

    def _set_vocab(self, words: list[str]) -> None:
        self.vocab = {w: i for i, w in enumerate(words)}
        self._vocabulary = Vocabulary(words)
        self._oov = self._vocabulary.oov

    def _features(self, texts: Sequence[str]) -> _Features:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        n = len(texts)
        ids = self._vocabulary.ids(texts) if n else np.zeros(0, np.int64)
        sep = self._vocabulary.sep
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
        # Lexicon words join the vocabulary even if unseen: their valence still scores.
        self._set_vocab(sorted(distinct_words(texts) | set(self._lexicon_source)))
        v = len(self.vocab)
        valence = np.array([self._lexicon_source.get(w, 0.0) for w in self.vocab], dtype=np.float64)
        negator = np.array([w in _NEGATORS for w in self.vocab], dtype=np.uint8)
        self._arrays = {"lexicon": valence, "negator": negator}
        self._set_token_tables()
        ids = self._vocabulary.ids(texts)
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
