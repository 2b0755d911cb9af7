"""Rich rendering for the CLI: tables of jobs and workers, and progress while waiting."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from sentq.jobs import JobRecord, JobState
from sentq.ledger import Failure, Ledger

# Tables and progress bars are imported where they are drawn: `sentq status JOB` prints plain lines.
if TYPE_CHECKING:
    from rich.progress import Progress

    from sentq.follow import Progress as JobProgress

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


def eta(record: JobRecord) -> str:
    """The ETA as the operator reads it: at the recent pace, or why there is none."""
    if record.waiting_for_worker:
        return "waiting for a worker"
    return duration(record.eta_s)


def pace(record: JobRecord, waiting: bool | None = None) -> str:
    """The recent pace and the ETA, or that the job waits for a worker (``waiting`` as control.waiting found it)."""
    if record.waiting_for_worker if waiting is None else waiting:
        return "waiting for a worker: nothing of it scored lately"
    return f"{record.recent_texts_per_s:,.0f} texts/s lately, ETA {duration(record.eta_s)}"


def print_jobs(console: Console, records: list[JobRecord]) -> None:
    from rich.table import Table

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


def print_job(
    console: Console,
    record: JobRecord,
    failures: dict[int, Failure],
    where: Ledger | None = None,
    *,
    waiting: bool | None = None,
) -> None:
    r = record
    style = STATE_STYLE.get(r.state, "")
    if r.total_chunks is not None:
        total = f"{r.total_chunks:,}"
    else:  # a job that ended before its input was all read never will be: it is not "still reading"
        total = f"… ({'reading stopped' if r.state.finished else 'still reading'})"
    lines = [
        f"job        {r.id}   [{style}]{r.state.value}[/]",
        f"source     {r.source} ({r.format}), created {when(r.created)}",
        f"model      {r.model_version}",
        f"texts      {r.texts_done:,} of {r.total_texts:,} scored ({percent(r)}), {r.blank_lines:,} blank lines skipped"
        if r.total_texts is not None
        else f"texts      {r.texts_done:,} scored so far",
        f"chunks     {r.chunks_done:,} done, {r.chunks_failed:,} failed, {total} in all (size {r.chunk_size:,})",
        f"speed      {r.texts_per_s:,.0f} texts/s since submission"
        + ("" if r.state.finished else f", {pace(r, waiting)}"),
    ]
    if where is not None and not r.state.finished:
        holders = sorted(set(where.leased.values()))
        shown = ", ".join(h.rsplit("/", 1)[0] for h in holders[:3]) + (" …" if len(holders) > 3 else "")
        lines.append(
            f"in flight  {len(where.leased):,} chunks being scored"
            + (f" (by {shown})" if holders else "")
            + f", {where.pending:,} waiting in queue {r.queue or '?'}"
            + (f"; chunks {where.probing} probed piece by piece (they killed their process)" if where.probing else "")
        )
    if r.texts_failed:
        texts = f"{r.texts_failed:,} text" + ("" if r.texts_failed == 1 else "s")
        lines.append(f"[red]failed[/]     {texts} failed alone: left out of the rows (listed below)")
    if r.chunks_done:
        lines.append(
            f"per chunk  {1000 * r.wait_s / r.chunks_done:,.0f} ms queue wait, "
            f"{1000 * r.compute_s / r.chunks_done:,.0f} ms compute (mean)"
        )
    if r.finished_at:
        lines.append(f"finished   {when(r.finished_at)}, {duration(r.duration_s)} after submission")
    if r.orphaned:
        lines.append(
            "[red]stalled[/]    the submitting process stopped sending the input (killed?); "
            "this job cannot finish: submit the input again"
        )
    if r.error:
        lines.append(f"[red]error[/]      {r.error}")
    for index, failure in sorted(failures.items())[:20]:
        lines.append(f"[red]chunk {index}[/]  {escape(failure.error)}")
        for line, why in sorted(failure.lines.items())[:10]:
            lines.append(f"  [red]line {line}[/]  {escape(why)}")
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
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                # The counts as the summary writes them (50,000), from the record, not Rich's own m/n column.
                TextColumn("{task.fields[counts]} texts  {task.fields[rate]}  ETA {task.fields[eta]}"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task(job_id, total=None, counts="0/?", rate="-", eta="-")

    def update(self, p: JobProgress) -> None:
        r = p.record
        rate = f"{r.texts_per_s:,.0f}/s"
        if self.bar is not None:
            total = f"{r.total_texts:,}" if r.total_texts is not None else "?"
            self.bar.update(
                self.task,
                completed=r.texts_done,
                total=r.total_texts,
                counts=f"{r.texts_done:,}/{total}",
                rate=rate,
                eta="-" if r.state.finished else eta(r),
            )
            return
        now = time.monotonic()
        if not self.said_finished and (now - self.last >= self.every_s or r.state.finished):
            self.last = now
            self.said_finished = r.state.finished
            total = f"{r.total_texts:,}" if r.total_texts is not None else "?"
            self.console.print(
                f"job {self.job_id}: {r.state.value}, {r.texts_done:,}/{total} texts ({percent(r)}), "
                f"{rate}" + ("" if r.state.finished else f", ETA {eta(r)}")
            )

    def say(self, message: str) -> None:
        """A line above the bar (or among the plain lines)."""
        self.console.print(message, soft_wrap=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def print_workers(console: Console, found: list[Any], dead: list[Any], depths: dict[str, int]) -> None:
    from rich.table import Table

    if not found:
        console.print("[yellow]no live worker[/yellow] (no heartbeat in the last 10 s); start one with `sentq worker`")
    else:
        table = Table(title="live workers")
        for col in ("worker", "host", "processes", "busy", "queues", "tasks done", "model", "last task", "beat"):
            table.add_column(col)
        for w in found:
            table.add_row(
                escape(w.name),
                escape(w.host),
                str(w.concurrency),
                str(w.busy),
                escape(",".join(w.queues)),
                f"{w.tasks_done:,}",
                w.model,
                when(w.last_task_at),
                f"{w.beat_age_s:.0f}s ago",
            )
        console.print(table)
    if dead:
        table = Table(title="dead workers, last hour (the chunks they held were re-sent)")
        for col in ("worker", "found dead", "chunks it held"):
            table.add_column(col)
        for d in dead:
            shown = ", ".join(d.chunks[:5]) + (f" … ({len(d.chunks)})" if len(d.chunks) > 5 else "")
            table.add_row(escape(d.name), when(d.found_at), escape(shown))
        console.print(table)
    console.print("queued: " + ", ".join(f"{escape(q)} {n:,}" for q, n in depths.items()))
