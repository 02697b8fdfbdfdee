"""`dropreel submit`: what lands in the inbox, and what is refused without blocking."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dropreel.errors import CopyRefused
from dropreel.fs.moves import copy_into_folder

from .test_e2e import dropreel


def test_the_copy_is_readable_by_the_daemons_group_whatever_the_umask(tmp_path: Path) -> None:
    source = tmp_path / "cat.txt"
    source.write_text("a cat")
    previous = os.umask(0o077)
    try:
        placed = copy_into_folder(source, tmp_path / "inbox")
    finally:
        os.umask(previous)
    assert placed == tmp_path / "inbox" / "cat.txt"
    assert placed.read_text() == "a cat"
    assert stat.S_IMODE(placed.stat().st_mode) & 0o040, "group-readable"
    assert [p.name for p in (tmp_path / "inbox").iterdir()] == ["cat.txt"]


def test_a_name_already_in_the_inbox_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "cat.txt").write_text("first")
    source = tmp_path / "cat.txt"
    source.write_text("second")
    assert copy_into_folder(source, tmp_path / "inbox").name == "cat_2.txt"
    assert (tmp_path / "inbox" / "cat.txt").read_text() == "first"


def test_a_fifo_is_refused_at_once_instead_of_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with pytest.raises(CopyRefused, match="not a regular file \\(a FIFO\\)"):
        copy_into_folder(fifo, tmp_path / "inbox")
    inbox = tmp_path / "inbox"
    assert not inbox.exists() or not any(inbox.iterdir()), "no temporary left behind"


def test_a_huge_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as handle:
        handle.truncate(8 * 1024 * 1024 * 1024)  # sparse: 8 GiB that cost nothing to make
    with pytest.raises(CopyRefused, match="file is 8589934592 bytes; the limit is 1048576"):
        copy_into_folder(huge, tmp_path / "inbox", max_bytes=1024 * 1024)


def test_submit_refuses_a_fifo_and_a_directory_in_one_line_each(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    (tmp_path / "folder.txt").mkdir()
    good = tmp_path / "good.txt"
    good.write_text("fine")
    config = tmp_path / "dropreel.toml"
    config.write_text("")
    result = dropreel(
        "submit",
        str(fifo),
        str(tmp_path / "folder.txt"),
        str(good),
        "--config",
        str(config),
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"dropreel: {fifo}: not a regular file (a FIFO)",
        f"dropreel: {tmp_path / 'folder.txt'}: not a regular file (a directory)",
    ]
    assert result.stdout.strip() == str(tmp_path / "inbox" / "good.txt")
