"""The state database: one SQLite file in WAL mode; every transition is one transaction."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import anyio

from dropreel.errors import StateError
from dropreel.lifecycle import JobState, Phase, Progress, RemoteStatus
from dropreel.ops.redact import stored_text
from dropreel.state.commits import GroupCommit, Statements
from dropreel.state.reading import connect_read_only
from dropreel.state.records import (
    LEGACY_PROVIDER,
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    Claim,
    Finish,
    GenerationRow,
    JobRow,
    Rejected,
    generation_from,
    job_from,
)
from dropreel.state.spending import CLAIM_GUARD, SPEND_ROWS, USED_SINCE, Reservation


class _Executes(Protocol):
    async def execute(self, sql: str, parameters: Iterable[Any] = ..., /) -> Any: ...


# How long a write nobody waits for may wait for another commit to ride on.
DEFERRED_FLUSH_S = 0.1


class Store:
    """All reads and writes of dropreel's state."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection
        # One connection, many tasks: a transaction must not interleave with another's statements.
        self._lock = anyio.Lock()
        self._group = GroupCommit(connection, self._lock)

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path, *, read_only: bool = False) -> AsyncIterator[Store]:
        """The store in `path`, created or migrated as needed; StateError if it cannot be used."""
        try:
            store = await cls._connect(path, read_only)
        except sqlite3.Error as exc:
            raise StateError(path, state_problem(exc)) from None
        try:
            yield store
        finally:
            with anyio.CancelScope(shield=True):
                await store._group.flush()
                await store._db.close()

    @classmethod
    async def _connect(cls, path: Path, read_only: bool) -> Store:
        if read_only:
            connection = await connect_read_only(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = await aiosqlite.connect(path, isolation_level=None)
        try:
            connection.row_factory = aiosqlite.Row
            await connection.execute("PRAGMA busy_timeout = 5000")
            store = cls(connection)
            # Read before anything is written: a newer dropreel's database stays untouched.
            version = await store._schema_version()
            if version > SCHEMA_VERSION:
                raise StateError(
                    path,
                    f"was written by a newer dropreel (schema {version}; this one knows "
                    f"{SCHEMA_VERSION}): upgrade dropreel",
                )
            if not read_only:
                await connection.execute("PRAGMA journal_mode = WAL")
                await connection.execute("PRAGMA synchronous = FULL")
                await connection.execute("PRAGMA foreign_keys = ON")
            await store._migrate(version, read_only, path)
        except BaseException:
            await connection.close()
            raise
        return store

    async def _schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self, version: int, read_only: bool, path: Path) -> None:
        if version == SCHEMA_VERSION:
            return
        if read_only:
            raise StateError(path, "is not initialised yet: start the daemon once")
        async with self._direct_transaction() as db:
            if version == 0:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        await db.execute(statement)
            else:
                for step in MIGRATIONS[version - 1 :]:
                    for statement in step:
                        await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @asynccontextmanager
    async def _transaction(self, *, durable: bool = True) -> AsyncIterator[Statements]:
        """Collect a transition's writes; on exit they commit with any others waiting.

        The caller resumes only once its writes are durable, so "record, then act" holds.
        Without `durable`, the caller goes on at once and the writes ride the next commit
        (within DEFERRED_FLUSH_S): for what may be done again after a crash.
        """
        statements = Statements()
        yield statements
        if not statements.writes:
            return
        if durable:
            await self._group.commit(statements.writes)
        else:
            self._group.defer(statements.writes)

    async def run_deferred_flusher(self) -> None:
        """Commit deferred writes soon after they are made (run it in a task)."""
        await self._group.run_flusher(DEFERRED_FLUSH_S)

    @asynccontextmanager
    async def _direct_transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A transaction that reads its own writes (row counts, read-backs, schema)."""
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._db.execute("ROLLBACK")
                raise
            else:
                # The commit is the durable write: finish it even if we are being cancelled.
                with anyio.CancelScope(shield=True):
                    await self._db.execute("COMMIT")

    async def _fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        # One trip to the database thread, and no wait for the write lock: on this one
        # connection a read between a transaction's statements simply sees them.
        return list(await self._db.execute_fetchall(sql, tuple(params)))

    @staticmethod
    async def _log(
        db: _Executes,
        job_id: str,
        what: str,
        detail: str | None = None,
        generation_id: str | None = None,
    ) -> None:
        await db.execute(
            "INSERT INTO history (at, job_id, generation_id, what, detail) VALUES (?, ?, ?, ?, ?)",
            (time.time(), job_id, generation_id, what, stored_text(detail)),
        )

    # ---- jobs -------------------------------------------------------------------------

    async def stem_taken(self, stem: str) -> bool:
        rows = await self._fetch_all(
            "SELECT 1 FROM jobs WHERE stem = ? AND state != 'failed' LIMIT 1", (stem,)
        )
        return bool(rows)

    async def begin_claim(
        self,
        *,
        job_id: str,
        source_name: str,
        source_path: str,
        kept_path: str,
        stem: str,
        request: Mapping[str, Any],
        provider: str = LEGACY_PROVIDER,
        image_source: str | None = None,
        image_path: str | None = None,
    ) -> None:
        """Record a job before its file (and image) leave the inbox, so a crash mid-move is
        recoverable."""
        now = time.time()
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO jobs (job_id, source_name, source_path, kept_path, stem, request,"
                " state, created_at, updated_at, provider, image_source, image_path)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    source_name,
                    source_path,
                    kept_path,
                    stem,
                    json.dumps(request, ensure_ascii=False),
                    JobState.CLAIMING,
                    now,
                    now,
                    provider,
                    image_source,
                    image_path,
                ),
            )
            await self._log(db, job_id, "claiming", source_path)

    async def begin_batch_claim(
        self, claims: Sequence[Claim], rejected: Sequence[Rejected] = ()
    ) -> None:
        """Record every row of a batch at once, before its file leaves the inbox: its good
        rows as jobs being claimed, its bad ones as refused. One transaction, so a crash
        leaves all of them or none."""
        now = time.time()
        async with self._transaction() as db:
            for claim in claims:
                await db.execute(
                    "INSERT INTO jobs (job_id, source_name, source_path, kept_path, stem,"
                    " request, state, created_at, updated_at, provider)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        claim.job_id,
                        claim.source_name,
                        claim.source_path,
                        claim.kept_path,
                        claim.stem,
                        json.dumps(claim.request, ensure_ascii=False),
                        JobState.CLAIMING,
                        now,
                        now,
                        claim.provider,
                    ),
                )
                await self._log(db, claim.job_id, "claiming", claim.source_name)
            for refused in rejected:
                await self._insert_rejected(db, refused, now)

    async def accept_claimed(self, job_ids: Sequence[str]) -> None:
        """Claimed jobs whose file is kept now: accepted, in one commit."""
        now = time.time()
        async with self._transaction() as db:
            for job_id in job_ids:
                await db.execute(
                    "UPDATE jobs SET state = ?, updated_at = ? WHERE job_id = ? AND state = ?",
                    (JobState.ACCEPTED, now, job_id, JobState.CLAIMING),
                )
                await self._log(db, job_id, JobState.ACCEPTED.value)

    async def record_rejected(
        self,
        *,
        job_id: str,
        source_name: str,
        source_path: str,
        kept_path: str,
        stem: str,
        reason: str,
    ) -> None:
        refused = Rejected(job_id, source_name, source_path, kept_path, stem, reason)
        async with self._transaction() as db:
            await self._insert_rejected(db, refused, time.time())

    async def _insert_rejected(self, db: Statements, refused: Rejected, now: float) -> None:
        await db.execute(
            "INSERT INTO jobs (job_id, source_name, source_path, kept_path, stem, state,"
            " error, created_at, updated_at, finished_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                refused.job_id,
                refused.source_name,
                refused.source_path,
                refused.kept_path,
                refused.stem,
                JobState.FAILED,
                stored_text(refused.reason),
                now,
                now,
                now,
            ),
        )
        await self._log(db, refused.job_id, "rejected", refused.reason)

    async def set_job_state(
        self,
        job_id: str,
        state: JobState,
        *,
        error: str | None = None,
        kept_path: str | None = None,
    ) -> None:
        now = time.time()
        if state is JobState.SUBMITTING:
            raise ValueError("use claim_for_submission: only one worker may submit a job")
        finished = now if state in (JobState.FAILED, JobState.COMPLETED) else None
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET state = ?, updated_at = ?, error = COALESCE(?, error),"
                " kept_path = COALESCE(?, kept_path), finished_at = COALESCE(?, finished_at)"
                " WHERE job_id = ?",
                (state, now, stored_text(error), kept_path, finished, job_id),
            )
            await self._log(db, job_id, state.value, error)

    async def hold_unsubmitted(self, job_id: str, reason: str) -> bool:
        """Record why an accepted job waits (the budget holds it); False if it is no longer
        waiting to be sent (cancelled meanwhile, say). The story gets a line only when the
        reason changes."""
        async with self._direct_transaction() as db:
            cursor = await db.execute(
                "UPDATE jobs SET error = ?, updated_at = ? WHERE job_id = ? AND state = ?"
                " AND error IS NOT ?",
                (stored_text(reason), time.time(), job_id, JobState.ACCEPTED, stored_text(reason)),
            )
            if cursor.rowcount == 1:
                await self._log(db, job_id, "held", reason)
                return True
            async with db.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)) as found:
                row = await found.fetchone()
        return row is not None and row[0] == JobState.ACCEPTED

    async def claim_for_submission(
        self, job_id: str, reservation: Reservation | None = None
    ) -> bool:
        """Move an accepted job to submitting; False if another worker (or run) got there
        first, or, with a budget, if its reservation would cross a cap.

        The compare-and-set is what guarantees one POST per job: only its winner may send.
        Its estimate is reserved in the same statement, counted with everything else spent or
        reserved, so submissions at once cannot all fit under a cap one by one.
        """
        now = time.time()
        claim = Statements()
        estimate = reservation.estimate_usd if reservation is not None else None
        guarded = reservation is not None and reservation.guarded
        claim.compare_and_set(
            _CLAIM + (CLAIM_GUARD if guarded else ""),
            (
                JobState.SUBMITTING,
                now,
                now,
                estimate,
                job_id,
                JobState.ACCEPTED,
                *(reservation.guard_params() if reservation is not None and guarded else ()),
            ),
        )
        await self._log(claim, job_id, JobState.SUBMITTING.value)
        # Joins the group commit: the claim is durable before the POST, as ever, but shares
        # its disk write with whatever else is committing.
        return await self._group.commit(claim.writes)

    async def budget_used(self, day_start: float, month_start: float) -> tuple[float, float]:
        """Spent or reserved since the start of the day and of the month, in US dollars."""
        rows = await self._fetch_all(
            f"SELECT {USED_SINCE}, {USED_SINCE}",
            (day_start, day_start, month_start, month_start),
        )
        return float(rows[0][0]), float(rows[0][1])

    async def spend_rows(self, since: float) -> list[tuple[float, str, object, float | None, bool]]:
        """(created at, provider, model, cost, is an estimate) of each generation since `since`."""
        rows = await self._fetch_all(SPEND_ROWS, (since,))
        return [(r[0], r[1] or LEGACY_PROVIDER, r[2], r[3], bool(r[4])) for r in rows]

    async def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Jobs by state and generations by phase: a cheap round-trip that proves the database."""
        jobs = await self._fetch_all("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        phases = await self._fetch_all(
            "SELECT phase, COUNT(*) AS n FROM generations GROUP BY phase"
        )
        return {r["state"]: r["n"] for r in jobs}, {r["phase"]: r["n"] for r in phases}

    async def request_reconcile(self) -> None:
        """Ask a running daemon (it looks every heartbeat) to check its generations over REST."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('reconcile_requested', ?)",
                (repr(time.time()),),
            )

    async def reconcile_requested_at(self) -> float:
        rows = await self._fetch_all("SELECT value FROM meta WHERE key = 'reconcile_requested'")
        return float(rows[0]["value"]) if rows else 0.0

    async def note(
        self, job_id: str, what: str, detail: str | None = None, generation_id: str | None = None
    ) -> None:
        """Add a line to a job's story (an operator's action, say)."""
        async with self._transaction() as db:
            await self._log(db, job_id, what, detail, generation_id)

    async def cancel_unsubmitted(self, job_id: str, reason: str) -> bool:
        """Fail a job that has not been POSTed yet; False if a submitter already took it."""
        now = time.time()
        async with self._direct_transaction() as db:
            cursor = await db.execute(
                "UPDATE jobs SET state = ?, error = ?, updated_at = ?, finished_at = ?"
                " WHERE job_id = ? AND state = ?",
                (JobState.FAILED, stored_text(reason), now, now, job_id, JobState.ACCEPTED),
            )
            won = cursor.rowcount == 1
            if won:
                await self._log(db, job_id, "cancelled", reason)
        return won

    async def mark_retried(self, job_id: str, placed: str) -> bool:
        """Record that a parked or failed job was resubmitted as `placed`; False if it already
        was (or is no longer retryable). The compare-and-set that makes a retry happen once."""
        now = time.time()
        async with self._direct_transaction() as db:
            cursor = await db.execute(
                "UPDATE jobs SET retried_as = ?, state = ?, error = ?, updated_at = ?,"
                " finished_at = COALESCE(finished_at, ?)"
                " WHERE job_id = ? AND retried_as IS NULL AND state IN (?, ?)",
                (
                    placed,
                    JobState.FAILED,
                    f"resubmitted on request (dropreel retry) as {placed}",
                    now,
                    now,
                    job_id,
                    JobState.NEEDS_ATTENTION,
                    JobState.FAILED,
                ),
            )
            won = cursor.rowcount == 1
            if won:
                await self._log(db, job_id, "retried", placed)
        return won

    async def mark_retried_as(self, job_id: str, placed: str) -> None:
        """Correct where a retry's copy landed (its name was taken meanwhile)."""
        async with self._transaction() as db:
            await db.execute("UPDATE jobs SET retried_as = ? WHERE job_id = ?", (placed, job_id))
            await self._log(db, job_id, "retry placed", placed)

    async def job_from_source(self, source_path: str) -> JobRow | None:
        """The newest job taken from this path, if any."""
        rows = await self._fetch_all(
            "SELECT * FROM jobs WHERE source_path = ? ORDER BY created_at DESC LIMIT 1",
            (source_path,),
        )
        return job_from(rows[0]) if rows else None

    async def known_generation_ids(self) -> set[str]:
        rows = await self._fetch_all("SELECT generation_id FROM generations")
        return {r["generation_id"] for r in rows}

    async def record_submission(
        self,
        job_id: str,
        generations: list[tuple[str, RemoteStatus]],
        *,
        how: str = "submitted",
        estimate_each_usd: float | None = None,
    ) -> None:
        """The POST's answer: the job's generations exist and are billed (each costs
        `estimate_each_usd`, an estimate, until the provider says)."""
        now = time.time()
        estimated = int(estimate_each_usd is not None)
        async with self._transaction() as db:
            await db.executemany(
                "INSERT INTO generations (generation_id, job_id, idx, remote_status, phase,"
                " enqueued_at, cost_usd, cost_is_estimate) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (gid, job_id, idx, status, Phase.WAITING, now, estimate_each_usd, estimated)
                    for idx, (gid, status) in enumerate(generations, start=1)
                ],
            )
            await db.execute(
                "UPDATE jobs SET state = ?, submitted_at = ?, updated_at = ?, generation_count = ?"
                " WHERE job_id = ?",
                (JobState.SUBMITTED, now, now, len(generations), job_id),
            )
            await self._log(db, job_id, how, ",".join(g for g, _ in generations))

    async def complete_job(
        self, job_id: str, manifest_path: str, *, at: float | None = None
    ) -> None:
        now = time.time() if at is None else at
        async with self._transaction() as db:
            await self._completed(db, job_id, manifest_path, now)

    async def _completed(self, db: Statements, job_id: str, manifest_path: str, now: float) -> None:
        await db.execute(
            "UPDATE jobs SET state = ?, manifest_path = ?, updated_at = ?, finished_at = ?"
            " WHERE job_id = ?",
            (JobState.COMPLETED, manifest_path, now, now, job_id),
        )
        await self._log(db, job_id, "completed", manifest_path)

    async def job(self, job_id: str) -> JobRow | None:
        rows = await self._fetch_all("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        return job_from(rows[0]) if rows else None

    async def jobs(self, states: Iterable[JobState] | None = None) -> list[JobRow]:
        if states is None:
            rows = await self._fetch_all("SELECT * FROM jobs ORDER BY created_at, job_id")
        else:
            wanted = [s.value for s in states]
            marks = ",".join("?" * len(wanted))
            rows = await self._fetch_all(
                f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY created_at, job_id",  # noqa: S608
                wanted,
            )
        return [job_from(r) for r in rows]

    async def jobs_ready_to_complete(self) -> list[str]:
        """Submitted jobs whose every generation is delivered or terminal."""
        rows = await self._fetch_all(
            "SELECT j.job_id FROM jobs j WHERE j.state = 'submitted' AND NOT EXISTS ("
            " SELECT 1 FROM generations g WHERE g.job_id = j.job_id"
            " AND g.phase IN ('waiting', 'downloading'))"
        )
        return [r["job_id"] for r in rows]

    async def history(self, job_id: str) -> list[aiosqlite.Row]:
        return await self._fetch_all(
            "SELECT * FROM history WHERE job_id = ? ORDER BY seq", (job_id,)
        )

    # ---- generations ----------------------------------------------------------------

    async def generation(self, generation_id: str) -> GenerationRow | None:
        rows = await self._fetch_all(
            "SELECT * FROM generations WHERE generation_id = ?", (generation_id,)
        )
        return generation_from(rows[0]) if rows else None

    async def generation_with_job(self, generation_id: str) -> tuple[GenerationRow, JobRow] | None:
        """A generation and its job in one trip to the database."""
        rows = await self._fetch_all(
            "SELECT g.*, j.* FROM generations g JOIN jobs j USING (job_id)"
            " WHERE g.generation_id = ?",
            (generation_id,),
        )
        return (generation_from(rows[0]), job_from(rows[0])) if rows else None

    async def waiting_generations(
        self, page_rows: int = 5_000
    ) -> AsyncIterator[list[tuple[str, str, str, float, str]]]:
        """(generation id, job id, status, job accepted at, provider) of every waiting
        generation, a page at a time.

        Lean on purpose: a restart with a hundred thousand pending must neither build rows
        nor hold them all at once.
        """
        after = 0
        while True:
            rows = await self._fetch_all(
                "SELECT g.rowid, g.generation_id, g.job_id, g.remote_status, j.created_at,"
                " j.provider FROM generations g JOIN jobs j USING (job_id)"
                " WHERE g.phase = 'waiting' AND g.rowid > ? ORDER BY g.rowid LIMIT ?",
                (after, page_rows),
            )
            if not rows:
                return
            after = rows[-1][0]
            # A provider's name is one string, however many of its generations wait.
            yield [(r[1], r[2], r[3], r[4], sys.intern(r[5] or LEGACY_PROVIDER)) for r in rows]

    async def generations_of(self, job_id: str) -> list[GenerationRow]:
        rows = await self._fetch_all(
            "SELECT * FROM generations WHERE job_id = ? ORDER BY idx", (job_id,)
        )
        return [generation_from(r) for r in rows]

    async def generations_in(self, phase: Phase) -> list[GenerationRow]:
        rows = await self._fetch_all(
            "SELECT * FROM generations WHERE phase = ? ORDER BY enqueued_at", (phase.value,)
        )
        return [generation_from(r) for r in rows]

    async def all_generations(self) -> list[GenerationRow]:
        rows = await self._fetch_all("SELECT * FROM generations ORDER BY job_id, idx")
        return [generation_from(r) for r in rows]

    async def update_remote_status(
        self, generation_id: str, status: RemoteStatus, progress: Progress | None = None
    ) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE generations SET remote_status = ? WHERE generation_id = ?",
                (status, generation_id),
            )
            if progress is not None:
                await self._record_progress(db, generation_id, progress)

    @staticmethod
    async def _record_progress(db: Statements, generation_id: str, progress: Progress) -> None:
        await db.execute(
            "UPDATE generations SET progress = COALESCE(?, progress),"
            " cost_usd = COALESCE(?, cost_usd),"
            " cost_is_estimate = CASE WHEN ? IS NULL THEN cost_is_estimate ELSE ? END"
            " WHERE generation_id = ?",
            (
                progress.percent,
                progress.cost_usd,
                progress.cost_usd,
                int(progress.cost_is_estimate),
                generation_id,
            ),
        )

    async def record_finished(self, finishes: Sequence[Finish]) -> None:
        """The provider says these generations are terminal (or gave fresher result URLs):
        one commit for them all."""
        now = time.time()
        async with self._transaction() as db:
            for finish in finishes:
                if finish.progress is not None:
                    await self._record_progress(db, finish.generation_id, finish.progress)
                await db.execute(
                    "UPDATE generations SET remote_status = ?, phase = ?, result_url = ?,"
                    " error = ?, completed_at = COALESCE(completed_at, ?)"
                    " WHERE generation_id = ?",
                    (
                        finish.status,
                        finish.next_phase,
                        finish.result_url,
                        stored_text(finish.error),
                        now,
                        finish.generation_id,
                    ),
                )
                await self._log(
                    db,
                    finish.job_id,
                    f"generation {finish.status.value}",
                    f"via {finish.source}" + (f": {finish.error}" if finish.error else ""),
                    finish.generation_id,
                )

    async def update_result_url(self, generation_id: str, result_url: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE generations SET result_url = ? WHERE generation_id = ?",
                (result_url, generation_id),
            )

    async def record_download_failure(self, generation_id: str, job_id: str, error: str) -> int:
        async with self._direct_transaction() as db:
            await db.execute(
                "UPDATE generations SET download_attempts = download_attempts + 1"
                " WHERE generation_id = ?",
                (generation_id,),
            )
            await self._log(db, job_id, "download failed", error, generation_id)
            async with db.execute(
                "SELECT download_attempts FROM generations WHERE generation_id = ?",
                (generation_id,),
            ) as cursor:
                row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def record_delivered(
        self,
        generation: GenerationRow,
        output_path: str | None,
        error: str | None = None,
        *,
        at: float | None = None,
        completed_manifest: str | None = None,
    ) -> None:
        """The result is in the outbox (or will never be): the hook is next. With
        `completed_manifest`, this generation was the whole job, and its manifest is written:
        the job is complete in the same commit."""
        now = time.time() if at is None else at
        async with self._transaction() as db:
            await db.execute(
                "UPDATE generations SET phase = ?, output_path = ?, delivered_at = ?,"
                " error = COALESCE(?, error) WHERE generation_id = ?",
                (
                    Phase.HOOKING,
                    output_path,
                    now,
                    stored_text(error),
                    generation.generation_id,
                ),
            )
            await self._log(
                db,
                generation.job_id,
                "delivered" if error is None else "delivery failed",
                output_path or error,
                generation.generation_id,
            )
            if completed_manifest is not None:
                await self._completed(db, generation.job_id, completed_manifest, now)

    async def record_hook_attempt(
        self,
        generation: GenerationRow,
        *,
        error: str | None,
        give_up: bool,
        detail: str | None = None,
        durable: bool = True,
    ) -> None:
        """One run of the hook; the story keeps how it ended (`error`, else `detail`).
        Not `durable`: a crash before the next commit runs the hook again (hooks run at least
        once)."""
        done = error is None or give_up
        async with self._transaction(durable=durable) as db:
            await db.execute(
                "UPDATE generations SET hook_attempts = hook_attempts + 1, hook_error = ?,"
                " phase = ?, hooked_at = CASE WHEN ? IS NULL THEN ? ELSE hooked_at END"
                " WHERE generation_id = ?",
                (
                    stored_text(error),
                    Phase.DONE if done else Phase.HOOKING,
                    error,
                    time.time(),
                    generation.generation_id,
                ),
            )
            await self._log(
                db,
                generation.job_id,
                "hook ok" if error is None else ("hook gave up" if give_up else "hook failed"),
                error if error is not None else detail,
                generation.generation_id,
            )

    async def want_webhook(self, generation_id: str) -> None:
        """The generation's webhook is due (once: a rerun or a restart does not make it so
        again)."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE generations SET webhook_state = 'due'"
                " WHERE generation_id = ? AND webhook_state IS NULL",
                (generation_id,),
            )

    async def record_webhook_attempt(
        self, generation: GenerationRow, *, error: str | None, give_up: bool, detail: str
    ) -> None:
        """One attempt at the webhook; the story keeps how it ended, as for a command hook."""
        state = "ok" if error is None else ("gave_up" if give_up else "due")
        async with self._transaction() as db:
            await db.execute(
                "UPDATE generations SET webhook_attempts = webhook_attempts + 1,"
                " webhook_error = ?, webhook_state = ? WHERE generation_id = ?",
                (stored_text(error), state, generation.generation_id),
            )
            what = {"ok": "hook ok", "gave_up": "hook gave up", "due": "hook failed"}[state]
            await self._log(db, generation.job_id, what, detail, generation.generation_id)

    async def webhooks_due(self) -> list[str]:
        rows = await self._fetch_all(
            "SELECT generation_id FROM generations WHERE webhook_state = 'due'"
        )
        return [r[0] for r in rows]

    async def mark_hook_skipped(self, generation: GenerationRow, *, durable: bool = True) -> None:
        async with self._transaction(durable=durable) as db:
            await db.execute(
                "UPDATE generations SET phase = ? WHERE generation_id = ?",
                (Phase.DONE, generation.generation_id),
            )

    # ---- for people: status, show and the commands that name a job ----------------------

    async def job_ids(self) -> list[str]:
        """Every job's id, oldest first."""
        rows = await self._db.execute_fetchall("SELECT job_id FROM jobs ORDER BY created_at")
        return [r[0] for r in rows]

    async def jobs_with_generations(
        self, *, since: float | None = None
    ) -> list[tuple[JobRow, list[GenerationRow]]]:
        """Jobs accepted since `since` (every job without it), oldest first, each with its
        generations: two queries, however many jobs."""
        accepted = "WHERE j.created_at >= ?" if since is not None else ""
        return await self._with_generations(accepted, (since,) if since is not None else ())

    async def jobs_open_or_finished_since(
        self, since: float
    ) -> list[tuple[JobRow, list[GenerationRow]]]:
        """Jobs not finished (or with a generation not done), and those finished since
        `since`, oldest first, each with its generations (`dropreel watch`)."""
        return await self._with_generations(
            "WHERE j.finished_at IS NULL OR j.finished_at >= ? OR EXISTS (SELECT 1 FROM"
            " generations o WHERE o.job_id = j.job_id AND o.phase != 'done')",
            (since,),
        )

    async def _with_generations(
        self, where: str, params: tuple[Any, ...]
    ) -> list[tuple[JobRow, list[GenerationRow]]]:
        jobs = await self._fetch_all(
            f"SELECT * FROM jobs j {where} ORDER BY j.created_at, j.job_id",  # noqa: S608
            params,
        )
        generations: dict[str, list[GenerationRow]] = {}
        for row in await self._fetch_all(
            f"SELECT g.* FROM generations g JOIN jobs j USING (job_id) {where}"  # noqa: S608
            " ORDER BY g.job_id, g.idx",
            params,
        ):
            generations.setdefault(row["job_id"], []).append(generation_from(row))
        return [(job_from(r), generations.get(r["job_id"], [])) for r in jobs]

    async def recent_durations(self, limit: int = 1000) -> list[tuple[str, str, float]]:
        """(provider, model, seconds from enqueue to completion) of the latest generations
        that succeeded, newest first."""
        rows = await self._fetch_all(
            "SELECT j.provider, json_extract(j.request, '$.model'),"
            " g.completed_at - g.enqueued_at FROM generations g JOIN jobs j USING (job_id)"
            " WHERE g.remote_status = 'succeeded' AND g.completed_at IS NOT NULL"
            " ORDER BY g.completed_at DESC LIMIT ?",
            (limit,),
        )
        return [(r[0] or LEGACY_PROVIDER, str(r[1]), float(r[2])) for r in rows]

    async def latest_history(self, limit: int) -> list[tuple[float, str, str, str | None]]:
        """(when, job name, what, detail) of the latest `limit` history rows, newest first."""
        rows = await self._fetch_all(
            "SELECT h.at, COALESCE(j.stem, h.job_id), h.what, h.detail FROM history h"
            " LEFT JOIN jobs j USING (job_id) ORDER BY h.seq DESC LIMIT ?",
            (limit,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def costs_since(self, since: float) -> list[tuple[float | None, bool]]:
        """(cost, is an estimate) of each generation created since `since`."""
        rows = await self._db.execute_fetchall(
            "SELECT cost_usd, cost_is_estimate FROM generations WHERE enqueued_at >= ?", (since,)
        )
        return [(r[0], bool(r[1])) for r in rows]

    async def want_hooks_again(
        self, generation_ids: Iterable[str], *, by_daemon: bool
    ) -> list[str]:
        """Make the hooks that gave up on these generations due again (`dropreel hooks
        rerun`); those that were (a compare-and-set: a hook already due is not made due
        twice). `by_daemon`: marked for the running daemon to pick up."""
        wanted = []
        async with self._direct_transaction() as db:
            for generation_id in generation_ids:
                cursor = await db.execute(
                    "UPDATE generations SET phase = ? WHERE generation_id = ? AND phase = ?"
                    " AND hook_error IS NOT NULL",
                    (Phase.HOOKING, generation_id, Phase.DONE),
                )
                webhook = await db.execute(
                    "UPDATE generations SET webhook_state = 'due' WHERE generation_id = ?"
                    " AND webhook_state = 'gave_up'",
                    (generation_id,),
                )
                if cursor.rowcount != 1 and webhook.rowcount != 1:
                    continue
                wanted.append(generation_id)
                if by_daemon:
                    await db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        (_RERUN + generation_id, repr(time.time())),
                    )
                async with db.execute(
                    "SELECT job_id FROM generations WHERE generation_id = ?", (generation_id,)
                ) as found:
                    row = await found.fetchone()
                if row is not None:
                    await self._log(db, row[0], "hook rerun asked", None, generation_id)
        return wanted

    async def take_hook_reruns(self) -> list[str]:
        """The generations whose hooks `dropreel hooks rerun` made due for the daemon, each
        handed out once."""
        rows = await self._fetch_all(
            "SELECT key FROM meta WHERE substr(key, 1, ?) = ?", (len(_RERUN), _RERUN)
        )
        if not rows:
            return []
        keys = [r["key"] for r in rows]
        async with self._transaction() as db:
            await db.executemany("DELETE FROM meta WHERE key = ?", [(k,) for k in keys])
        return [k.removeprefix(_RERUN) for k in keys]


# Accepted -> submitting, reserving the job's estimate (CLAIM_GUARD may follow).
_CLAIM = (
    "UPDATE jobs SET state = ?, updated_at = ?, post_started_at = ?,"
    " post_attempts = post_attempts + 1, reserved_usd = ? WHERE job_id = ? AND state = ?"
)

# Meta rows, one per generation whose hook a person asked to run again.
_RERUN = "hook_rerun:"


# What an operator can do about each SQLite failure, by its primary result code.
_STATE_FIXES = {
    "SQLITE_CORRUPT": "is damaged: restore it from a backup, or move it aside to start afresh",
    "SQLITE_NOTADB": "is not a SQLite database: restore it, or move it aside to start afresh",
    "SQLITE_READONLY": "is read-only: give dropreel's user write access to it and its folder",
    "SQLITE_FULL": "cannot grow, the disk is full: free space and dropreel carries on",
    "SQLITE_CANTOPEN": "cannot be opened: check that its folder exists and is writable",
    "SQLITE_IOERR": "failed with an I/O error: check the disk",
    "SQLITE_BUSY": "is locked by another program: close it",
    "SQLITE_LOCKED": "is locked by another program: close it",
    "SQLITE_PERM": "is not accessible: check its permissions",
}


def state_problem(exc: sqlite3.Error) -> str:
    """What went wrong with the database and what to do, in words."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    primary = "_".join(name.split("_")[:2])
    fix = _STATE_FIXES.get(primary)
    return f"{fix} ({exc})" if fix else f"failed: {exc}"
