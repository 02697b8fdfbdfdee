from __future__ import annotations

import json
import re

import pytest

from dropreel.errors import JobFileRejected
from dropreel.intake.jobs import (
    MAX_JOB_FILE_BYTES,
    Routes,
    is_candidate_name,
    is_ignored_name,
    parse_job_file,
)

MODEL = "openai-sora-2-pro"


@pytest.mark.parametrize(
    ("name", "taken"),
    [
        ("clip.json", True),
        ("clip.TOML", True),
        ("prompt.txt", True),
        (".clip.json", False),
        ("clip.json.tmp", False),
        ("clip.json.part", False),
        ("clip.json.swp", False),
        ("clip.json~", False),
        ("clip.mp4", False),
    ],
)
def test_which_names_are_job_files(name: str, taken: bool) -> None:
    assert is_candidate_name(name) is taken


@pytest.mark.parametrize("name", [".hidden", "x.tmp", "x.part", "x.swp", "x~"])
def test_names_being_written_are_ignored(name: str) -> None:
    assert is_ignored_name(name)


def test_text_file_is_the_prompt_with_the_default_model() -> None:
    request = parse_job_file("a.txt", b"  A cat on a skateboard\n", MODEL)
    assert request.body == {"prompt": "A cat on a skateboard", "model": MODEL}


def test_json_passes_every_field_through_untouched() -> None:
    body = {
        "prompt": "p",
        "num_generations": 3,
        "aspect_ratio": "portrait",
        "seconds": "8",
        "seed": 7,
        "custom": {"nested": [1, 2]},
    }
    request = parse_job_file("a.json", json.dumps(body).encode(), MODEL)
    assert request.body == {**body, "model": MODEL}
    assert request.num_generations == 3


def test_a_model_in_the_file_wins_over_the_default() -> None:
    request = parse_job_file("a.toml", b'model = "other-model"\nprompt = "p"\n', MODEL)
    assert request.model == "other-model"


def test_num_generations_absent_is_not_added() -> None:
    request = parse_job_file("a.json", b'{"prompt": "p"}', MODEL)
    assert "num_generations" not in request.body
    assert request.num_generations == 1


def test_image_to_video_needs_no_prompt() -> None:
    request = parse_job_file("a.json", b'{"input_image": "https://x/y.png"}', MODEL)
    assert request.body["input_image"] == "https://x/y.png"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("a.json", b'{"prompt": "cut', "not valid JSON"),
        ("a.toml", b"prompt = ", "not valid TOML"),
        ("a.json", b'["a list"]', "expected an object, found list"),
        ("a.json", b'"text"', "expected an object, found str"),
        ("a.txt", b"   \n\t", "empty prompt"),
        ("a.json", b'{"prompt": ""}', "prompt must be a non-empty string"),
        ("a.json", b'{"prompt": 5}', "prompt must be a non-empty string"),
        ("a.json", b"{}", "no prompt"),
        ("a.json", b'{"prompt": "p", "num_generations": 0}', "num_generations must be"),
        ("a.json", b'{"prompt": "p", "num_generations": 5}', "num_generations must be"),
        ("a.json", b'{"prompt": "p", "num_generations": "2"}', "num_generations must be"),
        ("a.json", b'{"prompt": "p", "num_generations": true}', "num_generations must be"),
        ("a.json", b'{"prompt": "p", "model": ""}', "model must be a non-empty string"),
        ("a.txt", b"\xff\xfe bad", "not UTF-8"),
        ("a.txt", b"prompt\x00with nul", "binary content"),
        ("a.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ("a.json", ("[" * 40 + "]" * 40).join(['{"p": ', "}"]).encode(), "nested deeper"),
        ("a.txt", b"x" * (MAX_JOB_FILE_BYTES + 1), "the limit is"),
    ],
)
def test_bad_job_files_are_rejected_with_a_reason(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(JobFileRejected) as caught:
        parse_job_file(name, data, MODEL)
    assert reason in caught.value.reason
    assert caught.value.file_name == name
    assert name in str(caught.value)


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("when.toml", 'prompt = "p"\nwhen = 2026-11-22', "when: a TOML date is not a JSON value"),
        (
            "stamp.toml",
            'prompt = "p"\n[extra]\nat = 07:32:00',
            "extra.at: a TOML time is not a JSON value",
        ),
        ("digits.json", '{"prompt": "p", "seed": ' + "9" * 5000 + "}", "not usable JSON"),
        ("digits.toml", 'prompt = "p"\nseed = ' + "9" * 5000, "not usable TOML"),
        ("big.json", '{"prompt": "p", "seed": ' + "9" * 30 + "}", "seed: integer has 30 digits"),
        ("lone.json", '{"prompt": "a \\ud83c cat"}', "prompt: contains a lone surrogate"),
        ("key.json", '{"prompt": "p", "\\udc80": 1}', "a key: contains a lone surrogate"),
        ("nan.json", '{"prompt": "p", "seed": NaN}', "seed: nan is not a JSON number"),
        ("inf.json", '{"prompt": "p", "x": [1, -Infinity]}', "x[1]: -inf is not a JSON number"),
        ("nan.toml", 'prompt = "p"\nseed = nan', "seed: nan is not a JSON number"),
    ],
)
def test_values_that_cannot_travel_as_json_are_refused_with_where(
    name: str, text: str, reason: str
) -> None:
    with pytest.raises(JobFileRejected) as refused:
        parse_job_file(name, text.encode(), MODEL)
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bom.json", '{"prompt": "p"}'),
        ("bom.toml", 'prompt = "p"'),
        ("bom.txt", "p"),
    ],
)
def test_a_byte_order_mark_is_not_part_of_the_job(name: str, text: str) -> None:
    request = parse_job_file(name, b"\xef\xbb\xbf" + text.encode(), MODEL)
    assert request.body["prompt"] == "p"
    json.dumps(request.body, allow_nan=False).encode("utf-8")


ROUTES = Routes({"oxen": "oxen-model", "lumenfall": "sora-2-pro"}, "oxen")


def test_the_dropreel_table_picks_the_provider_and_is_never_sent() -> None:
    data = b'{"prompt": "p", "dropreel": {"provider": "lumenfall", "image": "cat.png"}}'
    request = parse_job_file("a.json", data, ROUTES)
    assert (request.provider, request.image) == ("lumenfall", "cat.png")
    assert request.body == {"prompt": "p", "model": "sora-2-pro"}


def test_without_a_dropreel_table_a_job_goes_to_the_default_provider() -> None:
    request = parse_job_file("a.toml", b'prompt = "p"\n', ROUTES)
    assert (request.provider, request.image, request.body["model"]) == ("oxen", None, "oxen-model")


def test_an_image_job_needs_no_prompt() -> None:
    request = parse_job_file("a.json", b'{"dropreel": {"image": "cat.png"}}', ROUTES)
    assert request.image == "cat.png"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            b'{"prompt": "p", "dropreel": {"provider": "zz"}}',
            "'zz' is not a configured provider (lumenfall, oxen)",
        ),
        (b'{"prompt": "p", "dropreel": "lumenfall"}', "dropreel must be a table of options"),
        (b'{"prompt": "p", "dropreel": {"provder": "x"}}', "unknown option 'provder'"),
        (b'{"prompt": "p", "dropreel": {"image": "../x.png"}}', "plain file name"),
        (b'{"prompt": "p", "dropreel": {"image": "x.gif"}}', ".png, .jpg, .jpeg or .webp"),
    ],
)
def test_a_bad_dropreel_table_refuses_the_file_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(JobFileRejected, match=re.escape(reason)):
        parse_job_file("a.json", data, ROUTES)
