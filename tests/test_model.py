"""SentimentModel and the default dataset: accuracy, agreement with scikit-learn, and a safe on-disk format."""

from __future__ import annotations

import io
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sentq.dataset import Dataset, decode_dataset, encode_dataset, load_dataset
from sentq.errors import DatasetMissingError, ModelError
from sentq.model import SentimentModel, train
from sentq.settings import DEFAULT_DATA_DIR
from sentq.tokens import TOKEN_RE, token_text, tokens

# The held-out split reaches 0.814 (5-fold CV 0.817); the margin absorbs solver and BLAS differences.
MIN_ACCURACY = 0.80


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    try:
        return load_dataset(DEFAULT_DATA_DIR)
    except DatasetMissingError as exc:
        pytest.skip(f"default dataset not fetched ({exc})")


@pytest.fixture(scope="session")
def trained(dataset: Dataset) -> tuple[SentimentModel, dict[str, float | int]]:
    return train(dataset.texts, dataset.labels, lexicon=dataset.lexicon)


@pytest.fixture(scope="session")
def model(trained: tuple[SentimentModel, dict[str, float | int]]) -> SentimentModel:
    return trained[0]


def test_held_out_accuracy(trained: tuple[SentimentModel, dict[str, float | int]], dataset: Dataset) -> None:
    _, metrics = trained
    assert metrics["accuracy"] >= MIN_ACCURACY
    assert metrics["n_train"] + metrics["n_test"] == len(dataset.texts)


def test_obvious_texts(model: SentimentModel) -> None:
    great, awful = model.predict_proba(["great product", "awful service"])
    assert great >= 0.5
    assert awful < 0.5


def test_numpy_scoring_equals_sklearn(model: SentimentModel, dataset: Dataset) -> None:
    texts = [*dataset.texts[::7], "", "!!!", "not good at all", "café naïve 日本語", "a\x00b"]
    ours = model.predict_proba(texts)
    theirs = model.estimator.predict_proba(model.feature_matrix(texts))[:, 1]
    assert ours.dtype == np.float64 and ours.shape == (len(texts),)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


# Characters that exercise each rule of the bytes tokeniser: emoticons (which can eat a following letter), loose
# and inner apostrophes, curly apostrophes, non-ASCII letters/digits/separators/uppercase, the context-dependent
# capital sigma, a lone surrogate, the separator and the emoticon marker byte.
_TRICKY = [*"aAdDpPoO3zZ09 '!?:;=<-^()[]/\\|*_.,\x00\x01\t\n", *"\u2019éÉσİ\u212a😀\u0301\xa0\ud83d²ßﬁⅠ日…\u200bς\x85Σ"]


def _reference_tokens(texts: list[str]) -> list[str]:
    return TOKEN_RE.findall("\x00".join(t.replace("\x00", " ") for t in texts).lower().replace("\u2019", "'"))


def test_tokens_match_the_token_regex(dataset: Dataset) -> None:
    rng = random.Random(0)
    chunks = [dataset.texts[i : i + 1000] for i in range(0, len(dataset.texts), 1000)]
    chunks.append(["Don't :-D <3 it''s 'quoted' CAFÉ ÜBEL 😀great 10:30 x=p", "ΑΣ.Α", "a" * 40, "a\x00b"])
    for alphabet in (_TRICKY, [c for c in _TRICKY if c != "Σ"], [c for c in _TRICKY if c.isascii()]):
        for _ in range(300):
            texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 12))) for _ in range(rng.randint(1, 6))]
            chunks.append(texts)
    for texts in chunks:
        ours = [token_text(t) for t in tokens(texts)]
        assert ours == _reference_tokens(texts), texts


def test_token_ids_match_the_vocabulary(model: SentimentModel) -> None:
    rng = random.Random(1)
    words = list(model.vocab)
    texts = [
        " ".join(rng.choices(words, k=rng.randint(0, 15))) + rng.choice(["", " zzqx", " ab" * 9]) for _ in range(2000)
    ]
    texts += [w * 3 for w in words[::50]]  # tokens too long for the hash table's 16-byte keys
    reference = _reference_tokens(texts)
    expected = [model.vocab.get(t, len(words) + 1 if t == "\x00" else len(words)) for t in reference]
    assert model._vocabulary.ids(texts).tolist() == expected


def test_empty_inputs(model: SentimentModel) -> None:
    assert model.predict_proba([]).shape == (0,)
    probs = model.predict_proba(["", "   ", "...", "great"])
    intercept_only = 1 / (1 + np.exp(-model.estimator.intercept_[0]))
    np.testing.assert_allclose(probs[:3], intercept_only, atol=1e-12)
    assert np.isfinite(probs).all()


def test_save_load_round_trip(model: SentimentModel, dataset: Dataset, tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = SentimentModel.load(path)
    texts = dataset.texts[:500]
    assert np.array_equal(loaded.predict_proba(texts), model.predict_proba(texts))
    assert loaded.sha256 == model.sha256
    assert loaded.vocab == model.vocab


def test_bytes_round_trip(model: SentimentModel, dataset: Dataset) -> None:
    data = model.to_bytes()
    loaded = SentimentModel.from_bytes(data)
    assert loaded.sha256 == model.sha256 == SentimentModel.from_bytes(loaded.to_bytes()).sha256
    assert np.array_equal(loaded.predict_proba(dataset.texts[:200]), model.predict_proba(dataset.texts[:200]))


def test_tampered_bytes_are_refused(model: SentimentModel, tmp_path: Path) -> None:
    data = model.to_bytes()
    # One flipped byte in the middle of every stored array (zip header fields such as timestamps carry no model).
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
    offsets = [m.header_offset + 30 + len(m.filename) + m.compress_size // 2 for m in members]
    assert len(offsets) >= 9
    for offset in offsets:
        bad = bytearray(data)
        bad[offset] ^= 0xFF
        path = tmp_path / f"tampered-{offset}.npz"
        path.write_bytes(bytes(bad))
        with pytest.raises(ModelError, match=str(path)):
            SentimentModel.load(path)


def test_truncated_file_is_refused(model: SentimentModel, tmp_path: Path) -> None:
    path = tmp_path / "truncated.npz"
    path.write_bytes(model.to_bytes()[:5000])
    with pytest.raises(ModelError, match="truncated.npz"):
        SentimentModel.load(path)
    with pytest.raises(ModelError, match="cannot read"):
        SentimentModel.load(tmp_path / "missing.npz")


class _Payload:
    """Unpickling this would create the marker file: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def test_pickle_file_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ModelError, match="model.pkl"):
        SentimentModel.load(path)
    assert not marker.exists()


def test_unfitted_model_raises() -> None:
    with pytest.raises(ModelError, match="not trained"):
        SentimentModel().predict_proba(["hello"])


def test_missing_dataset_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissingError, match="make setup") as info:
        load_dataset(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)


def test_dataset_encode_decode_round_trip(dataset: Dataset) -> None:
    small = Dataset(texts=dataset.texts[:50], labels=dataset.labels[:50], source=dataset.source, lexicon={"good": 1.9})
    assert decode_dataset(encode_dataset(small)) == small
    for garbage in (b"", b"not gzip", encode_dataset(small)[:20]):
        with pytest.raises(DatasetMissingError):
            decode_dataset(garbage)
