"""The machinery every bench measurement shares: sizes, its own redis-server and workers, the seeded input, the table.

A `Bench` is one run's temp dir, redis-server (free port, no persistence, noeviction) and workers (`sentq worker -c 2`,
a bare Celery no-op worker -c 2 and the same with task events, bench/noop_app.py), with the helpers that run the sentq
CLI against them; `per_bench` makes a result other measurements build on (the input files, the limit, the chunk sweep)
once per bench; `run_session` runs measurements against a fresh bench and stops everything it started, even on Ctrl-C;
`measure_alone` is the main of a measurement module run on its own (`python bench/NAME.py [--quick]`).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import redis

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA = REPO / "data"
VENV_SENTQ = Path(sys.executable).with_name("sentq")
SENTQ = [str(VENV_SENTQ)] if VENV_SENTQ.exists() else [sys.executable, "-m", "sentq.cli"]
NOBODY_QUEUE = "bench.nobody"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Words real users send that the English training data never saw.
NON_ASCII = [
    "café", "naïve", "größe", "señor", "déjà", "übel", "niño", "crème", "touché", "jalapeño", "façade",
    "日本語", "很好", "最悪", "素晴らしい", "привет", "спасибо", "😀", "🙂", "😡", "👍", "❤️", "🔥", "🤔",
]  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    main: int  # texts of the end-to-end runs and the seed's way
    big: int  # lines of the submit / waiter runs
    status_texts: int  # texts of the 2,000-chunk job
    status_chunk: int
    sweep: tuple[int, ...] = (1000, 5000, 20000)
    round_trips: int = 200
    repeats: int = 5


FULL = Sizes(main=1_000_000, big=2_000_000, status_texts=200_000, status_chunk=100)
QUICK = Sizes(main=100_000, big=200_000, status_texts=20_000, status_chunk=10, round_trips=100, repeats=3)


# ----- processes -------------------------------------------------------------------------------------------------


class Processes:
    """Every process the benchmark starts, each in its own session, so all of them can be stopped at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(cmd, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], *, timeout: float = 20) -> None:
        if proc.returncode is None and proc.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


TIME = Path("/usr/bin/time")


