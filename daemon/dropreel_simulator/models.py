"""The simulator's model catalogue: `GET /api/ai/models/{model}` answers with the model object,
its `json_request_schema` and its `pricing` (oxen-api.md, "Added later")."""

from __future__ import annotations

from typing import Any

SORA_2_PRO: dict[str, Any] = {
    "id": "openai-sora-2-pro",
    "name": "openai-sora-2-pro",
    "media_type": "video",
    "json_request_schema": {
        "type": "object",
        "properties": {
            "prompt": {"type": "string"},
            "input_image": {"type": "string", "format": "uri"},
            "aspect_ratio": {"type": "string", "enum": ["landscape", "portrait"]},
            "resolution": {"type": "string", "enum": ["standard", "high"]},
            "seconds": {"type": "string", "enum": ["4", "8", "12"]},
        },
        "required": ["prompt"],
    },
    "pricing": {
        "method": "per_video_output_second",
        "cost_per_second": 0.3,
        "cost_per_second_high_res": 0.5,
    },
}

CATALOGUE: dict[str, dict[str, Any]] = {SORA_2_PRO["id"]: SORA_2_PRO}
