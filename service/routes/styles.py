"""Styles the workers can serve, read from the registry on disk (no torch)."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import ClientDep, RegistryDep
from service.errors import ApiError
from service.schemas import StyleList, StyleOut

router = APIRouter(prefix="/v1", tags=["styles"])


@router.get("/styles", response_model=StyleList)
def list_styles(_: ClientDep, registry: RegistryDep) -> StyleList:
    return StyleList(styles=[StyleOut(**s.public()) for s in registry.styles()])


@router.get("/styles/{style_id}", response_model=StyleOut)
def get_style(style_id: str, _: ClientDep, registry: RegistryDep) -> StyleOut:
    info = registry.style(style_id)
    if info is None:
        raise ApiError(404, "unknown_style", f"no style {style_id!r}")
    return StyleOut(**info.public())
