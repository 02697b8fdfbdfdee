"""Filesystem moves that never overwrite and survive a crash: link-then-unlink, fsync."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from dropreel.errors import CopyRefused
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


def lexists(path: Path) -> bool:
    """Whether anything, even a dangling link, has this name."""
    return os.path.lexists(path)


_COPY_CHUNK = 1 << 16
_FILE_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def shared_file_mode() -> int:
    """0644 less the umask, but always readable by the group: a daemon running as another
    user of the same group must be able to read what a person drops."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o644 & ~umask) | 0o040


def stage_copy(source: Path, folder: Path, *, prefix: str, max_bytes: int | None = None) -> Path:
    """Copy a regular file into `folder` under a hidden temporary name; that name.

    Streams in chunks, never blocks on a FIFO or device, and refuses (CopyRefused) anything
    but a regular file, or one over `max_bytes`. The copy is fsynced before it is returned.
    """
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise CopyRefused(str(source), exc.strerror or str(exc)) from None
    info = os.fstat(fd)
    kind = stat.S_IFMT(info.st_mode)
    problem = None
    if kind != stat.S_IFREG:
        problem = f"not a regular file ({_FILE_KINDS.get(kind, 'special')})"
    elif max_bytes is not None and info.st_size > max_bytes:
        problem = f"file is {info.st_size} bytes; the limit is {max_bytes}"
    if problem is not None:
        os.close(fd)
        raise CopyRefused(str(source), problem)
    with os.fdopen(fd, "rb") as reader:
        folder.mkdir(parents=True, exist_ok=True)
        out, temp_name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
        temp = Path(temp_name)
        try:
            with os.fdopen(out, "wb") as writer:
                os.fchmod(writer.fileno(), shared_file_mode())
                _copy_bounded(reader, writer, source, max_bytes)
                writer.flush()
                os.fsync(writer.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    return temp


def _copy_bounded(
    reader: IO[bytes], writer: IO[bytes], source: Path, max_bytes: int | None
) -> None:
    copied = 0
    while chunk := reader.read(_COPY_CHUNK):
        copied += len(chunk)
        if max_bytes is not None and copied > max_bytes:
            raise CopyRefused(str(source), f"file grew past the limit of {max_bytes} bytes")
        writer.write(chunk)


def copy_into_folder(source: Path, folder: Path, *, max_bytes: int | None = None) -> Path:
    """Copy a file into `folder` atomically under its own name (or the next free one):
    hidden temporary first, then a no-clobber link, so nobody sees it half-written."""
    staged = stage_copy(source, folder, prefix=".dropreel-submit-", max_bytes=max_bytes)
    return link_no_clobber(staged, folder, source.name)


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
