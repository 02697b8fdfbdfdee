"""The one canonical log line written when a job ends, or stops needing the daemon."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from dropreel.ops.report import job_summary
from dropreel.state.records import GenerationRow, JobRow
from dropreel.state.store import Store

log = structlog.get_logger("dropreel.jobs")


def log_job_end(job: JobRow, generations: Sequence[GenerationRow], outcome: str) -> None:
    """Outcome, durations and attempts of a job, in one line."""
    summary = job_summary(job, generations, outcome=outcome)
    (log.info if outcome == "completed" else log.warning)("job finished", **summary)


async def log_job_end_from(store: Store, job_id: str, outcome: str) -> None:
    """The same line, for a job whose rows are not at hand: read them first."""
    job = await store.job(job_id)
    if job is not None:
        log_job_end(job, await store.generations_of(job_id), outcome)
