"""The folders dropreel works in must not overlap. Pure, but for resolving the paths."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from pathlib import Path


def overlap(folders: Mapping[str, Path]) -> tuple[str, str] | None:
    """The first pair of keys whose folders are the same or one inside the other."""
    resolved = {key: folder.resolve() for key, folder in folders.items()}
    for (key_a, a), (key_b, b) in combinations(resolved.items(), 2):
        if a == b or a.is_relative_to(b) or b.is_relative_to(a):
            return key_a, key_b
    return None


def overlap_problem(folders: Mapping[str, Path]) -> tuple[str, str] | None:
    """(key, the problem in words) if two folders overlap, else None."""
    found = overlap(folders)
    if found is None:
        return None
    key_a, key_b = found
    a, b = folders[key_a].resolve(), folders[key_b].resolve()
    how = (
        "is the same folder as" if a == b else ("is inside" if a.is_relative_to(b) else "contains")
    )
    return key_a, (
        f"{a} {how} {key_b} ({b}); inbox, outbox, failed and state must be separate folders"
    )
