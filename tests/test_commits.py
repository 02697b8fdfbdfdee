from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
import anyio
import pytest

from dropreel.state.commits import GroupCommit, Statements, Write


@asynccontextmanager
async def committer(path: Path, statements_seen: list[str]) -> AsyncIterator[GroupCommit]:
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
        await db.set_trace_callback(statements_seen.append)
        yield GroupCommit(db, anyio.Lock())


def rows(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as raw:
        return sorted(raw.execute("SELECT k, v FROM t").fetchall())


def insert(key: str, value: str = "v") -> Write:
    return Write("INSERT INTO t (k, v) VALUES (?, ?)", (key, value))


async def test_transitions_queued_meanwhile_share_one_transaction(tmp_path: Path) -> None:
    seen: list[str] = []
    async with committer(tmp_path / "db", seen) as group, anyio.create_task_group() as tasks:
        for n in range(20):
            tasks.start_soon(group.commit, [insert(f"k{n}"), insert(f"k{n}-history")])
    assert len(rows(tmp_path / "db")) == 40
    # The first caller commits alone; the nineteen that queued meanwhile, together.
    assert seen.count("BEGIN IMMEDIATE") == 2


async def test_a_failed_transition_is_undone_alone(tmp_path: Path) -> None:
    seen: list[str] = []
    async with committer(tmp_path / "db", seen) as group:
        await group.commit([insert("taken")])
        outcomes: dict[str, object] = {}

        async def commit(label: str, writes: list[Write]) -> None:
            try:
                outcomes[label] = await group.commit(writes)
            except sqlite3.IntegrityError:
                outcomes[label] = "refused"

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(commit, "fresh", [insert("a"), insert("a2")])
            tasks.start_soon(commit, "clash", [insert("b"), insert("taken")])
            tasks.start_soon(commit, "another", [insert("c")])
    assert outcomes == {"fresh": True, "clash": "refused", "another": True}
    assert [k for k, _ in rows(tmp_path / "db")] == ["a", "a2", "c", "taken"]


async def test_a_compare_and_set_that_changes_nothing_skips_the_transition(
    tmp_path: Path,
) -> None:
    async with committer(tmp_path / "db", []) as group:
        await group.commit([insert("job", "accepted")])

        def claim() -> list[Write]:
            statements = Statements()
            statements.compare_and_set(
                "UPDATE t SET v = 'submitting' WHERE k = 'job' AND v = 'accepted'", ()
            )
            statements.writes.append(insert(f"history-{len(results)}"))
            return statements.writes

        results: list[bool] = []
        for _ in range(3):
            results.append(await group.commit(claim()))
    assert results == [True, False, False]
    assert rows(tmp_path / "db") == [("history-0", "v"), ("job", "submitting")]


def test_a_compare_and_set_must_come_first() -> None:
    statements = Statements()
    statements.writes.append(insert("x"))
    with pytest.raises(ValueError, match="first write"):
        statements.compare_and_set("UPDATE t SET v = 'y'", ())


async def test_a_deferred_write_rides_the_next_commit(tmp_path: Path) -> None:
    seen: list[str] = []
    async with committer(tmp_path / "db", seen) as group:
        group.defer([insert("hook done")])
        assert rows(tmp_path / "db") == [], "deferred: nothing written yet"
        await group.commit([insert("next transition")])
        assert [k for k, _ in rows(tmp_path / "db")] == ["hook done", "next transition"]
    assert seen.count("BEGIN IMMEDIATE") == 1


async def test_a_deferred_write_with_nothing_to_ride_is_flushed_soon(tmp_path: Path) -> None:
    async with committer(tmp_path / "db", []) as group, anyio.create_task_group() as tasks:
        tasks.start_soon(group.run_flusher, 0.05)
        await anyio.sleep(0.01)
        # A commit with nothing deferred meanwhile must not leave the flusher deaf.
        await group.commit([insert("before")])
        group.defer([insert("hook done")])
        with anyio.fail_after(5):
            while len(rows(tmp_path / "db")) < 2:  # noqa: ASYNC110 (another connection writes)
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    assert [k for k, _ in rows(tmp_path / "db")] == ["before", "hook done"]
