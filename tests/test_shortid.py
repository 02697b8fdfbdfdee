"""Short ids tell every job apart with a few characters, and every command takes them."""

from __future__ import annotations

import random

import pytest

from dropreel.intake.inbox import new_job_id
from dropreel.ops.shortid import resolve, short_ids

JOBS = ["19ae3f2c0a1b3f9a1c", "19ae3f2c0a1c77d0e2", "19ae3f2c0a1d0a9a1c", "19ae3f2c0a1e55b0b0"]


def test_four_characters_unless_another_id_ends_the_same() -> None:
    assert short_ids(JOBS) == {
        "19ae3f2c0a1b3f9a1c": "f9a1c",  # shares "9a1c" with the third
        "19ae3f2c0a1c77d0e2": "d0e2",
        "19ae3f2c0a1d0a9a1c": "a9a1c",
        "19ae3f2c0a1e55b0b0": "b0b0",
    }


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ([], {}),
        (["abc"], {"abc": "abc"}),  # shorter than four: the whole id
        (["stranded", "xstranded"], {"stranded": "stranded", "xstranded": "xstranded"}),
        (["aaaa1", "bbbb1"], {"aaaa1": "aaa1", "bbbb1": "bbb1"}),
    ],
)
def test_edges(ids: list[str], expected: dict[str, str]) -> None:
    assert short_ids(ids) == expected


def test_ten_thousand_real_ids_stay_unique_and_short() -> None:
    random.seed(1)
    ids = list({new_job_id() for _ in range(10_000)})
    shown = short_ids(ids)
    assert len(set(shown.values())) == len(ids)
    assert all(full.endswith(short) for full, short in shown.items())
    assert all(resolve(shown[full], ids) == [full] for full in random.sample(ids, 100))
    lengths = sorted(len(s) for s in shown.values())
    assert lengths[len(lengths) // 2] <= 5, "most need no more than five characters"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("19ae3f2c0a1c77d0e2", ["19ae3f2c0a1c77d0e2"]),  # a whole id
        ("d0e2", ["19ae3f2c0a1c77d0e2"]),  # its short id
        ("9a1c", ["19ae3f2c0a1b3f9a1c", "19ae3f2c0a1d0a9a1c"]),  # ambiguous
        ("19ae3f2c0a1e", ["19ae3f2c0a1e55b0b0"]),  # the start, as before
        ("19ae", JOBS),
        ("ffff", []),
    ],
)
def test_an_id_its_end_or_its_start_names_a_job(given: str, expected: list[str]) -> None:
    assert resolve(given, JOBS) == expected
