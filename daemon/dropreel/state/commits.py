"""Group commit: the writes of concurrent transitions made durable together, each batch in
one trip to the database's thread."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import aiosqlite
import anyio
import structlog

T = TypeVar("T")

log = structlog.get_logger("dropreel.state")


@dataclass(frozen=True, slots=True)
class Write:
    sql: str
    params: tuple[Any, ...]
    # A compare-and-set: when it changes no row, the transition's other writes are skipped.
    must_change: bool = False


class Statements:
    """Writes collected for one transition, committed together with others'."""

    def __init__(self) -> None:
        self.writes: list[Write] = []

    async def execute(self, sql: str, parameters: Iterable[Any] = (), /) -> None:
        self.writes.append(Write(sql, tuple(parameters)))

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        self.writes.extend(Write(sql, tuple(row)) for row in rows)

    def compare_and_set(self, sql: str, parameters: Iterable[Any]) -> None:
        """The transition happens only if `sql` changes exactly one row (see GroupCommit)."""
        if self.writes:
            raise ValueError("a compare-and-set must be a transition's first write")
        self.writes.append(Write(sql, tuple(parameters), must_change=True))


@dataclass(slots=True)
class _Waiting:
    writes: list[Write]
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: bool | BaseException = True
    # Nobody waits for it: a failure can only be logged.
    deferred: bool = False


class GroupCommit:
    """Commits each caller's writes, together with whatever else is queued meanwhile.

    A caller resumes only once its writes are durable, so "record, then act" holds. One bad
    transition does not undo the others committed with it: the batch is then committed caller
    by caller, still in the same trip to the database thread.
    """

    def __init__(self, connection: aiosqlite.Connection, lock: anyio.Lock) -> None:
        self._db = connection
        # Shared with the store's direct transactions: one connection, one writer at a time.
        self._lock = lock
        self._queued: list[_Waiting] = []
        self._deferred: list[_Waiting] = []
        self._committing = False
        # Set while deferred writes wait; `run_flusher` commits them soon after.
        self._deferred_waiting = anyio.Event()

    def defer(self, writes: list[Write]) -> None:
        """Writes whose durability nobody waits for: they ride the next commit, or are
        committed by `run_flusher` within `flush_after_s`."""
        self._deferred.append(_Waiting(writes, deferred=True))
        self._deferred_waiting.set()

    async def flush(self) -> None:
        """Commit the deferred writes now, if there are any. A failure is logged, not
        raised: nobody waits for these writes."""
        if self._deferred:
            await self._committed(_Waiting([], deferred=True))

    async def run_flusher(self, flush_after_s: float) -> None:
        while True:
            await self._deferred_waiting.wait()
            await anyio.sleep(flush_after_s)
            await self.flush()

    async def commit(self, writes: list[Write]) -> bool:
        """Make `writes` durable; False if their compare-and-set changed nothing."""
        waiting = await self._committed(_Waiting(writes))
        if isinstance(waiting.outcome, BaseException):
            raise waiting.outcome
        return waiting.outcome

    async def _committed(self, waiting: _Waiting) -> _Waiting:
        self._queued.append(waiting)
        if self._committing:
            await waiting.done.wait()
        else:
            self._committing = True
            try:
                # The commits are the durable writes: shielded, so a cancelled caller
                # never leaves the others it carries unwritten.
                with anyio.CancelScope(shield=True):
                    while self._queued:
                        batch = [*self._deferred, *self._queued]
                        self._queued, self._deferred = [], []
                        if self._deferred_waiting.is_set():
                            # Only a set event is replaced: the flusher may wait on this one.
                            self._deferred_waiting = anyio.Event()
                        await self._commit_batch(batch)
            finally:
                self._committing = False
        return waiting

    async def _commit_batch(self, batch: list[_Waiting]) -> None:
        try:
            async with self._lock:
                outcomes = await on_database_thread(
                    self._db, lambda db: commit_each([w.writes for w in batch], db)
                )
            for waiting, outcome in zip(batch, outcomes, strict=True):
                waiting.outcome = outcome
        except Exception as exc:
            # The connection itself failing fails the whole batch, but every caller still
            # wakes with the reason, and the next batch is still tried.
            for waiting in batch:
                waiting.outcome = exc
        finally:
            for waiting in batch:
                waiting.done.set()
                if waiting.deferred and isinstance(waiting.outcome, BaseException):
                    log.warning(
                        "a deferred write failed: what it recorded may be done again after a"
                        " restart",
                        error=str(waiting.outcome),
                    )


def commit_each(
    transitions: list[list[Write]], db: sqlite3.Connection
) -> list[bool | sqlite3.Error]:
    """Commit every transition in one transaction; if one fails, each in its own. Blocking."""
    try:
        return list(_in_one_transaction(transitions, db))
    except sqlite3.Error:
        outcomes: list[bool | sqlite3.Error] = []
        for writes in transitions:
            try:
                outcomes.extend(_in_one_transaction([writes], db))
            except sqlite3.Error as exc:
                outcomes.append(exc)
        return outcomes


def _in_one_transaction(transitions: list[list[Write]], db: sqlite3.Connection) -> list[bool]:
    db.execute("BEGIN IMMEDIATE")
    try:
        applied = [_apply(writes, db) for writes in transitions]
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return applied


def _apply(writes: list[Write], db: sqlite3.Connection) -> bool:
    for write in writes:
        changed = db.execute(write.sql, write.params).rowcount
        if write.must_change and changed != 1:
            return False
    return True


async def on_database_thread(
    connection: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]
) -> T:
    """Run `work` on aiosqlite's own thread with its sqlite3 connection.

    A whole transaction in one hand-off between threads, where aiosqlite's public calls cost
    one per statement (BEGIN, each write, COMMIT): each hand-off is 125-180 us of CPU on a
    small VM. aiosqlite has no public call for this; `_execute` is the one its own methods
    all go through (checked against 0.20-0.22; tests/test_store pins the behaviour).
    """
    run_on_thread: Callable[[Callable[[], T]], Awaitable[Any]] = connection._execute
    return cast(T, await run_on_thread(lambda: work(connection._conn)))
