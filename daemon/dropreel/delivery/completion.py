"""Completion: a finished generation's result into the outbox, the job's manifest, the hook."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path

import anyio
import structlog
from pydantic import SecretStr

from dropreel.backoff import backoff_delay
from dropreel.clock import process_clock
from dropreel.config import Settings, key_sources
from dropreel.delivery.download import Downloader, write_manifest
from dropreel.errors import DropreelError, ResultUrlRefused
from dropreel.fs.moves import fsync_dir
from dropreel.hooks.run import hook_environment, hook_fields, hook_stdin, run_hook
from dropreel.hooks.webhooks import Webhooks
from dropreel.lifecycle import JobState, Phase, job_state_after_generations
from dropreel.ops.counters import Counters
from dropreel.ops.joblog import log_job_end
from dropreel.ops.metrics import Metrics
from dropreel.providers.base import Provider
from dropreel.stage import Drain, Stage
from dropreel.state.records import GenerationRow, JobRow, expected_generations
from dropreel.state.store import Store

log = structlog.get_logger("dropreel.completion")


class Completion:
    """Downloads, manifests and hooks, each retried on its own schedule."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        providers: Mapping[str, Provider],
        counters: Counters,
        *,
        environ: Mapping[str, str],
        api_keys: Mapping[str, SecretStr] | None,
        metrics: Metrics,
        drain: Drain,
        webhooks: Webhooks | None = None,
    ) -> None:
        self._settings = settings
        # The webhook stage, when hooks.on_complete_url is set: handed each generation too.
        self._webhooks = webhooks
        self._store = store
        self._providers = providers
        self._counters = counters
        self._environ = environ
        self._key_sources = key_sources(settings, api_keys) if api_keys is not None else None
        self._metrics = metrics
        # Two stages, each with its own queue, workers and retries; running downloads and
        # hooks are given the grace period on a graceful stop.
        self.deliveries = Stage(
            "deliver",
            self.deliver,
            workers=settings.delivery.concurrency,
            drain=drain,
            finish_on_stop=True,
        )
        self.hooks = Stage(
            "hook", self.hook, workers=settings.hooks.concurrency, drain=drain, finish_on_stop=True
        )
        self._downloaders = {
            name: Downloader(
                provider,
                settings.outbox_dir,
                min_bytes_per_s=settings.delivery.min_bytes_per_s,
                stall_window_s=settings.delivery.stall_window_s,
            )
            for name, provider in providers.items()
        }
        self._completion_lock = anyio.Lock()
        self._hooking: set[str] = set()
        self._manifest_failures: dict[str, int] = {}
        self._carried: dict[str, tuple[GenerationRow, JobRow]] = {}

    async def deliver(self, generation_id: str) -> None:
        found = await self._store.generation_with_job(generation_id)
        if found is None:
            return
        generation, job = found
        completed = False
        if generation.phase is Phase.DOWNLOADING:
            downloaded = await self._download(job, generation)
            if downloaded is None:
                return
            generation, completed = downloaded
        try:
            if not completed:
                await self._complete_if_done(job, generation)
        except OSError as exc:
            # The outbox is full or read-only: the manifest (and so the job's last hook)
            # waits, and is tried again until the fault is gone.
            attempt = self._manifest_failures.get(job.job_id, 0)
            self._manifest_failures[job.job_id] = attempt + 1
            delay = backoff_delay(
                attempt,
                initial_s=self._settings.delivery.retry_initial_s,
                max_s=self._settings.delivery.retry_max_s,
            )
            log.error(
                "cannot write the manifest; will try again",
                job_id=job.job_id,
                error=str(exc),
                retry_in_s=round(delay, 2),
            )
            self.deliveries.later(generation_id, delay)
            return
        self._manifest_failures.pop(job.job_id, None)
        if completed:
            # In the same commit as the delivery (its time), for the job's line after its hook.
            job = replace(job, state=JobState.COMPLETED, finished_at=generation.delivered_at)
        # Carried forward: the hook needs these rows, as they stand, not a second read.
        self._carried[generation_id] = (generation, job)
        await self.hooks.put(generation_id)

    async def _download(
        self, job: JobRow, generation: GenerationRow
    ) -> tuple[GenerationRow, bool] | None:
        """Fetch the result; the generation as now recorded and whether that completed the
        job, or None to try again later."""
        bound = log.bind(job_id=job.job_id, generation_id=generation.generation_id)
        deadline_s = self._settings.jobs.deadline_s
        if not generation.result_url:
            # Succeeded, but with no URL we could use: ask the provider for one.
            fresh = await self._fresh_url(job, generation)
            generation = replace(generation, result_url=fresh) if fresh else generation
        downloader = self._downloaders.get(job.provider)
        if downloader is None:
            bound.error("the job's provider is not configured any more; its result waits")
            return None
        whole_job = expected_generations(job) == 1 and job.state is JobState.SUBMITTED
        try:
            place = await downloader.download(
                job,
                generation,
                expected_generations(job),
                within_s=process_clock.remaining(job.created_at, deadline_s),
            )
            path, manifest, delivered_at = await anyio.to_thread.run_sync(
                self._place, place, job, generation, whole_job
            )
        except (DropreelError, OSError) as exc:
            attempts = await self._store.record_download_failure(
                generation.generation_id, job.job_id, str(exc)
            )
            refreshed = isinstance(exc, ResultUrlRefused) and bool(
                await self._fresh_url(job, generation)
            )
            # A paid result is worth retrying (full disk, network, expired URL) until the
            # job's deadline: only then is it given up, with the reason, never silently.
            remaining = process_clock.remaining(job.created_at, deadline_s)
            if remaining <= 0:
                reason = (
                    f"not downloaded within the job deadline ({deadline_s:g}s) after {attempts} "
                    f"attempts; last error: {exc}"
                )
                await self._store.record_delivered(generation, None, error=reason)
                bound.error("download abandoned", error=str(exc), attempts=attempts)
                abandoned = replace(
                    generation, phase=Phase.HOOKING, error=reason, delivered_at=time.time()
                )
                return abandoned, False
            settings = self._settings.delivery
            delay = (
                0.0
                if refreshed
                else backoff_delay(
                    attempts - 1, initial_s=settings.retry_initial_s, max_s=settings.retry_max_s
                )
            )
            delay = min(delay, remaining)
            bound.warning("download failed", error=str(exc), retry_in_s=round(delay, 2))
            self.deliveries.later(generation.generation_id, delay)
            return None
        self._counters.downloads += 1
        self._counters.download_bytes += path.stat().st_size
        delivered = _delivered(generation, path, delivered_at)
        # The delivery and, when it is the whole job, its completion: one commit.
        await self._store.record_delivered(
            generation,
            str(path),
            at=delivered_at,
            completed_manifest=str(manifest) if manifest else None,
        )
        bound.info("delivered", path=str(path))
        if manifest is not None:
            self._job_completed(job, [delivered], manifest, delivered_at)
        return delivered, manifest is not None

    def _place(
        self, place: Callable[[], Path], job: JobRow, generation: GenerationRow, whole_job: bool
    ) -> tuple[Path, Path | None, float]:
        """Blocking, in one trip to a worker thread: the result placed in the outbox, with
        the job's manifest if this generation is the whole job, and one sync of the outbox
        for both. Where the result lies, the manifest (None if not written now: the usual
        path tries again) and when it was delivered."""
        path = place()
        delivered_at = time.time()
        manifest = None
        if whole_job:
            try:
                manifest = write_manifest(
                    self._settings.outbox_dir,
                    job,
                    [_delivered(generation, path, delivered_at)],
                    sync_folder=False,
                )
            except OSError:
                pass
        fsync_dir(path.parent)  # the outbox, or a preset's folder in it
        return path, manifest, delivered_at

    async def _fresh_url(self, job: JobRow, generation: GenerationRow) -> str | None:
        """Presigned result URLs expire, and a result may come without one: ask REST for a
        fresh URL. The new URL (recorded), or None if there is none to be had now."""
        provider = self._providers.get(job.provider)
        if provider is None:
            return None
        try:
            remote = await provider.get(generation.generation_id)
        except DropreelError as exc:
            log.warning(
                "could not refresh result URL",
                generation_id=generation.generation_id,
                error=str(exc),
            )
            return None
        if not remote.result_url or remote.result_url == generation.result_url:
            return None
        await self._store.update_result_url(generation.generation_id, remote.result_url)
        return remote.result_url

    async def complete_if_done(self, job_id: str) -> None:
        """Write the manifest if every generation of the job is terminal and delivered."""
        job = await self._store.job(job_id)
        generations = await self._store.generations_of(job_id)
        if job is not None and generations:
            await self._complete_if_done(job, generations[0], generations)

    async def _complete_if_done(
        self,
        job: JobRow,
        delivered: GenerationRow,
        generations: list[GenerationRow] | None = None,
    ) -> None:
        async with self._completion_lock:
            if generations is None:
                if expected_generations(job) == 1:
                    # The common case: the generation just delivered is the whole job.
                    generations = [delivered]
                else:
                    refreshed = await self._store.job(job.job_id)
                    if refreshed is None:
                        return
                    job, generations = refreshed, await self._store.generations_of(job.job_id)
            if job.state is not JobState.SUBMITTED:
                return
            if not job_state_after_generations([g.phase for g in generations]):
                return
            path = await anyio.to_thread.run_sync(
                write_manifest, self._settings.outbox_dir, job, generations
            )
            finished_at = time.time()
            await self._store.complete_job(job.job_id, str(path), at=finished_at)
        self._job_completed(job, generations, path, finished_at)

    def _job_completed(
        self, job: JobRow, generations: list[GenerationRow], manifest: Path, finished_at: float
    ) -> None:
        self._counters.jobs_completed += 1
        self._metrics.job_duration.observe(finished_at - job.created_at)
        log.info("manifest written", job_id=job.job_id, manifest=str(manifest))
        # The job's line waits for its hooks, whose attempts it counts (see _hook_ended).
        if all(g.phase is Phase.DONE for g in generations):
            log_job_end(
                replace(
                    job,
                    state=JobState.COMPLETED,
                    finished_at=finished_at,
                    manifest_path=str(manifest),
                ),
                generations,
                "completed",
            )

    async def hook(self, generation_id: str) -> None:
        found = self._carried.pop(generation_id, None)
        if found is None:
            found = await self._store.generation_with_job(generation_id)
        if found is None or found[0].phase is not Phase.HOOKING:
            return
        if self._webhooks is not None and found[0].webhook_state is None:
            await self._webhooks.due(generation_id)
        # Queued twice (a rerun asked for while a restart queued it): never run at once.
        if generation_id in self._hooking:
            return
        self._hooking.add(generation_id)
        try:
            await self._hook(*found)
        finally:
            self._hooking.discard(generation_id)

    async def _hook(self, generation: GenerationRow, job: JobRow) -> None:
        generation_id = generation.generation_id
        argv = self._settings.hook_argv
        if not argv:
            self._metrics.hook_skipped(generation_id)
            await self._hook_ended(
                job,
                replace(generation, phase=Phase.DONE),
                lambda durable: self._store.mark_hook_skipped(generation, durable=durable),
            )
            return
        fields = hook_fields(job, generation)
        env = hook_environment(self._environ, fields, self._key_sources)
        settings = self._settings.hooks
        self._counters.hooks_run += 1
        self._metrics.hook_starting(generation_id)
        result = await run_hook(argv, env, hook_stdin(fields), timeout_s=settings.timeout_s)
        bound = log.bind(job_id=job.job_id, generation_id=generation_id)
        attempts = generation.hook_attempts + 1
        if result.ok:
            await self._hook_ended(
                job,
                replace(generation, phase=Phase.DONE, hook_attempts=attempts, hook_error=None),
                lambda durable: self._store.record_hook_attempt(
                    generation, error=None, give_up=False, detail=result.detail, durable=durable
                ),
            )
            bound.info("hook ran", status=fields["DROPREEL_STATUS"])
            return
        self._counters.hook_failures += 1
        give_up = attempts >= settings.max_attempts
        if give_up:
            await self._hook_ended(
                job,
                replace(
                    generation, phase=Phase.DONE, hook_attempts=attempts, hook_error=result.detail
                ),
                lambda durable: self._store.record_hook_attempt(
                    generation, error=result.detail, give_up=True, durable=durable
                ),
            )
            bound.error("hook gave up", error=result.detail, attempts=attempts)
            return
        await self._store.record_hook_attempt(generation, error=result.detail, give_up=False)
        delay = backoff_delay(attempts - 1, initial_s=settings.retry_initial_s, max_s=300.0)
        bound.warning("hook failed", error=result.detail, retry_in_s=round(delay, 2))
        self.hooks.later(generation_id, delay)

    async def _hook_ended(
        self, job: JobRow, ended: GenerationRow, record: Callable[[bool], Awaitable[None]]
    ) -> None:
        """Record a generation's last hook outcome (`ended`, as `record` stores it); if that
        was the job's last, log the job's line, with every attempt counted."""
        if expected_generations(job) == 1 and job.state is JobState.COMPLETED:
            # Nothing here reads it back: it rides the next commit instead of making one
            # (a crash before then runs the hook again: hooks run at least once).
            await record(False)
            log_job_end(job, [ended], "completed")
            return
        # The job's other hooks and its manifest may end meanwhile: deciding which of them is
        # the last takes the lock the manifest is written under, so exactly one logs.
        async with self._completion_lock:
            await record(True)
            now = await self._store.job(job.job_id)
            generations = await self._store.generations_of(job.job_id)
        if (
            now is not None
            and now.state is JobState.COMPLETED
            and all(g.phase is Phase.DONE for g in generations)
        ):
            log_job_end(now, generations, "completed")


def _delivered(generation: GenerationRow, path: Path, at: float) -> GenerationRow:
    return replace(generation, phase=Phase.HOOKING, output_path=str(path), delivered_at=at)
