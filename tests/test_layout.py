from __future__ import annotations

from pathlib import Path

import pytest

from dropreel.config import toml_text
from dropreel.fs.layout import overlap, overlap_problem

from .test_e2e import dropreel


def folders(root: Path, **paths: str) -> dict[str, Path]:
    base = {"inbox": "in", "outbox": "out", "failed": "failed", "state": "state"}
    base.update(paths)
    return {f"paths.{key}": root / value for key, value in base.items()}


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        ({}, None),
        ({"failed": "in"}, ("paths.inbox", "paths.failed")),
        ({"outbox": "in/out"}, ("paths.inbox", "paths.outbox")),
        ({"state": "in/.state"}, ("paths.inbox", "paths.state")),
        ({"inbox": "state/inbox"}, ("paths.inbox", "paths.state")),
        ({"outbox": "./failed/../failed"}, ("paths.outbox", "paths.failed")),
        # Siblings whose names share a prefix do not overlap.
        ({"inbox": "box", "outbox": "box2"}, None),
    ],
)
def test_overlapping_folders_are_found(
    tmp_path: Path, paths: dict[str, str], expected: tuple[str, str] | None
) -> None:
    assert overlap(folders(tmp_path, **paths)) == expected


def test_a_symlink_to_another_folder_is_the_same_folder(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "in")
    assert overlap(folders(tmp_path, failed="alias")) == ("paths.inbox", "paths.failed")


def test_the_problem_names_both_folders_and_both_keys(tmp_path: Path) -> None:
    key, problem = overlap_problem(folders(tmp_path, outbox="in/out")) or ("", "")
    assert key == "paths.inbox"
    assert f"{tmp_path / 'in'} contains paths.outbox ({tmp_path / 'in' / 'out'})" in problem


def test_run_refuses_overlapping_folders_in_one_line_before_touching_anything(
    tmp_path: Path,
) -> None:
    config = tmp_path / "dropreel.toml"
    config.write_text(toml_text({"paths": {"inbox": "drop", "failed": "drop"}}))
    result = dropreel("run", "--config", str(config))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("dropreel: config error: paths.inbox: ")
    assert "is the same folder as paths.failed" in line
    assert not (tmp_path / "state").exists()
