"""Oxen's model object (oxen-api.md, "Added later: image inputs, model schema and pricing"):
its `json_request_schema` and its `pricing`, read into dropreel's own types. No I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from dropreel.errors import MalformedAnswer
from dropreel.providers.base import ModelFacts, Pricing
from dropreel.validation.schema import FieldRule, RequestSchema, from_json_schema

# The one pricing method whose figures make a per-second estimate; others are unknown.
PER_SECOND = "per_video_output_second"

# What the queue itself takes besides the model's own fields (oxen-api.md, POST /queue).
QUEUE_FIELDS = {
    "model": FieldRule(frozenset({"string"})),
    "num_generations": FieldRule(frozenset({"integer"}), minimum=1, maximum=4),
    "target_namespace": FieldRule(frozenset({"string"})),
}

# What only a model object carries: an answer with neither may be a wrapper.
_MODEL_FIELDS = ("json_request_schema", "pricing")


def model_facts(model: str, payload: object, what: str) -> ModelFacts:
    """The request schema and the price in a `GET /api/ai/models/{model}` answer."""
    found = model_object(payload)
    if found is None:
        raise MalformedAnswer(f"{what}: expected a model object")
    return ModelFacts(_schema_in(model, found), _pricing_in(found, what))


def model_object(payload: object) -> Mapping[str, Any] | None:
    """The model object in an answer: bare, or wrapped as {"model": {...}}, {"data": {...}} or
    {"model": {"data": {...}}}; None if the answer is not an object, or wraps something else."""
    if not isinstance(payload, Mapping):
        return None
    if any(k in payload for k in _MODEL_FIELDS):
        return payload
    inner = payload.get("model", payload.get("data"))
    if inner is None:
        return payload  # a model object that publishes neither
    if isinstance(inner, Mapping) and not any(k in inner for k in _MODEL_FIELDS):
        data = inner.get("data")
        inner = data if isinstance(data, Mapping) else inner
    return inner if isinstance(inner, Mapping) else None


def model_schema(model: str, payload: object) -> RequestSchema | None:
    """The request schema in a model object (`json_request_schema`), with the queue's fields."""
    found = model_object(payload)
    return _schema_in(model, found) if found is not None else None


def _schema_in(model: str, found: Mapping[str, Any]) -> RequestSchema | None:
    schema = from_json_schema(model, found.get("json_request_schema"))
    return schema.with_fields(QUEUE_FIELDS) if schema is not None else None


def parse_pricing(payload: object, what: str) -> Pricing | None:
    """The price in a `GET /api/ai/models/{model}` answer; None if it gives none we can use.

    Raises MalformedAnswer if the pricing is there but its figures are not usable numbers.
    """
    found = model_object(payload)
    if found is None:
        raise MalformedAnswer(f"{what}: expected a model object")
    return _pricing_in(found, what)


def _pricing_in(found: Mapping[str, Any], what: str) -> Pricing | None:
    # `method`, e.g. per_video_output_second, with cost_per_second and
    # cost_per_second_high_res (oxen-api.md); no method given is taken as that one.
    pricing = found.get("pricing")
    if not isinstance(pricing, Mapping):
        return None
    method = pricing.get("method", PER_SECOND)
    if not isinstance(method, str) or method.strip().lower() != PER_SECOND:
        return None
    per_second = _rate(pricing.get("cost_per_second"), what, "cost_per_second")
    if per_second is None:
        return None
    high = _rate(pricing.get("cost_per_second_high_res"), what, "cost_per_second_high_res")
    return Pricing(per_second, high, _default_seconds(found.get("json_request_schema")))


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
