"""The one canonical log line written when a job ends, or stops needing the daemon."""

from __future__ import annotations

import structlog

from dropreel.report import job_summary
from dropreel.store import Store

log = structlog.get_logger("dropreel.jobs")


async def log_job_end(store: Store, job_id: str, outcome: str) -> None:
    """Outcome, durations and attempts of a job, in one line, from what the database holds."""
    job = await store.job(job_id)
    if job is None:
        return
    generations = await store.generations_of(job_id)
    attempts = await store.post_attempts(job_id)
    summary = job_summary(job, generations, post_attempts=attempts, outcome=outcome)
    (log.info if outcome == "completed" else log.warning)("job finished", **summary)
