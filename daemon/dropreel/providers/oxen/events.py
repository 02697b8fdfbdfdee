"""What an Oxen `/api/events` event means (oxen-api.md, events section). Pure."""

from __future__ import annotations

import json

from dropreel.lifecycle import Observation, RemoteStatus, Source
from dropreel.ops.redact import redact
from dropreel.providers.urls import usable_result_url

COMPLETED_EVENT = "media_generation_completed"
_MAX_ERROR_CHARS = 2000


def interpret(event_type: str, data: str) -> Observation | str:
    """An event's meaning as an Observation, or the reason it is ignored."""
    if event_type != COMPLETED_EVENT:
        return f"unrelated event type {event_type!r}"
    try:
        payload = json.loads(data)
    except json.JSONDecodeError:
        return "data is not JSON"
    if not isinstance(payload, dict):
        return "data is not an object"
    generation_id = payload.get("generation_id")
    if not isinstance(generation_id, str) or not generation_id:
        return "no generation_id"
    status = RemoteStatus.parse(payload.get("status"))
    if status is None or not status.is_terminal or status is RemoteStatus.UNKNOWN:
        return f"status {payload.get('status')!r} is not a completion"
    # Stream field names differ from REST: `url`, `error` (oxen-api.md, events section).
    url = payload.get("url") or payload.get("result_url")
    error = payload.get("error") or payload.get("error_message")
    return Observation(
        generation_id=generation_id,
        status=status,
        source=Source.EVENT,
        result_url=usable_result_url(url),
        error=redact(str(error))[:_MAX_ERROR_CHARS] if error else None,
    )
