"""The `edits` of a stylize request, checked against the registry before anything is queued.

Form field `edits`: a JSON object of direction → alpha, where a direction is a registry direction
set's id (its first direction) or `id:INDEX`, and the value is a number or
`{"alpha": number, "layers": "A-B"}` (layers: w+ indices, "all", "4" or "0-3,8"; default the set's
recommended ones). Example: `{"smile": 1.5, "sefa:3": -2, "age": {"alpha": 2, "layers": "0-7"}}`.

Each refusal is a 422 with its own code: `invalid_edits` (not that shape), `unknown_direction`,
`direction_mismatch` (the set lives in another w space than the style's encoder), `edit_out_of_range`
(an alpha outside the set's range, or an index past its size) and `invalid_edit_layers`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from service.api.errors import ApiError
from service.platform.contract import STYLE_ID, EditSpec
from service.platform.registry import Registry, StyleInfo
from service.portrait.configs import n_latent
from service.portrait.index_spec import parse_indices

MAX_EDITS = 8
MAX_LAYERS = n_latent(1024)  # w+ layers of the largest generator, for a style whose resolution is unknown


def parse_edits(raw: str | None, registry: Registry, style: StyleInfo) -> list[EditSpec]:
    """The request's edits, resolved and checked (see the module docs); [] when none."""
    if raw is None or not raw.strip():
        return []
    try:
        given = json.loads(raw)
    except RecursionError:
        raise ApiError(422, "invalid_edits", "edits: nested too deeply") from None
    except ValueError as e:
        raise ApiError(422, "invalid_edits", f"edits: not JSON ({e})") from None
    if not isinstance(given, dict):
        raise ApiError(422, "invalid_edits", 'edits: expected a JSON object such as {"smile": 1.5}')
    if len(given) > MAX_EDITS:
        raise ApiError(422, "invalid_edits", f"edits: at most {MAX_EDITS}")
    layers_max = n_latent(style.resolution) if style.resolution else None
    w_space = registry.w_space(style.encoder) if given else None
    return [_one(key, value, registry, style, w_space, layers_max) for key, value in given.items()]


def _one(
    key: str, value: Any, registry: Registry, style: StyleInfo, w_space: str | None, layers_max: int | None
) -> EditSpec:
    name, _, index_text = key.partition(":")
    if not STYLE_ID.fullmatch(name) or (index_text and not index_text.isdigit()):
        raise ApiError(422, "invalid_edits", f"edits: {key!r} is not a direction id or id:INDEX")
    index = int(index_text or 0)
    if isinstance(value, dict):
        alpha, layers_text = value.get("alpha"), value.get("layers")
        if set(value) - {"alpha", "layers"}:
            raise ApiError(422, "invalid_edits", f"edits[{key!r}]: only 'alpha' and 'layers' may be given")
    else:
        alpha, layers_text = value, None
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha):
        raise ApiError(422, "invalid_edits", f"edits[{key!r}]: alpha must be a finite number")
    meta = registry.direction(name)
    if meta is None:
        raise ApiError(422, "unknown_direction", f"no direction {name!r}; GET /v1/directions lists them")
    if w_space is None or meta.get("w_space") != w_space:
        raise ApiError(
            422,
            "direction_mismatch",
            f"direction {name!r} lives in the w space of another base ({meta.get('w_space')}) than style "
            f"{style.id!r} ({w_space}): fit or factorise it for that style's base generator",
        )
    if index >= int(meta.get("count", 1)):
        raise ApiError(422, "edit_out_of_range", f"direction {name!r} has {meta.get('count')} entries; no {index}")
    low, high = meta.get("alpha_range", (-5.0, 5.0))
    if not low <= alpha <= high:
        raise ApiError(422, "edit_out_of_range", f"edits[{key!r}]: alpha {alpha} is outside [{low}, {high}]")
    layers = _layers(key, layers_text, layers_max)
    return EditSpec(direction=name, index=index, alpha=float(alpha), layers=layers)


def _layers(key: str, text: Any, layers_max: int | None) -> list[int] | None:
    """ "A-B,C" → sorted w+ indices below `layers_max`; None / "all" → None (the set's default). The
    parse is bounded by the index range, not by the text (service/portrait/index_spec.py)."""
    if text is None or text == "all":
        return None
    limit = layers_max or MAX_LAYERS
    try:
        if not isinstance(text, str):
            raise ValueError("not a string")
        return parse_indices(text, limit)
    except ValueError as e:
        raise ApiError(
            422,
            "invalid_edit_layers",
            f"edits[{key!r}]: layers look like 'all', '4' or '0-3,8', w+ indices 0…{limit - 1} ({e})",
        ) from None
