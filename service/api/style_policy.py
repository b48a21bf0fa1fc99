"""What a job may ask of a style, shared by the routes that queue jobs: the style must be ready, its
strength controls bound structure and strength, deleted styles are gone, and outputs come in three
sizes. Refusals are ApiErrors with their codes."""

from __future__ import annotations

from service.api.errors import ApiError
from service.platform.contract import StyleState
from service.platform.registry import StyleInfo

SIZES = [256, 512, 1024]  # the side of an aligned result
DELETED = (StyleState.RETIRED, StyleState.CANCELED)  # what DELETE /v1/styles/{id} leaves: gone from the API


def ready_style(registry, style: str) -> StyleInfo:
    """The style a job asks for: 404 `unknown_style` unless it exists (and is not deleted), 409
    `style_not_ready` unless it is ready."""
    info = registry.style(style)
    if info is None or info.status in DELETED:
        raise ApiError(404, "unknown_style", f"no style {style!r}; GET /v1/styles lists them")
    if info.status != StyleState.READY:
        detail = (
            f" (its encoder {info.encoder!r} is not in the registry)"
            if info.status == StyleState.MISSING_ENCODER
            else ""
        )
        raise ApiError(409, "style_not_ready", f"style {style!r} is {info.status}{detail}")
    return info


def strength_controls(info: StyleInfo, structure: int | None, strength: float) -> tuple[int, float]:
    """(structure, quantised strength) for this style, or a 422 when it does not offer them."""
    controls = info.controls
    if controls is None:
        if structure or strength != 1.0:
            raise ApiError(
                422,
                "strength_unavailable",
                f"style {info.id!r} has no source generator to blend with (or is attribute-aware): "
                "structure must be 0 and strength 1",
            )
        return 0, 1.0
    top = controls["structure"]["max"]
    if structure is None:
        structure = controls["structure"]["default"]
    elif structure > top:
        raise ApiError(422, "structure_out_of_range", f"structure: at most {top} for this {info.resolution} px style")
    step = controls["strength"]["step"]
    return structure, round(round(strength / step) * step, 6)
