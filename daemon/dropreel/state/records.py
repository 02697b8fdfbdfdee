"""The database's shape: its schema and the rows read from it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiosqlite

from dropreel.lifecycle import JobState, Phase, Progress, RemoteStatus

SCHEMA_VERSION = 6

SCHEMA = """
CREATE TABLE jobs (
    job_id        TEXT PRIMARY KEY,
    source_name   TEXT NOT NULL,
    source_path   TEXT NOT NULL,
    kept_path     TEXT,
    stem          TEXT NOT NULL,
    request       TEXT,
    state         TEXT NOT NULL,
    error         TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    post_started_at REAL,
    post_attempts INTEGER NOT NULL DEFAULT 0,
    submitted_at  REAL,
    finished_at   REAL,
    manifest_path TEXT,
    generation_count INTEGER,
    retried_as    TEXT,
    provider      TEXT,
    image_source  TEXT,
    image_path    TEXT,
    reserved_usd  REAL
);
CREATE INDEX jobs_state ON jobs (state);
CREATE UNIQUE INDEX jobs_stem ON jobs (stem) WHERE state != 'failed';
CREATE TABLE generations (
    generation_id TEXT PRIMARY KEY,
    job_id        TEXT NOT NULL REFERENCES jobs (job_id),
    idx           INTEGER NOT NULL,
    remote_status TEXT NOT NULL,
    phase         TEXT NOT NULL,
    result_url    TEXT,
    error         TEXT,
    output_path   TEXT,
    enqueued_at   REAL NOT NULL,
    completed_at  REAL,
    delivered_at  REAL,
    download_attempts INTEGER NOT NULL DEFAULT 0,
    hook_attempts INTEGER NOT NULL DEFAULT 0,
    hook_error    TEXT,
    hooked_at     REAL,
    progress      INTEGER,
    cost_usd      REAL,
    cost_is_estimate INTEGER NOT NULL DEFAULT 0,
    webhook_state TEXT,
    webhook_attempts INTEGER NOT NULL DEFAULT 0,
    webhook_error TEXT,
    UNIQUE (job_id, idx)
);
CREATE INDEX generations_webhook_due ON generations (webhook_state) WHERE webhook_state = 'due';
CREATE INDEX generations_phase ON generations (phase);
CREATE INDEX generations_enqueued ON generations (enqueued_at);
CREATE TABLE history (
    seq           INTEGER PRIMARY KEY,
    at            REAL NOT NULL,
    job_id        TEXT NOT NULL,
    generation_id TEXT,
    what          TEXT NOT NULL,
    detail        TEXT
);
CREATE INDEX history_job ON history (job_id);
CREATE TABLE meta (
    key           TEXT PRIMARY KEY,
    value         TEXT NOT NULL
);
"""


# MIGRATIONS[n] takes a database at version n + 1 to version n + 2.
MIGRATIONS = (
    # 2: how many generations the provider really made; which job a retry became.
    (
        "ALTER TABLE jobs ADD COLUMN generation_count INTEGER",
        "ALTER TABLE jobs ADD COLUMN retried_as TEXT",
    ),
    # 3: which provider a job went to (before: the only one, Oxen); progress and cost.
    (
        "ALTER TABLE jobs ADD COLUMN provider TEXT",
        "ALTER TABLE generations ADD COLUMN progress INTEGER",
        "ALTER TABLE generations ADD COLUMN cost_usd REAL",
        "ALTER TABLE generations ADD COLUMN cost_is_estimate INTEGER NOT NULL DEFAULT 0",
    ),
    # 4: the image a job sends: where it was in the inbox, and where it is kept.
    (
        "ALTER TABLE jobs ADD COLUMN image_source TEXT",
        "ALTER TABLE jobs ADD COLUMN image_path TEXT",
    ),
    # 5: the estimate a job reserves against the budget as its POST is claimed; spend by day.
    (
        "ALTER TABLE jobs ADD COLUMN reserved_usd REAL",
        "CREATE INDEX generations_enqueued ON generations (enqueued_at)",
    ),
    # 6: the webhook of each generation: due, ok or gave_up (NULL: none was configured).
    (
        "ALTER TABLE generations ADD COLUMN webhook_state TEXT",
        "ALTER TABLE generations ADD COLUMN webhook_attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE generations ADD COLUMN webhook_error TEXT",
        "CREATE INDEX generations_webhook_due ON generations (webhook_state)"
        " WHERE webhook_state = 'due'",
    ),
)

# Jobs recorded before providers had names all went to Oxen.
LEGACY_PROVIDER = "oxen"


@dataclass(frozen=True, slots=True)
class JobRow:
    job_id: str
    source_name: str
    source_path: str
    kept_path: str | None
    stem: str
    request: Mapping[str, Any] | None
    state: JobState
    error: str | None
    created_at: float
    updated_at: float
    post_started_at: float | None
    post_attempts: int
    submitted_at: float | None
    finished_at: float | None
    manifest_path: str | None
    # Set once the POST's answer is recorded: the provider may make more than asked.
    generation_count: int | None = None
    retried_as: str | None = None
    provider: str = LEGACY_PROVIDER
    image_source: str | None = None
    image_path: str | None = None
    # The job's estimated cost, reserved when its POST was claimed (None: price unknown).
    reserved_usd: float | None = None


def expected_generations(job: JobRow) -> int:
    """How many generations the job has: as recorded, else as its request asks (default 1)."""
    if job.generation_count is not None:
        return job.generation_count
    return int((job.request or {}).get("num_generations", 1))


@dataclass(frozen=True, slots=True)
class GenerationRow:
    generation_id: str
    job_id: str
    idx: int
    remote_status: RemoteStatus
    phase: Phase
    result_url: str | None
    error: str | None
    output_path: str | None
    enqueued_at: float
    completed_at: float | None
    delivered_at: float | None
    download_attempts: int
    hook_attempts: int
    hook_error: str | None
    hooked_at: float | None
    progress: int | None = None
    cost_usd: float | None = None
    cost_is_estimate: bool = False
    # The webhook: None (none configured when it finished), "due", "ok" or "gave_up".
    webhook_state: str | None = None
    webhook_attempts: int = 0
    webhook_error: str | None = None


def job_from(row: aiosqlite.Row) -> JobRow:
    request = row["request"]
    return JobRow(
        job_id=row["job_id"],
        source_name=row["source_name"],
        source_path=row["source_path"],
        kept_path=row["kept_path"],
        stem=row["stem"],
        request=json.loads(request) if request is not None else None,
        state=JobState(row["state"]),
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        post_started_at=row["post_started_at"],
        post_attempts=row["post_attempts"],
        submitted_at=row["submitted_at"],
        finished_at=row["finished_at"],
        manifest_path=row["manifest_path"],
        generation_count=row["generation_count"],
        retried_as=row["retried_as"],
        provider=row["provider"] or LEGACY_PROVIDER,
        image_source=row["image_source"],
        image_path=row["image_path"],
        reserved_usd=row["reserved_usd"],
    )


def generation_from(row: aiosqlite.Row) -> GenerationRow:
    return GenerationRow(
        generation_id=row["generation_id"],
        job_id=row["job_id"],
        idx=row["idx"],
        remote_status=RemoteStatus(row["remote_status"]),
        phase=Phase(row["phase"]),
        result_url=row["result_url"],
        error=row["error"],
        output_path=row["output_path"],
        enqueued_at=row["enqueued_at"],
        completed_at=row["completed_at"],
        delivered_at=row["delivered_at"],
        download_attempts=row["download_attempts"],
        hook_attempts=row["hook_attempts"],
        hook_error=row["hook_error"],
        hooked_at=row["hooked_at"],
        progress=row["progress"],
        cost_usd=row["cost_usd"],
        cost_is_estimate=bool(row["cost_is_estimate"]),
        webhook_state=row["webhook_state"],
        webhook_attempts=row["webhook_attempts"],
        webhook_error=row["webhook_error"],
    )


@dataclass(frozen=True, slots=True)
class Finish:
    """A generation the provider says is terminal, as it is to be recorded."""

    generation_id: str
    job_id: str
    status: RemoteStatus
    next_phase: Phase
    result_url: str | None
    error: str | None
    source: str
    progress: Progress | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A job to record as being claimed (a batch's row)."""

    job_id: str
    source_name: str
    source_path: str
    kept_path: str
    stem: str
    request: Mapping[str, Any]
    provider: str = LEGACY_PROVIDER


@dataclass(frozen=True, slots=True)
class Rejected:
    """A job file (or a batch's row) refused, to record with its reason."""

    job_id: str
    source_name: str
    source_path: str
    kept_path: str | None
    stem: str
    reason: str
