"""Opening the state database to read only, as a person who may not write its folder."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite


def read_only_uri(path: Path, *, immutable: bool = False) -> str:
    """A read-only SQLite URI for `path`: percent-encoded, so `#` and `?` stay in the path."""
    return f"{path.absolute().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")


async def connect_read_only(path: Path) -> aiosqlite.Connection:
    """A connection that reads `path` and can write nothing, also where the folder is
    read-only to its reader (a member of the service's group)."""
    connection = await aiosqlite.connect(read_only_uri(path), uri=True)
    try:
        # SQLite opens lazily: the first read is where a missing index shows.
        await connection.execute("PRAGMA user_version")
    except sqlite3.OperationalError as exc:
        await connection.close()
        if not _needs_index_it_cannot_make(exc) or _wal(path).exists():
            raise
        # A WAL database needs its `-shm` index, which a reader makes when it is missing,
        # and this reader cannot. It is missing when the last writer closed cleanly, which
        # also folded the `-wal` into the main file and removed it: the main file alone is
        # the whole database, read without the index. (A daemon starting in this instant
        # writes only to a new `-wal`, which this read then does not see.)
        return await aiosqlite.connect(read_only_uri(path, immutable=True), uri=True)
    except BaseException:
        await connection.close()
        raise
    return connection


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _needs_index_it_cannot_make(exc: sqlite3.OperationalError) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith("SQLITE_READONLY") or name.startswith("SQLITE_CANTOPEN")
