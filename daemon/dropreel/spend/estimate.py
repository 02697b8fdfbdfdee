"""What a job will cost, from its model's price and its request. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from dropreel.providers.base import Pricing

# Sizes billed at the high-resolution rate (openai-sora-2-pro's 1024x1792 and 1792x1024).
HIGH_RES_SIZES = frozenset({"1024x1792", "1792x1024"})


def job_estimate_usd(pricing: Pricing | None, request: Mapping[str, Any]) -> float | None:
    """The job's estimated cost: every generation it asks for; None if it cannot be told."""
    each = generation_estimate_usd(pricing, request)
    return None if each is None else round(each * generations_asked(request), 6)


def generation_estimate_usd(pricing: Pricing | None, request: Mapping[str, Any]) -> float | None:
    """One generation's estimated cost: the per-second rate (the high-resolution one where it
    applies) times the seconds asked for; None without a price or a length."""
    if pricing is None:
        return None
    seconds = _seconds(request.get("seconds", request.get("duration")))
    if seconds is None:
        seconds = pricing.default_seconds
    if seconds is None:
        return None
    rate = pricing.per_second_usd
    if is_high_res(request) and pricing.per_second_high_res_usd is not None:
        rate = pricing.per_second_high_res_usd
    return round(rate * seconds, 6)


def generations_asked(request: Mapping[str, Any]) -> int:
    """How many generations a request asks for (`num_generations`, Lumenfall's `n`)."""
    for key in ("num_generations", "n"):
        value = request.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
    return 1


def is_high_res(request: Mapping[str, Any]) -> bool:
    """Whether the request asks for the high resolution: Oxen's `resolution = "high"`, or a
    high-resolution `size`."""
    resolution = request.get("resolution")
    if isinstance(resolution, str) and resolution.lower() in ("high", "1080p"):
        return True
    size = request.get("size")
    return isinstance(size, str) and size.lower() in HIGH_RES_SIZES


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(str(value).strip().removesuffix("s"))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def each_usd(job_estimate: float | None, request: Mapping[str, Any]) -> float | None:
    """One generation's share of a job's estimate."""
    if job_estimate is None:
        return None
    return round(job_estimate / generations_asked(request), 6)