class PeakRss:
    """A child's own peak RSS. wait4's ru_maxrss is no good here: Linux starts a child's maxrss at the RSS of the
    process it was forked from (this benchmark, hundreds of MB). GNU time (apt package `time`) forks a small
    process of its own and reports the command's maximum resident set size exactly; without it, a thread polls
    /proc/PID/status VmHWM (the high-water mark of the exec'd image) until the process exits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hwm_kb = 0
        self._thread: threading.Thread | None = None

    def wrap(self, cmd: list[str]) -> list[str]:
        return [str(TIME), "-f", "%M %U %S", "-o", str(self.path), *cmd] if TIME.exists() else cmd

    def watch(self, proc: subprocess.Popen[bytes]) -> None:
        if TIME.exists():
            return

        def poll() -> None:
            status = Path(f"/proc/{proc.pid}/status")
            while proc.returncode is None:
                try:
                    for line in status.read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            self.hwm_kb = max(self.hwm_kb, int(line.split()[1]))
                except (OSError, ValueError):
                    return
                time.sleep(0.02)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()

    def _fields(self) -> list[str]:
        lines = self.path.read_text().strip().splitlines() if self.path.exists() else []
        fields = lines[-1].split() if lines else []
        return fields if len(fields) == 3 and fields[0].isdigit() else []

    def mb(self) -> float:
        if TIME.exists():
            fields = self._fields()
            return int(fields[0]) / 1024 if fields else float("nan")
        return self.hwm_kb / 1024

    def cpu_s(self) -> float:
        """User + system CPU seconds of the command (GNU time only; NaN without it)."""
        fields = self._fields()
        return float(fields[1]) + float(fields[2]) if fields else float("nan")


def reap(proc: subprocess.Popen[bytes]) -> int:
    """Wait for ``proc`` and return its exit code."""
    return proc.wait()


@dataclass
class Timed:
    rc: int
    wall_s: float
    rss_mb: float
    stdout: str
    stderr: str
    first_line_s: float | None = None
    started_at: float = 0.0  # epoch seconds at launch, to line up with the job record's timestamps
    cpu_s: float = float("nan")  # user + system CPU of the command (GNU time)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bench:
    """The benchmark's own Redis, workers and temp dir, and the helpers that run sentq against them."""

    def __init__(self, sizes: Sizes, tmp: Path) -> None:
        self.sizes = sizes
        self.tmp = tmp
        self.procs = Processes()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(port=self.port, socket_connect_timeout=2, socket_timeout=60)
        self.worker: subprocess.Popen[bytes] | None = None
        self.noop_worker: subprocess.Popen[bytes] | None = None
        self.noop_events_worker: subprocess.Popen[bytes] | None = None
        self.made: dict[Callable[..., Any], Any] = {}  # per_bench's results, by the function that made them
        # Other ways of doing the chunk sweep's job (bench/dask_peer.py), each run once in every round of the sweep,
        # with the round's number: interleaved with sentq's runs, a ratio to them sees the same load.
        self.peers: list[Callable[[int], None]] = []

    def env(self, *, one_thread: bool = False, **extra: str) -> dict[str, str]:
        # Without PYTHONDONTWRITEBYTECODE: an installed sentq has its bytecode compiled (pip does it at install); a
        # checkout whose shell forbids .pyc files would compile sentq's modules on every command, ~50 ms of each.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENTQ_") and k != "PYTHONDONTWRITEBYTECODE"}
        env.update(SENTQ_BROKER_URL=self.url, SENTQ_DATA_DIR=str(DATA), PYTHONUNBUFFERED="1")
        if one_thread:
            env.update(ONE_THREAD)
        env.update(extra)
        return env

    def start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed: run `make setup` (or `sudo apt-get install redis-server`)")
        directory = self.tmp / "redis"
        directory.mkdir()
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory)]
        args += ["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]
        # The seed's way (3) gets its results by pub/sub: with Redis's default 32 MB pub/sub output limit, 200 results
        # of 5,000 row dicts arrive faster than .get() reads them, Redis drops the subscriber and .get() hangs forever
        # (seen here). Lifting the limit gives the seed its best case; sentq does not use pub/sub for data.
        args += ["--client-output-buffer-limit", "pubsub 0 0 0"]
        args += ["--logfile", str(directory / "redis.log")]
        proc = self.procs.start(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def _start_worker(self, cmd: list[str], log_name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log_path = self.tmp / log_name
        with open(log_path, "wb") as log:
            proc = self.procs.start(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{log_name}: worker exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if b"ready." in log_path.read_bytes():
                return proc
            time.sleep(0.1)
        raise RuntimeError(f"{log_name}: worker not ready in 180 s:\n{log_path.read_text()[-3000:]}")

    def start_workers(self, *, noop: bool = True) -> None:
        """`sentq worker -c 2` and, with ``noop``, the two Celery no-op workers (bare, and with task events)."""
        # As an operator types it; the first worker on a fresh Redis trains and publishes model v1.
        self.worker = self._start_worker(SENTQ + ["worker", "-c", "2"], "sentq-worker.log", self.env(one_thread=True))
        if not noop:
            return
        cmd = [sys.executable, "-m", "celery", "-A", "noop_app", "worker", "-c", "2", "-Q", "bench.noop"]
        cmd += ["-n", "noop@%h", "--pool", "prefork", "-l", "INFO"]
        env = self.env(one_thread=True, BENCH_BROKER_URL=self.url, PYTHONPATH=str(BENCH))
        self.noop_worker = self._start_worker(cmd, "noop-worker.log", env)
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "noop_app:events_app",
            "worker",
            "-c",
            "2",
            "-Q",
            "bench.noop.events",
        ]
        cmd += ["-n", "noopev@%h", "--pool", "prefork", "-l", "INFO", "-E"]
        self.noop_events_worker = self._start_worker(cmd, "noop-events-worker.log", env)

    def sentq(
        self, args: list[str], *, env: dict[str, str] | None = None, first_line: bool = False, name: str = "cli"
    ) -> Timed:
        """Run the sentq CLI as a user would; wall time from launch to exit, its peak RSS, and optionally the time
        until the first line on stdout (a pipe)."""
        out_path, err_path = self.tmp / f"{name}.out", self.tmp / f"{name}.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            started_at = time.time()
            peak = PeakRss(self.tmp / f"{name}.rss")
            started = time.perf_counter()
            proc = self.procs.start(
                peak.wrap(SENTQ + args),
                env=env or self.env(),
                stdout=subprocess.PIPE if first_line else out,
                stderr=err,
            )
            peak.watch(proc)
            first_s = None
            if first_line:
                assert proc.stdout is not None
                head = proc.stdout.readline()
                first_s = time.perf_counter() - started
                out.write(head + proc.stdout.read())
                proc.stdout.close()
            rc = reap(proc)
            wall = time.perf_counter() - started
            rss = peak.mb()
        self.procs.procs.remove(proc)
        stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
        return Timed(rc, wall, rss, stdout, stderr, first_s, started_at, peak.cpu_s())

    def breakdown(self, timed: Timed, job_id: str) -> str:
        """Where a `submit --wait` run's wall time went, from the job record's timestamps."""
        raw = {k.decode(): v.decode() for k, v in self.client.hgetall(f"sentq:job:{job_id}").items()}
        try:
            created, first, finished = (float(raw[k]) for k in ("created", "first_started", "finished_at"))
        except (KeyError, ValueError):
            return f"job {job_id}: no timestamps in its record"
        end = timed.started_at + timed.wall_s
        compute = float(raw.get("compute_s", 0))
        return (
            f"start-up to job record {created - timed.started_at:.2f} s, staging until the first chunk started "
            f"{first - created:.2f} s, scoring {finished - first:.2f} s (workers busy {compute:.2f} s of "
            f"{2 * (finished - first):.2f} process-s = {compute / max(2 * (finished - first), 1e-9):.0%}), "
            f"waiter tail + exit {end - finished:.2f} s; total {timed.wall_s:.2f} s"
        )

    def span(self, job_id: str) -> tuple[float, int]:
        """Seconds from the job's first chunk starting to its end, and its chunks (the workers' part of a job)."""
        raw = {k.decode(): v.decode() for k, v in self.client.hgetall(f"sentq:job:{job_id}").items()}
        return float(raw["finished_at"]) - float(raw["first_started"]), int(raw["total_chunks"])

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def drop_jobs(self) -> None:
        """Delete every job's keys and Celery results (the model registry stays)."""
        for pattern in ("sentq:job:*", "celery-task-meta-*", f"{NOBODY_QUEUE}*"):
            batch: list[bytes] = []
            for key in self.client.scan_iter(pattern, count=2000):
                batch.append(key)
                if len(batch) >= 2000:
                    self.client.delete(*batch)
                    batch.clear()
            if batch:
                self.client.delete(*batch)
        self.client.delete("sentq:jobs")


def job_id_from(text: str) -> str:
    found = re.search(r"job ([0-9a-f]{12})", text)
    if not found:
        raise RuntimeError(f"no job id in sentq's output:\n{text[-2000:]}")
    return found.group(1)


def check(timed: Timed, what: str) -> Timed:
    if timed.rc != 0:
        raise RuntimeError(f"{what} exited with {timed.rc}:\n{timed.stderr[-3000:]}")
    return timed


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
    return n


T = TypeVar("T")


def per_bench(make: Callable[[Bench], T]) -> Callable[[Bench], T]:
    """``make(bench)`` once per bench and what it returned after: for what several measurements build on (the input
    files, the limit, the chunk sweep), made by whichever asks first and kept on the bench, not in module state."""

    @functools.wraps(make)
    def made(bench: Bench) -> T:
        if make not in bench.made:
            bench.made[make] = make(bench)
        return bench.made[make]  # type: ignore[no-any-return]

    return made


# ----- input -----------------------------------------------------------------------------------------------------


def make_pool(size: int, seed: int) -> list[str]:
    """Distinct realistic texts: VADER sentences cut and recombined to 3-30 words (median ~11), some non-ASCII."""
    from sentq.dataset import load_dataset

    sentences = [t.split() for t in load_dataset(DATA).texts]
    sentences = [s for s in sentences if s]
    rng = random.Random(seed)
    pool = []
    for _ in range(size):
        n = min(30, max(3, round(rng.lognormvariate(2.4, 0.5))))
        words = rng.choice(sentences)
        start = rng.randrange(len(words))
        picked = words[start : start + n]
        while len(picked) < n:
            picked += rng.choice(sentences)[: n - len(picked)]
        if rng.random() < 0.1:
            picked[rng.randrange(len(picked))] = rng.choice(NON_ASCII)
        pool.append(" ".join(picked))
    return pool


def write_texts(path: Path, texts: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(texts))
        f.write("\n")


def head(src: Path, dst: Path, n: int) -> Path:
    """Write the first ``n`` lines of ``src`` to ``dst``."""
    with open(src, "rb") as inp, open(dst, "wb") as out:
        for _ in range(n):
            out.write(inp.readline())
    return dst


@dataclass(frozen=True)
class Inputs:
    main: Path  # sizes.main lines: the limit, the end-to-end runs, the seed's way
    big: Path  # sizes.big lines: the submit and waiter runs
    status: Path  # sizes.status_texts lines: the 2,000-chunk job, the job of chunks of 100
    two_lines: Path
    note: str  # what the input is, for the table's notes


@per_bench
def inputs(bench: Bench) -> Inputs:
    """The bench's input files, in its temp dir: the same seeded lines on every run (make_pool's texts resampled)."""
    sizes, tmp = bench.sizes, bench.tmp
    pool = make_pool(50_000, seed=6)
    rng = random.Random(66)
    big_texts = rng.choices(pool, k=sizes.big)
    main_file, big_file = tmp / "main.txt", tmp / "big.txt"
    write_texts(main_file, big_texts[: sizes.main])
    write_texts(big_file, big_texts)
    status_file = tmp / "status.txt"
    write_texts(status_file, big_texts[: sizes.status_texts])
    two_lines = tmp / "two-lines.txt"
    write_texts(two_lines, ["great product, works as advertised", "awful service, never again"])
    del big_texts
    words = [len(t.split()) for t in pool]
    non_ascii = sum(1 for t in pool if not t.isascii()) / len(pool)
    note = (
        f"input: {sizes.main:,} / {sizes.big:,} lines resampled (seeded) from {len(pool):,} texts built from "
        f"the VADER sentences, {min(words)}-{max(words)} words (median {statistics.median(words):.0f}), "
        f"{non_ascii:.0%} non-ASCII, {main_file.stat().st_size / sizes.main:.0f} bytes/line"
    )
    return Inputs(main_file, big_file, status_file, two_lines, note)


# ----- the table -------------------------------------------------------------------------------------------------


@dataclass
class Row:
    section: str
    name: str
    value: str
    versus: str = ""
    target: str = ""
    ok: bool | None = None


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self, section: str, name: str, value: str, versus: str = "", target: str = "", ok: bool | None = None
    ) -> None:
        self.rows.append(Row(section, name, value, versus, target, ok))


def rate(n: float) -> str:
    return f"{n:,.0f} texts/s"


def ms(s: float) -> str:
    return f"{s * 1000:,.1f} ms"


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "MISS")


def print_table(results: Results, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in ("#", "measurement", "value", "vs", "target", ""):
        table.add_column(col, overflow="fold")
    last = None
    for row in results.rows:
        style = {True: "green", False: "red"}.get(row.ok) if row.ok is not None else None  # type: ignore[call-overload]
        mark = f"[{style}]{verdict(row.ok)}[/{style}]" if style else ""
        table.add_row(row.section if row.section != last else "", row.name, row.value, row.versus, row.target, mark)
        last = row.section
    console = Console(width=max(shutil.get_terminal_size((160, 20)).columns, 150))
    console.print(table)
    for note in results.notes:
        console.print(f"- {note}", highlight=False, markup=False)


def markdown(results: Results, header: list[str]) -> str:
    lines = [*header, "", "| # | measurement | value | vs | target | |", "| --- | --- | --- | --- | --- | --- |"]
    for row in results.rows:
        cells = [row.section, row.name, row.value, row.versus, row.target, verdict(row.ok)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if results.notes:
        lines += ["", *[f"- {n}" for n in results.notes]]
    return "\n".join(lines) + "\n"


# ----- machine and load ------------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    import celery

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    server_v = next((w.split("=", 1)[1] for w in server if w.startswith("v=")), "?")
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "celery": celery.__version__,
        "redis-server": server_v,
        "redis-py": redis.__version__,
        "os": platform.platform(),
    }


def busy_jiffies() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / hz, sum(fields[:8]) / hz


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every few seconds while the benchmark runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(3.0):
            self.samples.append(os.getloadavg()[0])


@contextmanager
def step(name: str) -> Iterator[None]:
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    yield
    print(f"[bench] {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


# ----- what measurements share -----------------------------------------------------------------------------------


def median_wall(bench: Bench, args: list[str], name: str, env: dict[str, str] | None = None) -> float:
    """Median wall time of `sentq ARGS` over sizes.repeats runs, after one run to warm up."""
    check(bench.sentq(args, env=env, name=name), f"sentq {args[0]}")  # warm-up (page cache, .pyc)
    return statistics.median(
        check(bench.sentq(args, env=env, name=name), f"sentq {args[0]}").wall_s for _ in range(bench.sizes.repeats)
    )


@per_bench
def sentq_tasks(bench: Bench) -> ModuleType:
    """sentq's Celery tasks (sentq.worker) pointed at the bench's Redis, for .delay() from this process; warmed up by
    one round trip through the sentq worker."""
    from sentq import worker as sentq_worker
    from sentq.settings import Settings

    sentq_worker.configure(Settings.from_env({"SENTQ_BROKER_URL": bench.url, "SENTQ_DATA_DIR": str(DATA)}))
    sentq_worker.batch_score.delay(["warm up"]).get(timeout=30)
    return sentq_worker


@per_bench
def noop_apps(bench: Bench) -> ModuleType:
    """bench/noop_app.py (a bare Celery no-op and the same with task events) pointed at the bench's Redis."""
    import noop_app  # bench/noop_app.py, with BENCH_BROKER_URL taken from the environment at import

    noop_app.app.conf.update(broker_url=bench.url, result_backend=bench.url)
    noop_app.events_app.conf.update(broker_url=bench.url, result_backend=bench.url)
    return noop_app


# ----- running ---------------------------------------------------------------------------------------------------

Measure = Callable[[Bench, Results], None]


def start(bench: Bench, results: Results, *, noop_workers: bool = True) -> None:
    """Make the input (described in the notes), then start the bench's Redis and workers."""
    with step("input"):
        results.notes.append(inputs(bench).note)
    with step("redis + workers (the first trains model v1)"):
        bench.start_redis()
        bench.start_workers(noop=noop_workers)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_session(sizes: Sizes, body: Measure) -> tuple[Results, float] | None:
    """Run ``body`` against a fresh bench and stop everything it started, also on Ctrl-C or SIGTERM (then None);
    returns its results, with a note on the machine's load during the run appended, and the wall time."""
    # Ctrl-C and SIGTERM both end in the finally below, which stops everything this run started.
    signal.signal(signal.SIGTERM, _interrupt)
    load_before = os.getloadavg()
    busy0, total0 = busy_jiffies()
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    sampler = LoadSampler()
    sampler.start()
    started = time.perf_counter()
    results = Results()
    tmp = Path(tempfile.mkdtemp(prefix="sentq-bench-"))
    bench = Bench(sizes, tmp)
    ok = False
    try:
        body(bench, results)
        ok = True
    except KeyboardInterrupt:
        print("[bench] interrupted; stopping what it started", file=sys.stderr)
    finally:
        bench.procs.stop_all()
        bench.client.close()
        shutil.rmtree(tmp, ignore_errors=True)
        sampler.stopped.set()
    if not ok:
        return None
    wall = time.perf_counter() - started
    busy1, total1 = busy_jiffies()
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = (self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime) + kids.ru_utime + kids.ru_stime
    ncpu = os.cpu_count() or 1
    others = max(busy1 - busy0 - ours, 0.0)
    samples = sampler.samples or [0.0]
    load = (
        f"load average before start {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f} (1/5/15 min); "
        f"1-min during the run: mean {statistics.mean(samples):.2f}, max {max(samples):.2f}"
        f" (includes this benchmark's own processes); CPU used by other processes during the run: "
        f"{others:.0f} s of {wall * ncpu:.0f} available ({others / (wall * ncpu):.0%}); "
        f"machine busy {(busy1 - busy0) / (total1 - total0):.0%}"
    )
    results.notes.append(load)
    return results, wall


def arguments(doc: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes (under a minute)")
    return parser


def measure_alone(doc: str | None, *measures: Measure, noop_workers: bool = True) -> int:
    """The main of a measurement module run on its own: its own input, Redis and workers (the no-op ones only with
    ``noop_workers``), then only ``measures``; prints their rows as a table. Nothing it started outlives it."""
    args = arguments(doc).parse_args()

    def body(bench: Bench, results: Results) -> None:
        start(bench, results, noop_workers=noop_workers)
        for measure in measures:
            measure(bench, results)

    done = run_session(QUICK if args.quick else FULL, body)
    if done is None:
        return 130
    results, wall = done
    print_table(results, f"sentq bench: {Path(sys.argv[0]).name} ({'quick' if args.quick else 'full'}), {wall:.0f} s")
    return 0


# ----- the standalone measurements (bench/costs.py, bench/hosts.py): their own server, their lines appended ------


def sentq_env(url: str) -> dict[str, str]:
    """A sentq command's environment aimed at ``url`` (one BLAS thread, the repo's data; compiled bytecode allowed)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SENTQ_") and k != "PYTHONDONTWRITEBYTECODE"}
    return {**base, **ONE_THREAD, "SENTQ_BROKER_URL": url, "SENTQ_DATA_DIR": str(DATA), "PYTHONUNBUFFERED": "1"}


def report(lines: list[str], title: str, append: Path | None) -> None:
    """Print a standalone measurement's lines, and append them under ``title`` to the results file if asked."""
    print("\n".join(lines))
    if append is not None:
        with open(append, "a") as f:
            f.write(f"\n## {title}\n\n" + "\n".join(lines) + "\n")
