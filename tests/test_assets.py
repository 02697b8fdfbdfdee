"""Images a job sends: what counts as one, what a job may name, how long a job waits."""

from __future__ import annotations

import base64

import pytest

from dropreel.intake.assets import (
    AssetWaits,
    image_media_type,
    image_name_problem,
    image_problem,
    is_asset_name,
)
from dropreel.providers.base import ImageInput

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 20


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (WEBP, "image/webp"),
        (b"GIF89a" + b"\x00" * 20, None),
        (b"a prompt, not an image", None),
        (b"RIFF\x00\x00\x00\x00WAVE", None),
        (b"", None),
    ],
)
def test_an_image_is_known_by_its_bytes_not_its_name(data: bytes, media_type: str | None) -> None:
    assert image_media_type(data) == media_type


@pytest.mark.parametrize(
    ("name", "is_asset"),
    [
        ("cat.png", True),
        ("CAT.JPG", True),
        ("a.jpeg", True),
        ("x.webp", True),
        (".cat.png", False),
        ("cat.png.tmp", False),
        ("cat.gif", False),
        ("job.json", False),
    ],
)
def test_which_inbox_files_are_images_waiting_for_a_job(name: str, is_asset: bool) -> None:
    assert is_asset_name(name) is is_asset


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("cat.png", None),
        ("Cat Photo.JPEG", None),
        ("", "must be the name of an image file"),
        (3, "must be the name of an image file"),
        ("../cat.png", "plain file name"),
        ("sub/cat.png", "plain file name"),
        (".cat.png", "plain file name"),
        ("cat.gif", "must be a .png, .jpg, .jpeg or .webp file"),
    ],
)
def test_what_a_job_may_name_as_its_image(value: object, problem: str | None) -> None:
    found = image_name_problem(value)
    assert found is None if problem is None else (found is not None and problem in found)


def test_a_file_that_is_not_an_image_is_refused_by_name() -> None:
    assert image_problem("cat.png", PNG) is None
    assert image_problem("cat.png", b"hello") == "cat.png is not a PNG, JPEG or WebP image"


def test_a_data_uri_carries_the_type_and_the_bytes() -> None:
    uri = ImageInput("cat.png", "image/png", PNG).data_uri()
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == PNG


def test_a_job_waits_for_its_image_from_when_it_was_first_seen() -> None:
    waits = AssetWaits(wait_s=10.0)
    assert waits.next_due() is None
    assert not waits.expired("job.json", now=100.0)
    assert waits.next_due() == 110.0
    assert not waits.expired("job.json", now=109.0)
    assert waits.expired("job.json", now=110.0)
    waits.forget("job.json")
    assert not waits.expired("job.json", now=200.0)
