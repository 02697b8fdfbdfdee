"""A model's price from Oxen's model object (oxen-api.md, model schema and pricing). No I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from dropreel.errors import MalformedAnswer
from dropreel.providers.base import Pricing

# The one pricing method whose figures make a per-second estimate; others are unknown.
PER_SECOND = "per_video_output_second"


def parse_pricing(payload: object, what: str) -> Pricing | None:
    """The price in a `GET /api/ai/models/{model}` answer; None if it gives none we can use.

    Raises MalformedAnswer if the pricing is there but its figures are not usable numbers.
    """
    model = payload.get("model", payload) if isinstance(payload, Mapping) else None
    if isinstance(model, Mapping) and isinstance(model.get("data"), Mapping):
        model = model["data"]
    if not isinstance(model, Mapping):
        raise MalformedAnswer(f"{what}: expected a model object")
    pricing = model.get("pricing")
    if not isinstance(pricing, Mapping) or pricing.get("method", PER_SECOND) != PER_SECOND:
        return None
    per_second = _rate(pricing.get("cost_per_second"), what, "cost_per_second")
    if per_second is None:
        return None
    high = _rate(pricing.get("cost_per_second_high_res"), what, "cost_per_second_high_res")
    return Pricing(per_second, high, _default_seconds(model.get("json_request_schema")))


def _rate(value: object, what: str, field: str) -> float | None:
    if value is None:
        return None
    number = _number(value)
    if number is None or number < 0:
        raise MalformedAnswer(f"{what}: pricing.{field} is not a price: {str(value)[:40]!r}")
    return number


def _number(value: object) -> float | None:
    """A finite number given as one or as a string ("0.30", "8")."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _default_seconds(schema: Any) -> float | None:
    """`seconds`' default in the model's request schema, where it has one."""
    if not isinstance(schema, Mapping):
        return None
    properties = schema.get("properties")
    field = properties.get("seconds") if isinstance(properties, Mapping) else None
    default = field.get("default") if isinstance(field, Mapping) else None
    seconds = _number(default)
    return seconds if seconds is not None and seconds > 0 else None
