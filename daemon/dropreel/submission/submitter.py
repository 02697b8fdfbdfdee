"""Submission: one POST per job, retried only when it provably created nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx
import structlog

from dropreel.backoff import backoff_delay
from dropreel.clock import process_clock
from dropreel.config import Settings
from dropreel.errors import AuthRefused, DropreelError, RequestRefused, RetryableProviderError
from dropreel.fs.moves import move_to_failed
from dropreel.lifecycle import JobState, Observation
from dropreel.ops.counters import Counters
from dropreel.ops.joblog import log_job_end_from
from dropreel.ops.redact import redact
from dropreel.providers.base import Provider, RemoteGeneration
from dropreel.providers.oxen.settle import Unsettled, settle_lost_post
from dropreel.state.records import JobRow
from dropreel.state.store import Store
from dropreel.tracking.matching import Matcher
from dropreel.tracking.stream import StreamHealth

log = structlog.get_logger("dropreel.submitter")

# Failures after which the provider provably created nothing: it said so (429, 503, a refused
# key), or never heard us (no connection; a request we could not even encode). Anything else
# once the request may have left — another 5xx, a reset, a time-out, an answer we cannot read —
# is ambiguous.
_NOT_CREATED = (
    RetryableProviderError,
    AuthRefused,
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.LocalProtocolError,
)


class Submitter:
    """POSTs accepted jobs and settles the ones whose answer is lost or ambiguous."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        provider: Provider,
        matcher: Matcher,
        health: StreamHealth,
        counters: Counters,
        observe: Callable[[Observation], Awaitable[None]],
        wait_turn: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings
        self._wait_turn = wait_turn
        self._store = store
        self._provider = provider
        self._matcher = matcher
        self._health = health
        self._counters = counters
        self._observe = observe
        # Settlements adopt generations from one listing: two at once could adopt the same.
        self._settling = anyio.Lock()

    async def submit(self, job_id: str) -> None:
        job = await self._store.job(job_id)
        if job is None or job.state is not JobState.ACCEPTED or job.request is None:
            return
        bound = log.bind(job_id=job_id)
        # One stream before the first POST: its events must have somewhere to go.
        await self._health.first_attempt_done.wait()
        attempt = 0
        while True:
            # The request ceiling is waited out before the claim: a job marked as being
            # submitted must really be on the wire, or a crash would strand it as unsettled.
            if self._wait_turn is not None:
                await self._wait_turn()
            if not await self._store.claim_for_submission(job_id):
                bound.warning("job is already being submitted elsewhere; not sending it again")
                return
            try:
                # Once the POST is sent its answer must be recorded, even on shutdown.
                with anyio.CancelScope(shield=True):
                    self._counters.posts += 1
                    generations = await self._provider.enqueue(job.request)
                    early = await self._record(job, generations)
            except RequestRefused as exc:
                await self.refuse(job, f"refused by the provider: {exc.message}")
                return
            except _NOT_CREATED as exc:
                remaining = process_clock.remaining(job.created_at, self._settings.jobs.deadline_s)
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
                cause = str(exc) or type(exc).__name__
                bound.warning(
                    "the POST ended ambiguously; settling it from the listing", error=cause
                )
                await self.settle_lost_posts(
                    [job_id], cause=f"the POST ended ambiguously ({cause})"
                )
                return
            break
        for observed in early or []:
            await self._observe(observed)

    async def _record(
        self, job: JobRow, generations: list[RemoteGeneration]
    ) -> list[Observation] | None:
        """Record what the POST created; None if the answer cannot be this job's (parked)."""
        ids = list(dict.fromkeys(g.generation_id for g in generations))
        statuses = {g.generation_id: g.status for g in reversed(generations)}
        for generation_id in ids:
            known = await self._store.generation(generation_id)
            if known is not None:
                await self._park(
                    job.job_id,
                    f"the provider answered the POST with generation {generation_id}, which "
                    f"belongs to job {known.job_id}; nothing was recorded for this job",
                )
                return None
        pairs = [(g, statuses[g]) for g in ids]
        await self._store.record_submission(job.job_id, pairs)
        log.info("submitted", job_id=job.job_id, generation_ids=ids)
        return self._matcher.register(job.job_id, pairs, enqueued_at=job.created_at)

    async def _park(self, job_id: str, reason: str) -> None:
        await self._store.set_job_state(job_id, JobState.NEEDS_ATTENTION, error=reason)
        log.error("job needs attention", job_id=job_id, reason=reason)
        await log_job_end_from(self._store, job_id, "needs_attention")

    def _retry_delay(self, exc: Exception, attempt: int) -> float:
        if isinstance(exc, RetryableProviderError) and exc.retry_after_s is not None:
            return exc.retry_after_s
        floor = self._settings.events.reconnect_max_s if isinstance(exc, AuthRefused) else 0.0
        return max(floor, backoff_delay(attempt, initial_s=1.0, max_s=60.0))

    async def refuse(self, job: JobRow, reason: str) -> None:
        """The job cannot be submitted: its file goes to failed/ under its own name."""
        reason = redact(reason)

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

    async def settle_lost_posts(self, job_ids: list[str], *, cause: str | None = None) -> None:
        """Jobs whose POST answer was lost or ambiguous: adopt what they created, or park them."""
        async with self._settling:
            await self._settle(job_ids, cause)
        # Adopted generations may have finished while we were away: look once.
        self._health.request_reconcile()

    async def _settle(self, job_ids: list[str], cause: str | None) -> None:
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
                reason = f"{cause}: {outcome.reason}" if cause else outcome.reason
                await self._park(job.job_id, reason)
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
