"""Filesystem moves that never overwrite and survive a crash: link-then-unlink, fsync."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dropreel.naming import error_sidecar_name, first_free, printable


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def link_no_clobber(
    source: Path,
    folder: Path,
    desired: str,
    *,
    is_ours: Callable[[Path], bool] = lambda _: False,
) -> Path:
    """Give `source` a name in `folder` without replacing anything; return that name.

    A clash takes the next numbered name, unless `is_ours` says the existing file is
    this very content from an earlier run that crashed before recording it.
    """
    taken_by_other: set[str] = set()

    def taken(name: str) -> bool:
        return name in taken_by_other

    while True:
        name = first_free(desired, taken)
        target = folder / name
        try:
            os.link(source, target)
        except FileExistsError:
            if is_ours(target):
                source.unlink()
                return target
            taken_by_other.add(name)
            continue
        source.unlink()
        fsync_dir(folder)
        return target


def write_new_file(folder: Path, desired: str, data: bytes) -> Path:
    """Create a file under a free name, atomically: nobody ever sees it half-written."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    temp = Path(temp_name)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        while True:
            target = folder / first_free(desired, lambda n: os.path.lexists(folder / n))
            try:
                os.link(temp, target)
            except FileExistsError:
                continue
            fsync_dir(folder)
            return target
    finally:
        temp.unlink()


def same_content(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes (sizes first, then a streaming compare)."""
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        with a.open("rb") as left, b.open("rb") as right:
            while True:
                chunk = left.read(1 << 20)
                if chunk != right.read(1 << 20):
                    return False
                if not chunk:
                    return True
    except OSError:
        return False


def rename_durably(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)
    fsync_dir(target.parent)
    fsync_dir(source.parent)


def move_to_failed(source: Path, failed: Path, reason: str, *, original_name: str) -> Path:
    """Move a refused file into `failed/` with `<name>.error.json` beside it.

    The reason is written first, under a hidden name, so a crash at any point leaves
    either the file still in the inbox or the file in failed/ with its reason
    (`finish_failed_moves` completes the last step at start-up).
    """
    failed.mkdir(parents=True, exist_ok=True)
    taken = {e.name for e in os.scandir(failed)}
    name = first_free(
        printable(original_name),
        lambda n: n in taken or error_sidecar_name(n) in taken or _pending(n) in taken,
    )
    payload = {
        "file": original_name,
        "kept_as": name,
        "reason": reason,
        "rejected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    pending = failed / _pending(name)
    with pending.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    kept = failed / name
    _rename_across(source, kept)
    pending.replace(failed / error_sidecar_name(name))
    fsync_dir(failed)
    return kept


def finish_failed_moves(failed: Path) -> None:
    """Finish refusals a crash cut short: place each reason, or drop it if its file never moved."""
    if not failed.is_dir():
        return
    for pending in failed.glob(".*.error.pending"):
        name = pending.name[1 : -len(".error.pending")]
        if os.path.lexists(failed / name):
            pending.replace(failed / error_sidecar_name(name))
        else:
            pending.unlink()  # the file is still in the inbox and will be judged again
    fsync_dir(failed)


def _pending(name: str) -> str:
    return f".{name}.error.pending"


def _rename_across(source: Path, target: Path) -> None:
    try:
        source.rename(target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # Another filesystem: shutil copies, then removes the original only once copied.
        shutil.move(os.fspath(source), os.fspath(target))


def probe_folder(folder: Path) -> str | None:
    """Create the folder if needed and write in it; the problem in words, or None if usable.

    A real probe: permission bits say nothing when running as root.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"{folder}: {exc.strerror or exc}"
    return None
