"""Styles the workers can serve, read from the registry on disk (no torch)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import ClientDep, RedisDep, RegistryDep
from service.api.errors import ApiError
from service.api.schemas import ERROR_RESPONSES, StyleList, StyleOut
from service.api.style_policy import DELETED
from service.platform.auth import Principal
from service.platform.contract import StyleState
from service.platform.redis_keys import style_curve_key, style_progress_key

router = APIRouter(prefix="/v1", tags=["styles"], responses=ERROR_RESPONSES)


def visible(status: str, principal: Principal, include_deleted: bool = False) -> bool:
    """Clients see the styles they can use (ready); operators every style but deleted ones, unless asked."""
    if not principal.is_operator:
        return status == StyleState.READY
    return include_deleted or status not in DELETED


@router.get("/styles", response_model=StyleList)
def list_styles(
    principal: ClientDep,
    registry: RegistryDep,
    include_deleted: Annotated[
        bool, Query(description="operators: also list retired and canceled styles (clients see ready styles only)")
    ] = False,
) -> StyleList:
    """Clients see the styles they can use (ready); operators see every style, training ones included."""
    styles = [s for s in registry.styles() if visible(s.status, principal, include_deleted)]
    return StyleList(styles=[_out(s, principal, registry) for s in styles])


@router.get("/styles/{style_id}", response_model=StyleOut)
def get_style(style_id: str, principal: ClientDep, registry: RegistryDep, redis: RedisDep) -> StyleOut:
    """A style; while it trains, `training` has the step, losses, score curve and ETA (operators).
    A deleted (retired or canceled) style is 404."""
    info = registry.style(style_id)
    if info is None or not visible(info.status, principal):
        raise ApiError(404, "unknown_style", f"no style {style_id!r}")
    out = _out(info, principal, registry)
    if info.status in (StyleState.PENDING, StyleState.TRAINING):
        live = {k.decode(): v.decode() for k, v in redis.hgetall(style_progress_key(style_id)).items()}
        if live:
            curve = [json.loads(x) for x in redis.lrange(style_curve_key(style_id), 0, -1)]
            out.training = {
                "stage": live.get("stage", "training"),  # loading, aligning exemplars, training
                "stage_done": int(live.get("stage_done", 0)),
                "stage_total": int(live.get("stage_total", 0)),
                "step": int(live.get("step", 0)),
                "max_steps": int(live["max_steps"]) if "max_steps" in live else None,
                "eta_s": float(live["eta_s"]) if "eta_s" in live else None,
                "losses": json.loads(live.get("losses", "{}")),
                "best_score": float(live["best_score"]) if live.get("best_score") else None,
                "preview_step": int(live["preview_step"]) if "preview_step" in live else None,
                "curve": curve,
            }
            if "preview_step" in live and principal.is_operator:  # drawn on the training host (on the store)
                out.preview = f"/v1/styles/{info.id}/preview"
    return out


def _out(info, principal: Principal, registry) -> StyleOut:
    """A style as the API shows it; operators also get its preview's URL once the file exists."""
    out = StyleOut(**info.public())
    if principal.is_operator and registry.preview_path(info.id).is_file():
        out.preview = f"/v1/styles/{info.id}/preview"
    return out
