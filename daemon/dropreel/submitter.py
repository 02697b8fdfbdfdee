"""Submission: one POST per job, retried only when it provably created nothing."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx
import structlog

from dropreel.backoff import backoff_delay
from dropreel.config import Settings
from dropreel.counters import Counters
from dropreel.errors import AuthRefused, DropreelError, RequestRefused, RetryableProviderError
from dropreel.events import StreamHealth
from dropreel.files import move_to_failed
from dropreel.joblog import log_job_end_from
from dropreel.lifecycle import JobState, Observation
from dropreel.matching import Matcher
from dropreel.provider import Provider, RemoteGeneration
from dropreel.records import JobRow
from dropreel.settle import Unsettled, settle_lost_post
from dropreel.store import Store

log = structlog.get_logger("dropreel.submitter")

# Failures after which the provider provably created nothing: it said so, or never heard us.
_NOT_CREATED = (RetryableProviderError, AuthRefused, httpx.ConnectError, httpx.ConnectTimeout)


class Submitter:
    """POSTs accepted jobs and settles the ones whose answer a crash lost."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        provider: Provider,
        matcher: Matcher,
        health: StreamHealth,
        counters: Counters,
        observe: Callable[[Observation], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._store = store
        self._provider = provider
        self._matcher = matcher
        self._health = health
        self._counters = counters
        self._observe = observe

    async def submit(self, job_id: str) -> None:
        job = await self._store.job(job_id)
        if job is None or job.state is not JobState.ACCEPTED or job.request is None:
            return
        bound = log.bind(job_id=job_id)
        # One stream before the first POST: its events must have somewhere to go.
        await self._health.first_attempt_done.wait()
        attempt = 0
        while True:
            if not await self._store.claim_for_submission(job_id):
                bound.warning("job is already being submitted elsewhere; not sending it again")
                return
            try:
                # Once the POST is sent its answer must be recorded, even on shutdown.
                with anyio.CancelScope(shield=True):
                    self._counters.posts += 1
                    generations = await self._provider.enqueue(job.request)
                    pairs = [(g.generation_id, g.status) for g in generations]
                    await self._store.record_submission(job_id, pairs)
                    early = self._matcher.register(job_id, pairs, enqueued_at=job.created_at)
            except RequestRefused as exc:
                await self.refuse(job, f"refused by the provider: {exc.message}")
                return
            except _NOT_CREATED as exc:
                remaining = job.created_at + self._settings.jobs.deadline_s - time.time()
                if remaining <= 0:
                    await self.refuse(
                        job, f"not submitted within the job deadline; last error: {exc}"
                    )
                    return
                await self._store.set_job_state(job_id, JobState.ACCEPTED, error=str(exc))
                delay = min(self._retry_delay(exc, attempt), remaining)
                attempt += 1
                bound.warning("submission will be retried", error=str(exc), retry_in_s=delay)
                await anyio.sleep(delay)
                continue
            except (httpx.HTTPError, DropreelError) as exc:
                await self._store.set_job_state(
                    job_id,
                    JobState.NEEDS_ATTENTION,
                    error=f"the POST's answer was lost ({exc}); it may have been created and "
                    "billed, so it was not resubmitted",
                )
                bound.error("job needs attention", error=str(exc))
                await log_job_end_from(self._store, job_id, "needs_attention")
                return
            break
        bound.info("submitted", generation_ids=[g for g, _ in pairs])
        for observed in early:
            await self._observe(observed)

    def _retry_delay(self, exc: Exception, attempt: int) -> float:
        if isinstance(exc, RetryableProviderError) and exc.retry_after_s is not None:
            return exc.retry_after_s
        floor = self._settings.events.reconnect_max_s if isinstance(exc, AuthRefused) else 0.0
        return max(floor, backoff_delay(attempt, initial_s=1.0, max_s=60.0))

    async def refuse(self, job: JobRow, reason: str) -> None:
        """The job cannot be submitted: its file goes to failed/ under its own name."""

        def move() -> str | None:
            kept = Path(job.kept_path) if job.kept_path else None
            if kept is None or not kept.exists():
                return None
            failed = self._settings.failed_dir
            return str(move_to_failed(kept, failed, reason, original_name=job.source_name))

        moved = await anyio.to_thread.run_sync(move)
        await self._store.set_job_state(job.job_id, JobState.FAILED, error=reason, kept_path=moved)
        self._counters.jobs_failed += 1
        await log_job_end_from(self._store, job.job_id, "failed")

    async def settle_lost_posts(self, job_ids: list[str]) -> None:
        """Jobs whose POST answer was lost in a crash: adopt what they created, or park them."""
        candidates = await self._listing_for(len(job_ids))
        taken = await self._store.known_generation_ids()
        window_s = self._settings.oxen.connect_timeout_s + self._settings.oxen.read_timeout_s
        jobs = [j for j in await self._store.jobs([JobState.SUBMITTING]) if j.job_id in job_ids]
        for job in sorted(jobs, key=lambda j: j.post_started_at or j.updated_at):
            outcome = settle_lost_post(
                job.request or {},
                job.post_started_at or job.updated_at,
                window_s=window_s,
                candidates=candidates,
                taken=taken,
            )
            if isinstance(outcome, Unsettled):
                await self._store.set_job_state(
                    job.job_id, JobState.NEEDS_ATTENTION, error=outcome.reason
                )
                log.error("job needs attention", job_id=job.job_id, reason=outcome.reason)
                await log_job_end_from(self._store, job.job_id, "needs_attention")
                continue
            pairs = [(g.generation_id, g.status) for g in outcome.generations]
            taken.update(g for g, _ in pairs)
            await self._store.record_submission(job.job_id, pairs, how="adopted from the listing")
            early = self._matcher.register(job.job_id, pairs, enqueued_at=job.created_at)
            log.warning(
                "lost POST settled from the queue listing",
                job_id=job.job_id,
                generation_ids=[g for g, _ in pairs],
            )
            for observed in early:
                await self._observe(observed)
        # Adopted generations may have finished while we were away: look once.
        self._health.request_reconcile()

    async def _listing_for(self, jobs: int) -> list[RemoteGeneration]:
        attempt = 0
        while True:
            try:
                return await self._provider.list_recent()
            except (httpx.HTTPError, DropreelError) as exc:
                delay = backoff_delay(attempt, initial_s=1.0, max_s=60.0)
                attempt += 1
                log.warning(
                    "cannot list the queue to settle lost POSTs",
                    error=str(exc),
                    retry_in_s=round(delay, 2),
                    jobs=jobs,
                )
                await anyio.sleep(delay)
