"""The `/v1/videos` create request's documented fields and enums (openai-videos-api.md)."""

from __future__ import annotations

from dropreel.validation.schema import FieldRule, RequestSchema

_STRING = FieldRule(frozenset({"string"}))
_COUNT = FieldRule(frozenset({"integer"}), minimum=1, maximum=4)

DOCUMENTED_FIELDS = {
    "prompt": _STRING,
    "model": _STRING,
    # OpenAI: the strings "4", "8", "12"; an integer is a 400.
    "seconds": FieldRule(frozenset({"string"}), enum=("4", "8", "12")),
    "size": FieldRule(
        frozenset({"string"}), enum=("720x1280", "1280x720", "1024x1792", "1792x1024")
    ),
    # A multipart file, or JSON {"image_url": ...} (Lumenfall, OpenAI's newer API).
    "input_reference": FieldRule(frozenset({"object", "string"})),
    # Lumenfall's own.
    "aspect_ratio": _STRING,
    "resolution": _STRING,
    "n": _COUNT,
    "webhook_url": _STRING,
    # dropreel's: one create per video.
    "num_generations": _COUNT,
}


def documented_schema(model: str) -> RequestSchema:
    """What any model behind a `/v1/videos` API is documented to take."""
    return RequestSchema(model, DOCUMENTED_FIELDS)
