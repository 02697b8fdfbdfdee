"""dropreel's own picture of what a model accepts: its fields, their types, enums and ranges,
read from a JSON Schema as a provider publishes it. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# JSON Schema's type names, and the Python values each one admits.
JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")


@dataclass(frozen=True, slots=True)
class FieldRule:
    """What one request field may hold; an empty `types` admits any value."""

    types: frozenset[str] = frozenset()
    enum: tuple[object, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True, slots=True)
class RequestSchema:
    """The fields a model's request may carry. `open`: fields not listed are allowed too."""

    model: str
    fields: Mapping[str, FieldRule] = field(default_factory=dict)
    open: bool = False

    def with_fields(self, extra: Mapping[str, FieldRule]) -> RequestSchema:
        """The schema with fields the API itself takes besides the model's (its envelope)."""
        return RequestSchema(self.model, {**extra, **self.fields}, self.open)


def from_json_schema(model: str, document: object) -> RequestSchema | None:
    """A model's request schema from its JSON Schema (an object, or that object as JSON
    text); None if it describes no fields dropreel can check."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return None
    if not isinstance(document, Mapping):
        return None
    properties = document.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return None
    rules = {str(name): rule_from(spec) for name, spec in properties.items()}
    # JSON Schema allows unlisted fields unless it says otherwise; a published request schema
    # lists what the model takes, and a field it does not list is what a typo looks like.
    extra = document.get("additionalProperties", False)
    return RequestSchema(model, rules, open=extra is not False)


def rule_from(spec: object) -> FieldRule:
    """One property's rule; what cannot be understood admits anything (never a false refusal)."""
    if not isinstance(spec, Mapping):
        return FieldRule()
    alternatives = spec.get("anyOf") or spec.get("oneOf")
    if isinstance(alternatives, list) and alternatives:
        parts = [rule_from(a) for a in alternatives]
        if any(not p.types for p in parts):
            return FieldRule()
        enums = () if any(not p.enum for p in parts) else tuple(v for p in parts for v in p.enum)
        return FieldRule(frozenset().union(*(p.types for p in parts)), enums)
    kind = spec.get("type")
    names = [kind] if isinstance(kind, str) else kind if isinstance(kind, list) else []
    types = frozenset(n for n in names if n in JSON_TYPES)
    enum = spec.get("enum")
    if "const" in spec:
        enum = [spec["const"]]
    return FieldRule(
        types=types if len(types) == len(names) else frozenset(),
        enum=tuple(enum) if isinstance(enum, list) else (),
        minimum=_number(spec.get("minimum")),
        maximum=_number(spec.get("maximum")),
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
