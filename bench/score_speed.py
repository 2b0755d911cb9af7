"""Scoring speed on one core: SentimentModel.predict_proba against a TF-IDF + LogisticRegression pipeline.

Run as ``OPENBLAS_NUM_THREADS=1 python bench/score_speed.py [--chunks N] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable, Sequence

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sentq.dataset import load_dataset
from sentq.model import SentimentModel
from sentq.settings import Settings

CHUNK = 1000
# Words real users send that the English training data never saw: scoring must take them in stride.
NON_ASCII = ["café", "naïve", "größe", "señor", "日本語", "привет", "😀", "déjà", "übel", "niño"]


def make_chunks(vocab: Sequence[str], n_chunks: int, seed: int) -> list[list[str]]:
    """Texts of 3-15 words drawn from the training vocabulary, about 1 in 40 words non-ASCII."""
    rng = random.Random(seed)
    words = [w for w in vocab if w.isalpha()] or list(vocab)
    chunks = []
    for _ in range(n_chunks):
        texts = []
        for _ in range(CHUNK):
            picked = [
                rng.choice(NON_ASCII) if rng.random() < 0.025 else rng.choice(words) for _ in range(rng.randint(3, 15))
            ]
            text = " ".join(picked)
            texts.append(text.capitalize() + rng.choice([".", "!", "", "?"]))
        chunks.append(texts)
    return chunks


def best_rate(score: Callable[[list[str]], object], chunks: list[list[str]], repeats: int) -> float:
    """Texts per second of the fastest pass over all chunks, after one warm-up pass."""
    for chunk in chunks:
        score(chunk)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for chunk in chunks:
            score(chunk)
        best = min(best, time.perf_counter() - start)
    return sum(len(c) for c in chunks) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=20, help="1,000-text chunks per pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes; the best counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    ds = load_dataset(Settings.from_env().data_dir)
    start = time.perf_counter()
    model = SentimentModel(lexicon=ds.lexicon).fit(ds.texts, ds.labels)
    fit_s = time.perf_counter() - start
    baseline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=2000))
    baseline.fit(ds.texts, ds.labels)
    chunks = make_chunks(list(model.vocab), args.chunks, args.seed)

    ours = best_rate(model.predict_proba, chunks, args.repeats)
    theirs = best_rate(lambda texts: baseline.predict_proba(texts)[:, 1], chunks, args.repeats)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"trained on {len(ds.texts)} texts in {fit_s:.1f}s; vocab {len(model.vocab)}; {args.chunks} chunks of {CHUNK}; "
        f"best of {args.repeats}; load average {load} on {os.cpu_count()} CPUs (the machine is shared: compare runs "
        "made side by side)"
    )
    print(f"{'scorer':<44}{'texts/s':>12}{'ratio':>8}")
    print(f"{'sentq SentimentModel.predict_proba (numpy)':<44}{ours:>12,.0f}{ours / theirs:>8.2f}")
    print(f"{'sklearn TfidfVectorizer(1,2) + LogReg':<44}{theirs:>12,.0f}{1.0:>8.2f}")


if __name__ == "__main__":
    main()
