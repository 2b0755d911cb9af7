"""The model registry over HTTP: list versions, switch the current one, queue a retrain (`sentq model ...`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from sentq import lifecycle
from sentq.settings import Settings
from sentq.web.auth import can_read, can_write, settings_of
from sentq.web.schemas import ModelList, ModelSwitched, RetrainQueued

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


@router.post("/retrain", status_code=202, response_model=RetrainQueued, dependencies=[Depends(can_write)])
def retrain(
    settings: SettingsDep,
    force: Annotated[bool, Query(description="Make it current even if it is less accurate.")] = False,
) -> dict[str, Any]:
    """Queue a retrain on the default data; the new version appears in GET /v1/models when a worker is done."""
    return {"task_id": lifecycle.submit_retrain(settings, data=None, force=force), "queue": settings.retrain_queue}
