"""Presets: one inbox folder per look. What a preset name may be, and what a preset gives the
jobs dropped into its folder. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dropreel.intake.jsonvalues import json_problem

# A preset's name is a folder's name in the inbox and the outbox: plain, portable, short.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = (
    "a preset's name is its folder's name: 1-64 letters, digits, '.', '-' or '_', "
    "starting with a letter or digit"
)


@dataclass(frozen=True, slots=True)
class Preset:
    """Defaults for every job dropped into `inbox/<name>/`; the file's own fields win."""

    name: str
    body: Mapping[str, Any] = field(default_factory=dict)
    # None: the job's own choice, else jobs.provider.
    provider: str | None = None


def preset_problem(name: str, body: Mapping[str, Any]) -> str | None:
    """Why a configured preset cannot be used, in words; None if it can."""
    if not _NAME.fullmatch(name):
        return NAME_RULE
    if "dropreel" in body:
        return "body: the dropreel table belongs in job files, not in a preset"
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        return "body.model must be a non-empty string"
    problem = json_problem(dict(body))
    return f"body: {problem}" if problem else None
