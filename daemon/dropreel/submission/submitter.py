"""Submission: one POST per job, retried only when it provably created nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import structlog

from dropreel.backoff import backoff_delay
from dropreel.clock import process_clock
from dropreel.config import Settings
from dropreel.errors import (
    AuthRefused,
    DropreelError,
    NotSent,
    RequestRefused,
    RetryableProviderError,
)
from dropreel.fs.moves import move_to_failed
from dropreel.intake.assets import image_media_type
from dropreel.intake.batches import batch_of, refused_row
from dropreel.lifecycle import JobState, Observation
from dropreel.ops.counters import Counters
from dropreel.ops.joblog import log_job_end_from
from dropreel.ops.redact import redact
from dropreel.providers.base import ImageInput, Provider, Recovery, RemoteGeneration, Unsettled
from dropreel.providers.catalogue import ModelCatalogue
from dropreel.spend.budget import Go, Used, periods
from dropreel.spend.estimate import each_usd
from dropreel.spend.gate import Budget
from dropreel.stage import Drain, Stage
from dropreel.state.records import JobRow
from dropreel.state.store import Store
from dropreel.submission.holdup import Holdup, budget_text, holdup_text, read_holdup
from dropreel.tracking.matching import Matcher
from dropreel.tracking.tracker import Tracker

log = structlog.get_logger("dropreel.submitter")

# Failures after which the provider provably created nothing: it said so (429, 503, a refused
# key), or never heard us (no connection; a request we could not even encode). Anything else
# once the request may have left — another 5xx, a reset, a time-out, an answer we cannot read —
# is ambiguous.
_NOT_CREATED = (RetryableProviderError, AuthRefused, NotSent)
# With an idempotency key every failure may be retried: a resend is replayed, not billed.
_RESENDABLE: tuple[type[Exception], ...] = (DropreelError,)


class Submitter:
    """POSTs accepted jobs and settles the ones whose answer is lost or ambiguous."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        trackers: Mapping[str, Tracker],
        matcher: Matcher,
        counters: Counters,
        observe: Callable[[Observation], Awaitable[None]],
        drain: Drain,
        models: ModelCatalogue,
    ) -> None:
        self._settings = settings
        # Its own queue of accepted jobs and its own workers.
        self.stage = Stage("submit", self.submit, workers=settings.submit.concurrency, drain=drain)
        self._store = store
        self._trackers = trackers
        self._matcher = matcher
        self._counters = counters
        self._observe = observe
        # Settlements adopt generations from one listing: two at once could adopt the same.
        self._settling = anyio.Lock()
        self.budget = Budget(settings.budget, models)

    async def release_held(self) -> None:
        """Send the jobs the budget held to the stage again when it may let them go."""
        released: AsyncIterator[list[str]] = self.budget.released()
        async for job_ids in released:
            for job_id in job_ids:
                await self.stage.put(job_id)

    async def submit(self, job_id: str, *, replay: bool = False) -> None:
        """POST an accepted job (`replay`: again, with its key, after an answer that was lost:
        what it made may exist and be billed, so the budget does not hold it)."""
        job = await self._store.job(job_id)
        if job is None or job.state is not JobState.ACCEPTED or job.request is None:
            return
        tracker = await self._tracker_or_refuse(job)
        if tracker is None:
            return
        image: ImageInput | None = None
        if job.image_path is not None:
            read = await anyio.to_thread.run_sync(kept_image, Path(job.image_path))
            if isinstance(read, str):
                await self.refuse(job, read)
                return
            image = read
        # One stream before the first POST: its events must have somewhere to go.
        await tracker.health.first_attempt_done.wait()
        estimate = await self.budget.estimate(job.provider, job.request)
        early = await self._send(job, job.request, tracker, image, estimate, replay=replay)
        for observed in early or []:
            await self._observe(observed)

    async def _send(
        self,
        job: JobRow,
        request: Mapping[str, Any],
        tracker: Tracker,
        image: ImageInput | None = None,
        estimate: float | None = None,
        *,
        replay: bool = False,
    ) -> list[Observation] | None:
        """POST until the answer is recorded, the job refused or held by the budget, or its
        POST left to settle; events that came before the answer."""
        bound = log.bind(job_id=job.job_id, provider=job.provider)
        provider = tracker.provider
        # A lost answer may simply be sent again where the provider replays a repeated key.
        retry_on = _RESENDABLE if provider.capabilities.idempotency_keys else _NOT_CREATED
        attempt = 0
        while True:
            # Once a POST may have made something, sending it again (with its key) is a replay
            # that learns what was made: holding it would strand a paid result.
            if not replay and await self._held_by_budget(job, estimate):
                return None
            # The request ceiling is waited out before the claim: a job marked as being
            # submitted must really be on the wire, or a crash would strand it as unsettled.
            if tracker.connected.wait_turn is not None:
                await tracker.connected.wait_turn()
            reservation = self.budget.reservation(estimate, time.time(), guarded=not replay)
            if not await self._store.claim_for_submission(job.job_id, reservation):
                if reservation.guarded and await self._held_by_budget(job, estimate, raced=True):
                    return None
                bound.warning("job is already being submitted elsewhere; not sending it again")
                return None
            try:
                # Once the POST is sent its answer must be recorded, even on shutdown.
                with anyio.CancelScope(shield=True):
                    self._counters.posts += 1
                    generations = await provider.enqueue(
                        request, idempotency_key=idempotency_key(job.job_id), image=image
                    )
                    early = await self._record(job, generations, estimate)
            except RequestRefused as exc:
                await self.refuse(job, f"refused by the provider: {exc.message}")
                return None
            except retry_on as exc:
                replay = replay or not isinstance(exc, _NOT_CREATED)
                if not await self._wait_to_retry(job, exc, attempt):
                    return None
                attempt += 1
                continue
            except DropreelError as exc:
                cause = str(exc) or type(exc).__name__
                bound.warning(
                    "the POST ended ambiguously; settling it from the listing", error=cause
                )
                await self.settle_lost_posts(
                    [job.job_id], cause=f"the POST ended ambiguously ({cause})"
                )
                return None
            return early

    async def _held_by_budget(
        self, job: JobRow, estimate: float | None, *, raced: bool = False
    ) -> bool:
        """Hold the job if its estimate would cross a cap (`raced`: its claim was refused for
        that, jobs sent at the same time having taken the room); True if it is held, or no
        longer waiting to be sent."""
        if not self.budget.caps.active:
            return False
        period = periods(time.time())
        used = Used(*await self._store.budget_used(period.day_start, period.month_start))
        verdict = self.budget.decide(estimate, used)
        if isinstance(verdict, Go) and not raced:
            if (read_holdup(job.error) or (None,))[0] is Holdup.BUDGET:
                log.info("the budget lets a held job go ahead", job_id=job.job_id)
            return False
        reason = (
            "jobs sent at the same time took the rest of the budget"
            if isinstance(verdict, Go)
            else verdict.reason
        )
        if not await self._store.hold_unsubmitted(job.job_id, budget_text(reason)):
            return True  # cancelled, or taken, meanwhile: nothing to hold
        self.budget.hold(job.job_id)
        log.warning(
            "job held by the budget", job_id=job.job_id, estimate_usd=estimate, reason=reason
        )
        return True

    async def _tracker_or_refuse(self, job: JobRow) -> Tracker | None:
        """The job's provider; None if it is no longer configured (the job is refused)."""
        tracker = self._trackers.get(job.provider)
        if tracker is None:
            known = ", ".join(sorted(self._trackers))
            await self.refuse(
                job, f"provider {job.provider!r} is not configured any more ({known})"
            )
        return tracker

    async def _wait_to_retry(self, job: JobRow, exc: Exception, attempt: int) -> bool:
        """Back off before sending again; False if the job's deadline has passed (refused)."""
        remaining = process_clock.remaining(job.created_at, self._settings.jobs.deadline_s)
        if remaining <= 0:
            await self.refuse(job, f"not submitted within the job deadline; last error: {exc}")
            return False
        await self._store.set_job_state(job.job_id, JobState.ACCEPTED, error=holdup_text(exc))
        delay = min(self._retry_delay(exc, attempt), remaining)
        log.warning(
            "submission will be retried", job_id=job.job_id, error=str(exc), retry_in_s=delay
        )
        await anyio.sleep(delay)
        return True

    async def _record(
        self, job: JobRow, generations: list[RemoteGeneration], estimate: float | None
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
        each = each_usd(estimate, job.request or {})
        await self._store.record_submission(job.job_id, pairs, estimate_each_usd=each)
        log.info("submitted", job_id=job.job_id, generation_ids=ids)
        return self._matcher.register(
            job.job_id, pairs, enqueued_at=job.created_at, provider=job.provider
        )

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
            if batch_of(job.source_name) is not None:
                # The batch stays kept for its other rows: this row's request goes alone.
                return str(refused_row(failed, job, reason))
            return str(move_to_failed(kept, failed, reason, original_name=job.source_name))

        moved = await anyio.to_thread.run_sync(move)
        await self._store.set_job_state(job.job_id, JobState.FAILED, error=reason, kept_path=moved)
        self._counters.jobs_failed += 1
        await log_job_end_from(self._store, job.job_id, "failed")

    async def settle_lost_posts(self, job_ids: list[str], *, cause: str | None = None) -> None:
        """Jobs whose POST answer was lost or ambiguous: send again where the provider replays
        a repeated key; else adopt what they created, or park them."""
        jobs = [j for j in await self._store.jobs([JobState.SUBMITTING]) if j.job_id in job_ids]
        for job in jobs:
            tracker = self._trackers.get(job.provider)
            if tracker is not None and tracker.provider.capabilities.idempotency_keys:
                log.warning(
                    "resending a POST whose answer was lost, with its key", job_id=job.job_id
                )
                await self._store.set_job_state(job.job_id, JobState.ACCEPTED)
                await self.submit(job.job_id, replay=True)
        async with self._settling:
            await self._settle(
                [j for j in jobs if j.provider in self._trackers and not self._resendable(j)],
                cause,
            )
        # Adopted generations may have finished while we were away: look once.
        for tracker in self._trackers.values():
            tracker.health.request_reconcile()

    def _resendable(self, job: JobRow) -> bool:
        return self._trackers[job.provider].provider.capabilities.idempotency_keys

    async def _settle(self, jobs: list[JobRow], cause: str | None) -> None:
        taken = await self._store.known_generation_ids()
        for job in sorted(jobs, key=lambda j: j.post_started_at or j.updated_at):
            provider = self._trackers[job.provider].provider
            config = self._settings.providers[job.provider]
            outcome = await self._recovery(
                provider,
                job,
                window_s=config.connect_timeout_s + config.read_timeout_s,
                taken=taken,
            )
            if isinstance(outcome, Unsettled):
                reason = f"{cause}: {outcome.reason}" if cause else outcome.reason
                await self._park(job.job_id, reason)
                continue
            pairs = [(g.generation_id, g.status) for g in outcome.generations]
            taken.update(g for g, _ in pairs)
            await self._store.record_submission(
                job.job_id,
                pairs,
                how="adopted from the listing",
                estimate_each_usd=each_usd(job.reserved_usd, job.request or {}),
            )
            early = self._matcher.register(
                job.job_id, pairs, enqueued_at=job.created_at, provider=job.provider
            )
            log.warning(
                "lost POST settled from the queue listing",
                job_id=job.job_id,
                generation_ids=[g for g, _ in pairs],
            )
            for observed in early:
                await self._observe(observed)

    @staticmethod
    async def _recovery(
        provider: Provider, job: JobRow, *, window_s: float, taken: set[str]
    ) -> Recovery:
        """What the lost POST created, asked until the provider can say."""
        attempt = 0
        while True:
            try:
                return await provider.recover_lost_post(
                    job.request or {},
                    job.post_started_at or job.updated_at,
                    window_s=window_s,
                    taken=taken,
                )
            except DropreelError as exc:
                delay = backoff_delay(attempt, initial_s=1.0, max_s=60.0)
                attempt += 1
                log.warning(
                    "cannot list the provider's generations to settle a lost POST",
                    job_id=job.job_id,
                    error=str(exc),
                    retry_in_s=round(delay, 2),
                )
                await anyio.sleep(delay)


def kept_image(path: Path) -> ImageInput | str:
    """The image a job sends, read from where it is kept; or why it cannot be sent."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"its image {path.name} cannot be read: {exc.strerror}"
    media_type = image_media_type(data)
    if media_type is None:
        return f"its image {path.name} is not a PNG, JPEG or WebP image any more"
    # Kept as `<job id>-<name>`: the provider sees the name it was dropped with.
    return ImageInput(path.name.split("-", 1)[-1], media_type, data)


def idempotency_key(job_id: str) -> str:
    """The key every create for this job carries: the same across retries and restarts."""
    return f"dropreel-{job_id}"
