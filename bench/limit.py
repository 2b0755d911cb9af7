"""The one-process limit: read a text file, score it 5,000 lines at a time, write JSONL rows.

Run by bench/limit_vs_sentq.py in its own process (one thread: OMP/OPENBLAS_NUM_THREADS=1) as
``python bench/limit.py REDIS_URL INPUT OUTPUT [--passes N] [--score-only-texts N]``; it loads the registry's current
model (the one the workers score with) and prints one JSON object: the best pass's texts/s end to end (read ->
predict_proba -> sentq.rows.format_rows -> write), its per-stage seconds, and the scoring-only rate (predict_proba
alone).
``--passes 1 --score-only-texts 0`` is a one-process script's whole run (start-up, model load, read, score, write;
bench/small_jobs.py times it next to a small `sentq submit --wait`).
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import islice
from pathlib import Path

import redis

from sentq import registry
from sentq.model import SentimentModel
from sentq.rows import format_rows

CHUNK = 5000


def one_pass(model: SentimentModel, src: Path, dst: Path, label: str) -> dict[str, float]:
    """Read -> score -> write the whole file once; returns texts, wall seconds and seconds per stage."""
    stages = {"read": 0.0, "score": 0.0, "format": 0.0, "write": 0.0}
    texts_total = 0
    started = time.perf_counter()
    with open(src, encoding="utf-8") as inp, open(dst, "wb") as out:
        line_no = 0
        while True:
            t0 = time.perf_counter()
            block = list(islice(inp, CHUNK))
            if not block:
                break
            texts = [raw.strip() for raw in block]
            lines = list(range(line_no + 1, line_no + 1 + len(block)))
            line_no += len(block)
            if not all(texts):  # blank lines are skipped, as sentq does
                kept = [(n, t) for n, t in zip(lines, texts, strict=True) if t]
                lines, texts = [n for n, _ in kept], [t for _, t in kept]
            t1 = time.perf_counter()
            probs = model.predict_proba(texts)
            t2 = time.perf_counter()
            rows = format_rows(lines, texts, probs, label)
            t3 = time.perf_counter()
            out.write(rows)
            t4 = time.perf_counter()
            stages["read"] += t1 - t0
            stages["score"] += t2 - t1
            stages["format"] += t3 - t2
            stages["write"] += t4 - t3
            texts_total += len(texts)
    wall = time.perf_counter() - started
    return {"texts": texts_total, "wall_s": wall, **{f"{k}_s": v for k, v in stages.items()}}


def score_only(model: SentimentModel, src: Path, limit: int) -> float:
    """predict_proba alone over the file's first ``limit`` texts in chunks of CHUNK (texts/s, after a warm-up)."""
    with open(src, encoding="utf-8") as inp:
        texts = [raw.strip() for raw in islice(inp, limit)]
    chunks = [texts[i : i + CHUNK] for i in range(0, len(texts), CHUNK)]
    model.predict_proba(chunks[0])
    started = time.perf_counter()
    for chunk in chunks:
        model.predict_proba(chunk)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("redis_url")
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument(
        "--score-only-texts",
        type=int,
        default=200_000,
        help="texts of the scoring-only rate (0: skip it, for a one-process script's whole run)",
    )
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis_url)
    ref = registry.current(client)
    if ref is None:
        raise SystemExit("no current model in the registry (start a sentq worker first)")
    version = registry.ref_version(ref)
    model = registry.load(client, version)
    client.close()
    passes = [one_pass(model, args.input, args.output, f"v{version}") for _ in range(args.passes)]
    best = min(passes, key=lambda p: p["wall_s"])
    rates = [score_only(model, args.input, args.score_only_texts) for _ in range(3)] if args.score_only_texts else [0.0]
    print(json.dumps({**best, "texts_per_s": best["texts"] / best["wall_s"], "score_only_per_s": max(rates)}))


if __name__ == "__main__":
    main()
