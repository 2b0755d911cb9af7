"""Request and response bodies, as pydantic models so /openapi.json documents them (and schemathesis checks them)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field

from sentq.control import DeadWorker, WorkerInfo


def raw_body(media_types: Iterable[str], *, required: bool) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its body as a stream (no pydantic model): bytes of these types."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": required, "content": dict.fromkeys(media_types, binary)}}


class TaskId(BaseModel):
    task_id: str = Field(description="Poll GET /result/{task_id} with it.")


class Row(BaseModel):
    text: str
    score: float = Field(description="P(positive), 4 decimals.")
    label: Literal["positive", "negative"]


class BatchResult(BaseModel):
    ready: bool
    result: list[Row] | None
    error: str | None = Field(default=None, description="Only when the task failed on the worker.")


class LedgerView(BaseModel):
    pending: int = Field(description="Chunks sent and not yet done or failed.")
    leased: dict[str, str] = Field(description="Chunk index -> the worker scoring it now.")


class Job(BaseModel):
    """A job's record, as `sentq status JOB --json` prints it."""

    id: str
    state: Literal["staging", "queued", "running", "done", "failed", "cancelled", "invalid"]
    source: str
    format: str
    created: float
    model: str
    model_version: str
    chunk_size: int
    total_chunks: int | None
    total_texts: int | None
    blank_lines: int
    chunks_done: int
    chunks_failed: int
    texts_done: int
    texts_failed: int
    queue: str
    compute_s: float
    wait_s: float
    first_started: float | None
    heartbeat: float | None
    finished_at: float | None
    error: str
    texts_per_s: float = Field(description="Texts scored per second since the job was submitted (its summary).")
    recent_texts_per_s: float = Field(
        description="Texts scored per second over the job's recent scoring (about the last 30 s); 0 when none lately."
    )
    eta_s: float | None = Field(description="Seconds to go at the recent rate; null when unknown or nothing is scored.")
    waiting_for_worker: bool = Field(description="Queued or running with nothing of it scored lately: no live worker.")
    duration_s: float | None = Field(description="A finished job's time from submission to its end.")


class JobDetail(Job):
    failures: dict[str, str] = Field(description="Failed chunk index -> why.")
    failed_lines: dict[str, str] = Field(description="Input line that failed alone -> why (left out of the rows).")
    ledger: LedgerView


class JobPage(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last one. A request examines at most 1,000 jobs, "
        "so a page filtered by state may be short, or empty, and still have a next_cursor."
    )


class Retried(BaseModel):
    job: Job
    chunks: list[int] = Field(description="The failed chunks queued again.")


class ModelVersion(BaseModel):
    version: int
    ref: str
    current: bool
    created: float
    source: str
    n_train: int
    n_test: int
    accuracy: float
    vocab_size: int
    sha256: str
    size_bytes: int


class ModelList(BaseModel):
    current: int | None
    versions: list[ModelVersion]


class ModelSwitched(BaseModel):
    current: ModelVersion
    previous: int | None


class RetrainQueued(BaseModel):
    task_id: str
    queue: str


class Workers(BaseModel):
    """`sentq workers --json`: the control module's own dataclasses, so the two faces cannot drift apart."""

    workers: list[WorkerInfo]
    dead: list[DeadWorker] = Field(description="Found dead holding chunks lately (those were re-sent).")
    queues: dict[str, int] = Field(description="Messages waiting per queue.")


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    redis: str
    broker: str


class QueuedJob(BaseModel):
    id: str
    state: str = Field(description='The job\'s state, or "forgotten" when its record is gone.')
    source: str
    messages: int = Field(description="Its messages in the queue (among those read).")
    oldest_s: float | None = Field(description="Age of its oldest message, seconds.")
    drainable: bool = Field(description="Not running: POST /v1/queues/{queue}/drain may remove its messages.")


class QueueInfo(BaseModel):
    name: str
    length: int = Field(description="Messages waiting in the broker.")
    chunks_waiting: int = Field(description="Chunks of unfinished jobs sent and not yet taken (by the ledger).")
    oldest_waiting_s: float = Field(description="How long the oldest of those has waited; 0 when none waits.")
    unfinished_jobs: int
    leftovers: int = Field(description="Messages that carry no waiting chunk of an unfinished job.")
    readable: bool = Field(description="A Redis broker: its messages were read by job (RabbitMQ: depth only).")
    looked_at: int = Field(description="Messages read, the oldest first.")
    jobs: list[QueuedJob]
    other_messages: int = Field(description="Messages of other tasks (retrains, batch scoring).")


class Queues(BaseModel):
    queues: list[QueueInfo]


class Drained(BaseModel):
    queue: str
    messages: int = Field(description="Messages removed.")
    jobs: int = Field(description="Stopped jobs whose messages were removed.")
    more: bool = Field(description="The queue is longer than one drain reads: drain again for the rest.")


class WorkerShutdown(BaseModel):
    worker: WorkerInfo = Field(description="The worker asked, as it was when asked.")
    asked: bool
