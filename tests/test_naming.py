from __future__ import annotations

import pytest

from dropreel.fs.naming import (
    displayable,
    error_sidecar_name,
    extension_for,
    first_free,
    manifest_name,
    media_name,
    numbered,
    numbered_stem,
    printable,
    safe_stem,
)


@pytest.mark.parametrize(
    ("file_name", "stem"),
    [
        ("sunrise.json", "sunrise"),
        ("my.clip.toml", "my.clip"),
        ("no-suffix", "no-suffix"),
        ("line\nbreak.txt", "line_break"),
        ("tab\tand\x7fdel.txt", "tab_and_del"),
        ("..json", "json"),
        ("...", "job"),
        ("a/b\\c.txt", "b_c"),
        ("x" * 300 + ".txt", "x" * 150),
        ("é" * 300 + ".txt", "é" * 75),
    ],
)
def test_stems_are_safe_in_any_folder(file_name: str, stem: str) -> None:
    assert safe_stem(file_name) == stem


def test_a_stem_never_escapes_the_outbox() -> None:
    for hostile in ("../../etc/passwd", "..", "/abs/path.json", "a/../../b.txt"):
        stem = safe_stem(hostile)
        assert "/" not in stem and "\\" not in stem
        assert stem not in ("", ".", "..")


@pytest.mark.parametrize(
    ("index", "count", "name"),
    [(1, 1, "cat.mp4"), (1, 3, "cat-1.mp4"), (3, 3, "cat-3.mp4")],
)
def test_media_names(index: int, count: int, name: str) -> None:
    assert media_name("cat", index, count, "mp4") == name


@pytest.mark.parametrize(
    ("name", "n", "expected"),
    [
        ("cat.mp4", 1, "cat.mp4"),
        ("cat.mp4", 2, "cat_2.mp4"),
        ("cat.result.json", 3, "cat_3.result.json"),
        ("bad.json.error.json", 2, "bad_2.json.error.json"),
        ("noext", 2, "noext_2"),
    ],
)
def test_clash_numbering_keeps_the_extension(name: str, n: int, expected: str) -> None:
    assert numbered(name, n) == expected


def test_first_free_skips_taken_names() -> None:
    taken = {"cat.mp4", "cat_2.mp4"}
    assert first_free("cat.mp4", taken.__contains__) == "cat_3.mp4"
    assert first_free("my.clip", {"my.clip"}.__contains__, numbered_stem) == "my.clip_2"


def test_manifest_name() -> None:
    assert manifest_name("cat") == "cat.result.json"


@pytest.mark.parametrize(
    ("url", "content_type", "extension"),
    [
        ("https://h/api/repos/x/files/a.mp4?sig=1", None, "mp4"),
        ("https://h/a.WEBM", None, "webm"),
        ("https://h/download", "video/quicktime", "mov"),
        ("https://h/download", "image/png; charset=binary", "png"),
        ("https://h/download", None, "mp4"),
        ("https://h/download", "application/x-unknown-thing", "mp4"),
        ("https://h/a.this-is-not-an-extension", None, "mp4"),
        ("https://h/a.mp4%2F..%2F..%2Fetc", None, "mp4"),
        # Only media extensions, whatever the URL or the server's type says.
        ("https://h/payload.sh", None, "mp4"),
        ("https://h/payload.sh", "video/webm", "webm"),
        ("https://h/index.html", "text/html", "mp4"),
        ("https://h/a.JPEG", None, "jpg"),
        ("https://h/download", "application/x-sh", "mp4"),
    ],
)
def test_extension_from_url_then_content_type(
    url: str, content_type: str | None, extension: str
) -> None:
    assert extension_for(url, content_type) == extension


def test_printable_names_lose_control_characters_and_leading_dots() -> None:
    assert printable("..\nevil\x1b.json") == "_evil_.json"
    assert printable("a/b.json") == "a_b.json"


def test_a_name_that_is_not_utf8_becomes_valid_text_everywhere_it_is_shown() -> None:
    latin1 = b"caf\xe9 au lait.txt".decode("utf-8", "surrogateescape")
    assert displayable(latin1) == "caf\\xe9 au lait.txt"
    assert printable(latin1) == "caf_xe9 au lait.txt"
    assert safe_stem(latin1) == "caf_xe9 au lait"
    for name in (printable(latin1), safe_stem(latin1)):
        name.encode("utf-8")


@pytest.mark.parametrize("name", ["x" * 250 + ".json", "日本" * 80 + ".toml", "é" * 127 + ".txt"])
def test_every_name_derived_from_a_long_name_fits_255_bytes(name: str) -> None:
    kept = f"{'0' * 17}-{printable(name)}"
    refused = printable(name)
    stem = numbered_stem(safe_stem(name), 999)
    for derived in (
        kept,
        f".{numbered(refused, 99)}.error.pending",
        error_sidecar_name(numbered(refused, 99)),
        media_name(stem, 4, 4, "webm"),
        manifest_name(stem),
    ):
        assert len(derived.encode("utf-8")) <= 255, derived
    assert printable(name).endswith(name.rsplit(".", 1)[1])
