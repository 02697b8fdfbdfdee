"""Checking a request against its model's schema: the pure check, read from a table."""

from __future__ import annotations

from typing import Any

import pytest

from dropreel.providers.openai_videos.schema import documented_schema
from dropreel.providers.oxen.model import model_schema
from dropreel.validation.problems import request_problems
from dropreel.validation.schema import FieldRule, RequestSchema, from_json_schema
from dropreel_simulator.models import SORA_2_PRO


def sora() -> RequestSchema:
    schema = model_schema("openai-sora-2-pro", SORA_2_PRO)
    assert schema is not None
    return schema


SORA = sora()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"prompt": "p", "model": "openai-sora-2-pro"}, []),
        ({"prompt": "p", "seconds": "8", "aspect_ratio": "portrait", "num_generations": 4}, []),
        ({"prompt": "p", "target_namespace": "me", "dropreel": {"x": 1}}, []),
        (
            {"prompt": "p", "num_generation": 2},
            [
                "num_generation is not a field openai-sora-2-pro takes (given 2); did you mean"
                " `num_generations`?; its fields: aspect_ratio, input_image, model,"
                " num_generations, prompt, resolution, seconds, target_namespace"
            ],
        ),
        (
            {"prompt": "p", "seconds": 5},
            ['seconds must be a string, not 5 (allowed: "4", "8", "12")'],
        ),
        (
            {"prompt": "p", "seconds": 8},
            ['seconds must be a string, not 8 (allowed: "4", "8", "12"); did you mean "8"?'],
        ),
        (
            {"prompt": "p", "aspect_ratio": "landscap"},
            [
                'aspect_ratio is "landscap", not an allowed value (allowed: "landscape",'
                ' "portrait"); did you mean "landscape"?'
            ],
        ),
        ({"prompt": "p", "num_generations": 7}, ["num_generations is 7; the most allowed is 4"]),
        ({"prompt": 3}, ["prompt must be a string, not 3"]),
        (
            {"prompt": "p", "resolution": "4k", "sede": 1},
            [
                'resolution is "4k", not an allowed value (allowed: "standard", "high")',
                "sede is not a field openai-sora-2-pro takes (given 1); its fields: aspect_ratio,"
                " input_image, model, num_generations, prompt, resolution, seconds,"
                " target_namespace",
            ],
        ),
    ],
    ids=[
        "minimal",
        "every-enum",
        "envelope-and-options",
        "typo",
        "wrong-type",
        "number-for-string",
        "out-of-enum",
        "out-of-range",
        "prompt-not-string",
        "two-problems",
    ],
)
def test_problems_of_a_request_under_oxen_sora(body: dict[str, Any], expected: list[str]) -> None:
    assert request_problems(SORA, body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"prompt": "p", "seconds": "4", "size": "1280x720", "num_generations": 2}, []),
        ({"prompt": "p", "n": 2, "webhook_url": "https://x", "aspect_ratio": "16:9"}, []),
        (
            {"prompt": "p", "size": "1920x1080"},
            [
                'size is "1920x1080", not an allowed value (allowed: "720x1280", "1280x720",'
                ' "1024x1792", "1792x1024")'
            ],
        ),
        (
            {"prompt": "p", "second": "4"},
            [
                'second is not a field sora-2-pro takes (given "4"); did you mean `seconds`?;'
                " its fields: aspect_ratio, input_reference, model, n, num_generations, prompt,"
                " resolution, seconds, size, webhook_url"
            ],
        ),
    ],
    ids=["documented", "lumenfall-fields", "size-not-listed", "typo"],
)
def test_problems_under_the_documented_videos_fields(
    body: dict[str, Any], expected: list[str]
) -> None:
    assert request_problems(documented_schema("sora-2-pro"), body) == expected


@pytest.mark.parametrize(
    ("document", "fields", "open_"),
    [
        ({"type": "object", "properties": {"a": {"type": "integer"}}}, {"a": "integer"}, False),
        ('{"properties": {"a": {"type": "string"}}}', {"a": "string"}, False),
        (
            {"properties": {"a": {"type": ["string", "null"]}}, "additionalProperties": True},
            {"a": "null,string"},
            True,
        ),
        (
            {"properties": {"a": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}},
            {"a": "integer,string"},
            False,
        ),
        ({"properties": {"a": {"type": "mystery"}}}, {"a": ""}, False),
        ({"properties": {"a": True}}, {"a": ""}, False),
    ],
    ids=["closed", "as-text", "open-and-nullable", "any-of", "unknown-type", "not-an-object"],
)
def test_reading_a_json_schema(document: object, fields: dict[str, str], open_: bool) -> None:
    schema = from_json_schema("m", document)
    assert schema is not None
    assert {k: ",".join(sorted(r.types)) for k, r in schema.fields.items()} == fields
    assert schema.open is open_


@pytest.mark.parametrize(
    "document", [None, "not json", [], {"type": "object"}, {"properties": {}}, 3]
)
def test_a_schema_with_nothing_to_check_is_none(document: object) -> None:
    assert from_json_schema("m", document) is None


def test_an_unreadable_rule_admits_anything() -> None:
    schema = RequestSchema("m", {"a": FieldRule()})
    assert request_problems(schema, {"a": {"deep": [1]}}) == []


def test_true_is_not_the_enum_value_one() -> None:
    schema = RequestSchema("m", {"a": FieldRule(enum=(1, 2))})
    assert request_problems(schema, {"a": True}) == [
        "a is true, not an allowed value (allowed: 1, 2)"
    ]
