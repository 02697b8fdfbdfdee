"""Settling a POST whose answer never arrived: find what it created in the listing. Pure.

For providers without an idempotency key (Oxen: oxen-api.md), resending would risk paying
twice. Instead the generations the lost POST may have created are looked for among the
caller's generations: same model, the same echoed parameters, enqueued while the POST could
have been in flight, and not already known to be another job's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from dropreel.providers.base import Adopt, RemoteGeneration, Unsettled

# Fields that steer the queue rather than the model: not echoed on generation rows.
_NOT_ECHOED = frozenset({"model", "num_generations", "target_namespace"})


def _same_request(request: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    model = row.get("model_name", row.get("model"))
    if model is not None and model != request.get("model"):
        return False
    return all(
        row[key] == value for key, value in request.items() if key not in _NOT_ECHOED and key in row
    )


def settle_lost_post(
    request: Mapping[str, Any],
    post_started_at: float,
    *,
    window_s: float,
    candidates: Sequence[RemoteGeneration],
    taken: Collection[str],
) -> Adopt | Unsettled:
    """The generations a lost POST created, or why that cannot be told."""
    wanted = int(request.get("num_generations", 1))
    # The server stamps enqueue time in whole seconds and its clock may differ from ours.
    earliest, latest = post_started_at - 60.0, post_started_at + window_s + 60.0
    matches = sorted(
        (
            g
            for g in candidates
            if g.generation_id not in taken
            and g.enqueued_at is not None
            and earliest <= g.enqueued_at <= latest
            and _same_request(request, g.row)
        ),
        key=lambda g: (g.enqueued_at or 0.0, g.generation_id),
    )
    if len(matches) >= wanted:
        return Adopt(tuple(matches[:wanted]))
    if not matches:
        return Unsettled(
            "the POST's answer was lost and no matching generation is in the provider's "
            "listing: it was probably never created, but the older API lists only active "
            "generations, so this cannot be proven. `dropreel retry` resubmits it."
        )
    return Unsettled(
        f"the POST's answer was lost and only {len(matches)} of {wanted} matching "
        "generations are listed; not resubmitted. `dropreel retry` resubmits it."
    )
