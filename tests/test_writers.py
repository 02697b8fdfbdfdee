"""A file still being written is never taken: the kernel's word, else a stability rule."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import dropreel.intake.reading
from dropreel.intake.writers import StabilityWatch, open_for_writing
from dropreel_simulator.oxen import Simulator

from .daemon_harness import run_daemon, settings_for


def stat_of(size: int, mtime_ns: int) -> os.stat_result:
    return os.stat_result((0o100644, 0, 0, 1, 0, 0, size, 0, 0, 0, 0, 0, 0, mtime_ns))


def write_slowly(path: Path, script: str) -> subprocess.Popen[bytes]:
    """A shell writing `path` through its stdout (the file stays open while it runs)."""
    with path.open("w") as output:
        return subprocess.Popen(["sh", "-c", script], stdout=output)


def test_a_file_open_for_writing_anywhere_is_reported_as_such(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    with path.open("w") as writer:
        writer.write("half")
        fd = os.open(path, os.O_RDONLY)
        try:
            assert open_for_writing(fd) is True
        finally:
            os.close(fd)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert open_for_writing(fd) is False
    finally:
        os.close(fd)


def test_without_the_kernels_word_a_file_must_stay_unchanged_for_a_while() -> None:
    watch = StabilityWatch(stable_s=10.0)
    assert not watch.settled("a", stat_of(5, 1), now=0.0)
    assert not watch.settled("a", stat_of(5, 1), now=9.9)
    assert not watch.settled("a", stat_of(9, 2), now=12.0), "it grew: the clock starts over"
    assert not watch.settled("a", stat_of(9, 2), now=21.0)
    assert watch.settled("a", stat_of(9, 2), now=22.0)
    watch.forget("a")
    assert not watch.settled("a", stat_of(9, 2), now=23.0)


def test_with_no_stability_window_a_file_is_settled_at_once() -> None:
    assert StabilityWatch(stable_s=0).settled("a", stat_of(1, 1), now=0.0)


async def test_a_writer_that_pauses_with_the_file_open_is_submitted_whole(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, simulator)
    settings.inbox_dir.mkdir(parents=True)
    # `cat > inbox/slow.txt` with a pause: no temporary name, the file open all along.
    writer = write_slowly(
        settings.inbox_dir / "slow.txt",
        'printf "A slow aerial shot" ; sleep 3 ; printf " of a foggy forest"',
    )
    try:
        await run_daemon(settings, timeout_s=60)
    finally:
        writer.wait(timeout=30)
    [(body, _)] = simulator.enqueued
    assert body["prompt"] == "A slow aerial shot of a foggy forest"


async def test_where_the_kernel_cannot_tell_the_file_waits_until_it_is_stable(
    tmp_path: Path, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network filesystem: no leases. The stability rule is what protects the prompt."""
    monkeypatch.setattr(dropreel.intake.reading, "open_for_writing", lambda fd: None)
    settings = settings_for(tmp_path, simulator, inbox={"stable_s": 2.0})
    settings.inbox_dir.mkdir(parents=True)
    writer = write_slowly(
        settings.inbox_dir / "nfs.json",
        'printf "{\\"prompt\\": \\"half" ; sleep 1 ; printf " and whole\\"}"',
    )
    try:
        await run_daemon(settings, timeout_s=60)
    finally:
        writer.wait(timeout=30)
    [(body, _)] = simulator.enqueued
    assert body["prompt"] == "half and whole"
