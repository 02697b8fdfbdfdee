"""Which parsed job-file values can travel as strict JSON. Pure.

A request is stored as JSON and sent as JSON, so every value must survive both: no NaN or
infinities, no integer JSON peers cannot read, no lone surrogate that cannot be encoded,
and nothing that is not a JSON type at all (a TOML date).
"""

from __future__ import annotations

import math
from typing import Any

# Integers beyond 64 bits are not numbers most JSON peers can read back.
_INT_LIMIT = 2**63


def json_problem(value: Any, path: str = "") -> str | None:
    """Why `value` cannot travel as strict JSON (naming where), or None if it can."""
    where = path or "the request"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _string_problem(key, f"{where}: a key") or json_problem(
                item, f"{path}.{key}" if path else key
            )
            if problem:
                return problem
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            if problem := json_problem(item, f"{where}[{index}]"):
                return problem
        return None
    return _scalar_problem(value, where)


def _scalar_problem(value: Any, where: str) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return _string_problem(value, where)
    if isinstance(value, int):
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            return f"{where}: integer has {len(str(abs(value)))} digits; the limit is 64 bits"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where}: {value} is not a JSON number"
    kind = type(value).__name__
    return f"{where}: a TOML {kind} is not a JSON value; quote it as a string"


def _string_problem(text: str, where: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"{where}: contains a lone surrogate escape at character {exc.start}"
    return None
