"""Short ids: a job id starts with its time, so what tells jobs apart is its end. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Four hex characters of an id's random tail: one job in 65,536 shares them.
SHORTEST = 4


def short_ids(ids: Iterable[str], *, shortest: int = SHORTEST) -> dict[str, str]:
    """Each id's shortest ending that no other id shares, at least `shortest` characters
    (the whole id where even that is shared: an id that ends another)."""
    # Sorted by their reversed text, ids that share an ending are neighbours.
    ordered = sorted(ids, key=lambda i: i[::-1])
    found = {}
    for at, this in enumerate(ordered):
        neighbours = ordered[max(0, at - 1) : at] + ordered[at + 1 : at + 2]
        needed = max([shortest, *(_shared_ending(this, other) + 1 for other in neighbours)])
        found[this] = this[-needed:]
    return found


def resolve(given: str, ids: Sequence[str]) -> list[str]:
    """The ids `given` may name: itself if it is one; else those it ends (a short id);
    else those it starts. Several mean `given` is ambiguous; none, unknown."""
    if not given:
        return list(ids)
    if given in ids:
        return [given]
    return [i for i in ids if i.endswith(given)] or [i for i in ids if i.startswith(given)]


def _shared_ending(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n
