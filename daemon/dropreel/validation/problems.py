"""What is wrong with a request, by a model's schema: unknown fields, wrong types, values
outside an enum or a range, each in words with a suggestion where one is close. Pure."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from dropreel.validation.schema import FieldRule, RequestSchema

# Fields dropreel reads and never sends: never the model's business.
_NOT_SENT = frozenset({"dropreel"})


def request_problems(schema: RequestSchema, body: Mapping[str, Any]) -> list[str]:
    """Each problem of `body` under `schema`, in words; empty if it fits."""
    problems: list[str] = []
    for name, value in body.items():
        if name in _NOT_SENT:
            continue
        rule = schema.fields.get(name)
        if rule is None:
            if not schema.open:
                problems.append(_unknown(name, value, schema))
            continue
        problem = value_problem(rule, value)
        if problem is not None:
            problems.append(f"{name} {problem}")
    return problems


def _unknown(name: str, value: object, schema: RequestSchema) -> str:
    known = sorted(schema.fields)
    text = f"{name} is not a field {schema.model} takes (given {_shown(value)})"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        text += f"; did you mean `{close[0]}`?"
    return f"{text}; its fields: {', '.join(known)}"


def value_problem(rule: FieldRule, value: object) -> str | None:
    """Why `value` does not fit `rule`, or None."""
    if rule.types and not any(_is_type(value, t) for t in rule.types):
        wanted = " or ".join(sorted(rule.types))
        text = f"must be {_article(wanted)} {wanted}, not {_shown(value)}"
        return text + _allowed(rule) + _suggestion(rule, value)
    if rule.enum and not any(_same(value, allowed) for allowed in rule.enum):
        return f"is {_shown(value)}, not an allowed value{_allowed(rule)}" + _suggestion(
            rule, value
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        if rule.minimum is not None and value < rule.minimum:
            return f"is {_shown(value)}; the least allowed is {_number(rule.minimum)}"
        if rule.maximum is not None and value > rule.maximum:
            return f"is {_shown(value)}; the most allowed is {_number(rule.maximum)}"
    return None


def _is_type(value: object, name: str) -> bool:
    match name:
        case "string":
            return isinstance(value, str)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "boolean":
            return isinstance(value, bool)
        case "array":
            return isinstance(value, list)
        case "object":
            return isinstance(value, dict)
        case _:
            return value is None


def _same(value: object, allowed: object) -> bool:
    # True == 1 in Python; a schema's `1` does not admit `true`.
    return type(value) is type(allowed) and value == allowed


def _allowed(rule: FieldRule) -> str:
    return f" (allowed: {', '.join(_shown(v) for v in rule.enum)})" if rule.enum else ""


def _suggestion(rule: FieldRule, value: object) -> str:
    """The allowed value closest to what was given: `8` for `"8"`, `landscape` for `landscap`."""
    if not rule.enum:
        return ""
    by_text = {_text(v): v for v in rule.enum}
    close = difflib.get_close_matches(_text(value), list(by_text), n=1, cutoff=0.8)
    return f"; did you mean {_shown(by_text[close[0]])}?" if close else ""


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: float) -> str:
    return f"{value:g}"


def _article(words: str) -> str:
    return "an" if words[:1] in "aeiou" else "a"


def joined(problems: Iterable[str]) -> str:
    """Problems as one line."""
    return "; ".join(problems)
