"""Filesystem moves that never overwrite and survive a crash: link-then-unlink, fsync."""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from dropreel.errors import CopyRefused
from dropreel.fs.naming import displayable, error_sidecar_name, first_free, printable
from dropreel.ops.redact import redact


def _no_op(_: str) -> None:
    pass


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
    sync_folder: bool = True,
) -> Path:
    """Give `source` a name in `folder` without replacing anything; return that name.

    A clash takes the next numbered name, unless `is_ours` says the existing file is
    this very content from an earlier run that crashed before recording it. Without
    `sync_folder`, the new name is durable only once the caller syncs `folder`.
    """
    taken_by_other: set[str] = set()

    def taken(name: str) -> bool:
        return name in taken_by_other

    while True:
        name = first_free(desired, taken)
        target = folder / name
        if target.parent != folder:
            # A preset's job names a file in its folder of the outbox (`portrait/clip.mp4`).
            target.parent.mkdir(exist_ok=True)
        try:
            os.link(source, target)
        except FileExistsError:
            if is_ours(target):
                source.unlink()
                return target
            taken_by_other.add(name)
            continue
        source.unlink()
        if sync_folder:
            fsync_dir(target.parent)
        return target


def lexists(path: Path) -> bool:
    """Whether anything, even a dangling link, has this name."""
    return os.path.lexists(path)


_COPY_CHUNK = 1 << 16
# What a file that is not a regular one is, in words (for refusals).
FILE_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symbolic link",
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
        problem = f"not a regular file ({FILE_KINDS.get(kind, 'special')})"
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


MOVE_TEMP_PREFIX = ".dropreel-move-"


def move_durably(source: Path, target: Path, *, interrupt: Callable[[str], None] = _no_op) -> None:
    """Move a file to `target` (a free name) so that a crash at any point loses nothing.

    On one filesystem, a rename. Across filesystems (inbox, state and failed may be separate
    mounts), a copy under a hidden temporary name in the target folder, fsynced, linked to
    its name, and only then the source removed: a crash leaves the source, or both copies
    (which `settle_move` resolves), never neither. `interrupt` names each step (tests stop
    the move there).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        source.rename(target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    else:
        fsync_dir(target.parent)
        fsync_dir(source.parent)
        return
    temp = target.parent / f"{MOVE_TEMP_PREFIX}{secrets.token_hex(6)}.tmp"
    _copy_exclusively(source, temp)
    interrupt("copied")
    os.link(temp, target)
    interrupt("linked")
    temp.unlink()
    fsync_dir(target.parent)
    interrupt("placed")
    source.unlink()
    fsync_dir(source.parent)


def _copy_exclusively(source: Path, temp: Path) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with source.open("rb") as reader:
        mode = stat.S_IMODE(os.fstat(reader.fileno()).st_mode)
        with os.fdopen(os.open(temp, flags, mode), "wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
            writer.flush()
            os.fsync(writer.fileno())


def settle_move(source: Path, target: Path) -> bool:
    """Finish a move a crash cut short; whether the file is now at `target`.

    Both present with the same bytes: the copy was complete, so the source goes. Different
    bytes: a new file took the source's name, and both stay.
    """
    if lexists(target):
        if source.is_file() and not source.is_symlink() and same_content(source, target):
            source.unlink()
            fsync_dir(source.parent)
        return True
    if lexists(source):
        move_durably(source, target)
        return True
    return False


def sweep_move_temps(folder: Path) -> None:
    """Remove copies a crash left unfinished (their sources are still where they were)."""
    if folder.is_dir():
        for temp in folder.glob(f"{MOVE_TEMP_PREFIX}*.tmp"):
            temp.unlink(missing_ok=True)


def move_to_failed(
    source: Path, failed: Path, reason: str, *, original_name: str, kept_name: str | None = None
) -> Path:
    """Move a refused file into `failed/` with `<name>.error.json` beside it (its name is
    `kept_name`, else its original name, made safe).

    The reason is written first, under a hidden name, so a crash at any point leaves
    either the file where it was or the file in failed/ with its reason
    (`finish_failed_moves` completes the last step at start-up).
    """
    failed.mkdir(parents=True, exist_ok=True)
    taken = {e.name for e in os.scandir(failed)}
    name = first_free(
        printable(kept_name or original_name),
        lambda n: n in taken or error_sidecar_name(n) in taken or _pending(n) in taken,
    )
    payload = {
        "file": original_name,
        "kept_as": name,
        "reason": redact(reason),
        "rejected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "moved_from": displayable(str(source)),
    }
    pending = failed / _pending(name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(pending, flags, 0o644), "w", encoding="utf-8") as handle:
        handle.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    kept = failed / name
    move_durably(source, kept)
    pending.replace(failed / error_sidecar_name(name))
    fsync_dir(failed)
    return kept


def place_in_failed(
    failed: Path, kept_name: str, content: bytes, reason: str, *, original_name: str
) -> Path:
    """Put `content` (a batch's refused row) into `failed/` as a file of its own, with its
    reason beside it, as `move_to_failed` does for a whole file."""
    failed.mkdir(parents=True, exist_ok=True)
    # A move's temporary name: a crash before it is placed leaves litter the sweep removes.
    temp = failed / f"{MOVE_TEMP_PREFIX}{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(temp, flags, 0o644), "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    return move_to_failed(temp, failed, reason, original_name=original_name, kept_name=kept_name)


def finish_failed_moves(failed: Path) -> None:
    """Finish refusals a crash cut short: place each reason, or drop it if its file never moved."""
    if not failed.is_dir():
        return
    sweep_move_temps(failed)
    for pending in failed.glob(".*.error.pending"):
        name = pending.name[1 : -len(".error.pending")]
        if os.path.lexists(failed / name):
            moved_from = _moved_from(pending)
            if moved_from is not None:
                settle_move(moved_from, failed / name)
            pending.replace(failed / error_sidecar_name(name))
        else:
            pending.unlink()  # the file is still where it was and will be judged again
    fsync_dir(failed)


def _moved_from(pending: Path) -> Path | None:
    try:
        where = json.loads(pending.read_text("utf-8")).get("moved_from")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(where) if isinstance(where, str) and where else None


def _pending(name: str) -> str:
    return f".{name}.error.pending"


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
