"""Rich rendering for the CLI: tables of jobs and workers, and progress while waiting."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sentq.follow import Progress as JobProgress
from sentq.jobs import JobRecord, JobState

STATE_STYLE = {
    JobState.DONE: "green",
    JobState.FAILED: "red",
    JobState.INVALID: "red",
    JobState.CANCELLED: "yellow",
    JobState.RUNNING: "cyan",
    JobState.QUEUED: "cyan",
    JobState.STAGING: "cyan",
}


def when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def percent(record: JobRecord) -> str:
    if not record.total_texts:
        return "-" if record.total_texts is None else "100%"
    return f"{100 * record.texts_done // record.total_texts}%"  # floor: 100% only when all are done


def print_jobs(console: Console, records: list[JobRecord]) -> None:
    if not records:
        console.print("no jobs yet; submit one with `sentq submit FILE`")
        return
    table = Table(title="recent jobs")
    for col in ("job", "created", "source", "texts", "done", "state", "model"):
        table.add_column(col, justify="right" if col in ("texts", "done") else "left")
    for r in records:
        style = STATE_STYLE.get(r.state, "")
        texts = f"{r.total_texts:,}" if r.total_texts is not None else "…"
        table.add_row(
            r.id, when(r.created), r.source, texts, percent(r), f"[{style}]{r.state.value}[/]", r.model_version
        )
    console.print(table)


def print_job(console: Console, record: JobRecord, failures: dict[int, str]) -> None:
    r = record
    style = STATE_STYLE.get(r.state, "")
    total = f"{r.total_chunks:,}" if r.total_chunks is not None else "… (still reading)"
    lines = [
        f"job        {r.id}   [{style}]{r.state.value}[/]",
        f"source     {r.source} ({r.format}), created {when(r.created)}",
        f"model      {r.model_version}",
        f"texts      {r.texts_done:,} of {r.total_texts:,} scored ({percent(r)}), {r.blank_lines:,} blank lines skipped"
        if r.total_texts is not None
        else f"texts      {r.texts_done:,} scored so far",
        f"chunks     {r.chunks_done:,} done, {r.chunks_failed:,} failed, {total} in all (size {r.chunk_size:,})",
        f"speed      {r.texts_per_s:,.0f} texts/s, ETA {duration(r.eta_s)}",
    ]
    if r.chunks_done:
        lines.append(
            f"per chunk  {1000 * r.wait_s / r.chunks_done:,.0f} ms queue wait, "
            f"{1000 * r.compute_s / r.chunks_done:,.0f} ms compute (mean)"
        )
    if r.finished_at:
        lines.append(f"finished   {when(r.finished_at)}")
    if r.orphaned:
        lines.append(
            "[red]stalled[/]    the submitting process stopped sending the input (killed?); "
            "this job cannot finish: submit the input again"
        )
    if r.error:
        lines.append(f"[red]error[/]      {r.error}")
    for index, error in sorted(failures.items())[:20]:
        lines.append(f"[red]chunk {index}[/]  {error}")
    if len(failures) > 20:
        lines.append(f"… and {len(failures) - 20} more failed chunks (`sentq status {r.id} --json`)")
    if failures and r.state.finished:
        lines.append(f"re-run the failed chunks with `sentq retry {r.id}`")
    console.print("\n".join(lines))


class ProgressView:
    """A Rich progress bar on a terminal, plain periodic lines otherwise (both on stderr)."""

    def __init__(self, console: Console, job_id: str, *, every_s: float = 5.0) -> None:
        self.console = console
        self.job_id = job_id
        self.every_s = every_s
        self.last = 0.0
        self.said_finished = False
        self.bar: Progress | None = None
        self.task: Any = None
        if console.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("texts  {task.fields[rate]}  ETA {task.fields[eta]}"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task(job_id, total=None, rate="-", eta="-")

    def update(self, p: JobProgress) -> None:
        r = p.record
        rate = f"{r.texts_per_s:,.0f}/s"
        if self.bar is not None:
            self.bar.update(self.task, completed=r.texts_done, total=r.total_texts, rate=rate, eta=duration(r.eta_s))
            return
        now = time.monotonic()
        if not self.said_finished and (now - self.last >= self.every_s or r.state.finished):
            self.last = now
            self.said_finished = r.state.finished
            total = f"{r.total_texts:,}" if r.total_texts is not None else "?"
            self.console.print(
                f"job {self.job_id}: {r.state.value}, {r.texts_done:,}/{total} texts ({percent(r)}), "
                f"{rate}, ETA {duration(r.eta_s)}"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def print_workers(console: Console, found: list[Any], depths: dict[str, int]) -> None:
    if not found:
        console.print("[yellow]no worker answered[/yellow]; start one with `sentq worker`")
    else:
        table = Table(title="live workers")
        for col in ("worker", "processes", "busy", "tasks done", "model", "last task"):
            table.add_column(col)
        for w in found:
            table.add_row(w.name, str(w.concurrency), str(w.active), f"{w.tasks_done:,}", w.model, when(w.last_task_at))
        console.print(table)
    console.print("queued: " + ", ".join(f"{q} {n:,}" for q, n in depths.items()))
