"""The model registry over HTTP: list versions, switch the current one, queue a retrain (`sentq model ...`)."""

from __future__ import annotations

import tempfile
from pathlib import Path as FilePath
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request

from sentq import lifecycle
from sentq.errors import PayloadTooLargeError, UnsupportedFormatError
from sentq.settings import Settings
from sentq.web.auth import can_read, can_write, settings_of
from sentq.web.schemas import ModelList, ModelSwitched, RetrainQueued, raw_body

router = APIRouter(prefix="/v1", tags=["models"])
SettingsDep = Annotated[Settings, Depends(settings_of)]
VERSION = r"^[vV]?0*[1-9][0-9]{0,8}$"


@router.get("/models", response_model=ModelList, dependencies=[Depends(can_read)])
def models(settings: SettingsDep) -> dict[str, Any]:
    """Every model version, oldest first, and which is current."""
    found, current = lifecycle.versions(settings)
    return {"current": current, "versions": [lifecycle.version_dict(v, current) for v in found]}


@router.post("/models/{version}/use", response_model=ModelSwitched, dependencies=[Depends(can_write)])
def use(
    version: Annotated[str, Path(pattern=VERSION, description="e.g. 3 or v3")], settings: SettingsDep
) -> dict[str, Any]:
    """Make a version current (its artifact is verified first); new work uses it from its next task."""
    meta, before = lifecycle.use(settings, version)
    return {"current": lifecycle.version_dict(meta, meta.version), "previous": before}


LABELLED = {"text/csv": ".csv", "application/x-ndjson": ".jsonl", "application/jsonl": ".jsonl"}


@router.post(
    "/retrain",
    status_code=202,
    response_model=RetrainQueued,
    dependencies=[Depends(can_write)],
    openapi_extra=raw_body(LABELLED, required=False),
)
async def retrain(
    request: Request,
    settings: SettingsDep,
    force: Annotated[bool, Query(description="Make it current even if it is less accurate.")] = False,
    name: Annotated[str, Query(pattern=r"^[A-Za-z0-9_.-]{1,100}$", description="The data's name")] = "upload",
) -> dict[str, Any]:
    """Queue a retrain (`sentq retrain`): on the default data, or on a labelled CSV (`text,label` header) or JSONL
    body (`sentq retrain --data FILE`), checked here first. The new version appears in GET /v1/models when done."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    with tempfile.TemporaryDirectory(prefix="sentq-retrain-") as tmp:
        path = FilePath(tmp) / (name.rsplit(".", 1)[0] + LABELLED.get(media, ".data"))
        size = 0
        with open(path, "wb") as spool:  # labelled data is small next to inputs: spooled to disk, read whole
            async for piece in request.stream():
                size += len(piece)
                if size > settings.retrain_max_bytes:  # BodyLimit counts it first; this holds without it too
                    raise PayloadTooLargeError(
                        f"{path.name}: the labelled data is larger than {settings.retrain_max_bytes:,} bytes "
                        "(SENTQ_RETRAIN_MAX_BYTES); train on less data, or raise the limit"
                    )
                spool.write(piece)
        if size and media not in LABELLED:
            raise UnsupportedFormatError(
                f"Content-Type {media or '(none)'!r} is not labelled data; send text/csv (a text,label header) or "
                'application/x-ndjson ({"text": ..., "label": ...} per line)'
            )
        data = path if size else None
        task_id = await anyio.to_thread.run_sync(lambda: lifecycle.submit_retrain(settings, data=data, force=force))
    return {"task_id": task_id, "queue": settings.retrain_queue}
