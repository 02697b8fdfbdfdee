"""The daemon: recovery at start, then inbox, submitters, stream, poller, delivery and hooks."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio
import httpx
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic import SecretStr

from dropreel.backoff import backoff_delay
from dropreel.config import Settings
from dropreel.deliver import Downloader, write_manifest
from dropreel.errors import (
    AuthRefused,
    DropreelError,
    RequestRefused,
    ResultUrlRefused,
    RetryableProviderError,
)
from dropreel.events import Ending, ReconnectPolicy, StreamHealth, run_session
from dropreel.files import finish_failed_moves, move_to_failed, rename_durably
from dropreel.hooks import hook_environment, hook_fields, hook_stdin, run_hook
from dropreel.inbox import Inbox, InboxFolders
from dropreel.lifecycle import (
    Finished,
    Ignore,
    JobState,
    Observation,
    Phase,
    RemoteStatus,
    Source,
    StillRunning,
    decide,
    job_state_after_generations,
)
from dropreel.matching import Matcher
from dropreel.poller import Reconciler, run_poller
from dropreel.provider import EventFeed, Provider
from dropreel.settle import Unsettled, settle_lost_post
from dropreel.store import GenerationRow, JobRow, Store

log = structlog.get_logger("dropreel.service")

# Failures after which the provider provably created nothing: it said so, or never heard us.
_NOT_CREATED = (RetryableProviderError, AuthRefused, httpx.ConnectError, httpx.ConnectTimeout)

_UNFINISHED_JOB_STATES = (
    JobState.CLAIMING,
    JobState.ACCEPTED,
    JobState.SUBMITTING,
    JobState.SUBMITTED,
)


@dataclass(slots=True)
class Counters:
    posts: int = 0
    events_matched: int = 0
    downloads: int = 0
    download_bytes: int = 0
    hooks_run: int = 0
    hook_failures: int = 0
    jobs_completed: int = 0
    jobs_failed: int = 0


def _queue() -> tuple[MemoryObjectSendStream[str], MemoryObjectReceiveStream[str]]:
    # Unbounded: everything queued is also in the database, and the event path must never block.
    return anyio.create_memory_object_stream[str](math.inf)


class Daemon:
    """One running dropreel: owns every task through one task group."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        provider: Provider,
        feed: EventFeed | None,
        *,
        api_key: SecretStr | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.provider = provider
        self.feed = feed
        self._api_key = api_key
        self._environ = os.environ if environ is None else environ
        self.matcher = Matcher()
        self.health = StreamHealth()
        self.counters = Counters()
        self.ready = anyio.Event()
        self._submit_send, self._submit_recv = _queue()
        self._deliver_send, self._deliver_recv = _queue()
        self._hook_send, self._hook_recv = _queue()
        self._streams: tuple[MemoryObjectSendStream[str] | MemoryObjectReceiveStream[str], ...] = (
            self._submit_send,
            self._submit_recv,
            self._deliver_send,
            self._deliver_recv,
            self._hook_send,
            self._hook_recv,
        )
        self._completion_lock = anyio.Lock()
        self._downloader = Downloader(provider, settings.outbox_dir)
        self.reconciler = Reconciler(provider, lambda: list(self.matcher.pending), self.observe)
        self.inbox = Inbox(
            InboxFolders(
                inbox=settings.inbox_dir,
                accepted=settings.accepted_dir,
                failed=settings.failed_dir,
                outbox=settings.outbox_dir,
            ),
            store,
            default_model=settings.oxen.default_model,
            settle_s=settings.inbox.settle_s,
            on_accepted=self._submit_send.send,
        )
        self._group: TaskGroup | None = None
        self._lost_posts: list[str] = []

    # ---- running ----------------------------------------------------------------------

    async def run(self, stop: anyio.Event, *, until_idle: bool = False) -> Counters:
        """Run until `stop` is set (or, with until_idle, until nothing is left to do)."""
        for folder in (
            self.settings.inbox_dir,
            self.settings.outbox_dir,
            self.settings.failed_dir,
            self.settings.accepted_dir,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        inbox_stop = anyio.Event()
        try:
            await self._run_tasks(stop, inbox_stop, until_idle)
        finally:
            for stream in self._streams:
                stream.close()
        log.info(
            "stopped",
            uptime_s=round(time.monotonic() - started, 3),
            waiting=len(self.matcher.pending),
            stream_connects=self.health.connects,
            reconcile_rounds=self.reconciler.rounds,
            **asdict(self.counters),
        )
        return self.counters

    async def _run_tasks(
        self, stop: anyio.Event, inbox_stop: anyio.Event, until_idle: bool
    ) -> None:
        async with anyio.create_task_group() as group:
            self._group = group
            await self._recover()
            if self.feed is not None:
                group.start_soon(self._supervise_stream, self.feed)
            else:
                self.health.first_attempt_done.set()
            group.start_soon(self._run_poller)
            group.start_soon(self._enforce_deadlines)
            for _ in range(self.settings.submit.concurrency):
                group.start_soon(self._worker, self._submit_recv.clone(), self._submit)
            for _ in range(self.settings.delivery.concurrency):
                group.start_soon(self._worker, self._deliver_recv.clone(), self._deliver)
            for _ in range(self.settings.hooks.concurrency):
                group.start_soon(self._worker, self._hook_recv.clone(), self._hook)
            await self.health.first_attempt_done.wait()
            if self._lost_posts:
                group.start_soon(self._settle_lost_posts, self._lost_posts)
            group.start_soon(self._watch_inbox, inbox_stop)
            self.ready.set()
            log.info("ready", inbox=str(self.settings.inbox_dir), stream=self.health.up)
            if until_idle:
                group.start_soon(self._stop_when_idle, stop)
            await stop.wait()
            inbox_stop.set()
            group.cancel_scope.cancel()

    def _spawn_later(self, delay_s: float, send: MemoryObjectSendStream[str], item: str) -> None:
        async def later() -> None:
            await anyio.sleep(delay_s)
            await send.send(item)

        assert self._group is not None
        self._group.start_soon(later)

    @staticmethod
    async def _worker(
        items: MemoryObjectReceiveStream[str], handle: Callable[[str], object]
    ) -> None:
        async with items:
            async for item in items:
                await handle(item)  # type: ignore[misc]

    async def _watch_inbox(self, stop: anyio.Event) -> None:
        await self.inbox.watch(
            stop,
            force_polling=self.settings.inbox.force_polling,
            rescan_interval_s=self.settings.inbox.rescan_interval_s,
        )

    async def _run_poller(self) -> None:
        await run_poller(self.health, self.reconciler, interval_s=self.settings.poll.interval_s)

    async def _supervise_stream(self, feed: EventFeed) -> None:
        settings = self.settings.events
        policy = ReconnectPolicy(
            initial_s=settings.reconnect_initial_s,
            max_s=settings.reconnect_max_s,
            stable_after_s=settings.stable_after_s,
        )
        while True:
            end = await run_session(feed, self.health, self.observe)
            delay = policy.delay_after(end)
            (log.error if end.ending is Ending.AUTH_REFUSED else log.warning)(
                "stream down",
                ending=end.ending.value,
                detail=end.detail,
                retry_in_s=round(delay, 2),
            )
            await anyio.sleep(delay)

    async def _enforce_deadlines(self) -> None:
        """Generations still waiting past their job's deadline: look once more, then give up."""
        deadline_s = self.settings.jobs.deadline_s
        while True:
            await anyio.sleep(min(60.0, deadline_s / 4))
            for generation_id in self.matcher.overdue(time.time() - deadline_s):
                await self._give_up_waiting(generation_id, deadline_s)

    async def _give_up_waiting(self, generation_id: str, deadline_s: float) -> None:
        try:
            remote = await self.provider.get(generation_id)
        except (httpx.HTTPError, DropreelError):
            remote = None
        if remote is not None and remote.status.is_terminal:
            await self.observe(
                Observation(
                    generation_id, remote.status, Source.POLL, remote.result_url, remote.error
                )
            )
            return
        try:
            await self.provider.cancel(generation_id)
            cancelled = "cancelled at the provider"
        except (httpx.HTTPError, DropreelError) as exc:
            cancelled = f"cancelling it failed: {exc}"
        last = remote.status.value if remote is not None else "unknown"
        reason = (
            f"no result within the job deadline ({deadline_s:g}s); the provider last said "
            f"{last!r}; {cancelled}"
        )
        await self.observe(
            Observation(generation_id, RemoteStatus.FAILED, Source.POLL, error=reason)
        )

    async def _stop_when_idle(self, stop: anyio.Event) -> None:
        # Idleness is a state of the database and the inbox folder, not an event: look.
        while not await self.is_idle():  # noqa: ASYNC110
            await anyio.sleep(0.05)
        stop.set()

    async def is_idle(self) -> bool:
        """Nothing in the inbox, no job unfinished, no generation waiting for anything."""
        names = await anyio.to_thread.run_sync(self.inbox.waiting_names)
        if names:
            return False
        if await self.store.jobs(_UNFINISHED_JOB_STATES):
            return False
        for phase in (Phase.WAITING, Phase.DOWNLOADING, Phase.HOOKING):
            if await self.store.generations_in(phase):
                return False
        return True

    # ---- recovery ---------------------------------------------------------------------

    async def _recover(self) -> None:
        """Pick up every unfinished job and generation where the last run left it."""
        await anyio.to_thread.run_sync(finish_failed_moves, self.settings.failed_dir)
        for job in await self.store.jobs([JobState.CLAIMING]):
            await self._finish_claim(job.job_id, job.source_path, job.kept_path)
        # After the claims above are settled, so each accepted job is queued exactly once.
        for job in await self.store.jobs([JobState.ACCEPTED]):
            await self._submit_send.send(job.job_id)
        self._lost_posts = [j.job_id for j in await self.store.jobs([JobState.SUBMITTING])]
        created = {j.job_id: j.created_at for j in await self.store.jobs([JobState.SUBMITTED])}
        for generation in await self.store.generations_in(Phase.WAITING):
            self.matcher.register(
                generation.job_id,
                [(generation.generation_id, generation.remote_status)],
                enqueued_at=created.get(generation.job_id, generation.enqueued_at),
            )
        for generation in await self.store.generations_in(Phase.DOWNLOADING):
            await self._deliver_send.send(generation.generation_id)
        for generation in await self.store.generations_in(Phase.HOOKING):
            await self._hook_send.send(generation.generation_id)
        for job_id in await self.store.jobs_ready_to_complete():
            await self._maybe_complete(job_id)

    async def _finish_claim(self, job_id: str, source: str, kept: str | None) -> None:
        """A crash came between recording a claim and moving its file: finish the move."""

        def settle() -> bool:
            if not kept:
                return False
            if not Path(kept).exists() and Path(source).exists():
                rename_durably(Path(source), Path(kept))
            return Path(kept).exists()

        if await anyio.to_thread.run_sync(settle):
            await self.store.set_job_state(job_id, JobState.ACCEPTED)
        else:
            await self.store.set_job_state(
                job_id, JobState.FAILED, error="the job file vanished while being claimed"
            )

    async def _settle_lost_posts(self, job_ids: list[str]) -> None:
        """Jobs whose POST answer was lost in a crash: adopt what they created, or park them."""
        attempt = 0
        while True:
            try:
                candidates = await self.provider.list_recent()
                break
            except (httpx.HTTPError, DropreelError) as exc:
                delay = backoff_delay(attempt, initial_s=1.0, max_s=60.0)
                attempt += 1
                log.warning(
                    "cannot list the queue to settle lost POSTs",
                    error=str(exc),
                    retry_in_s=round(delay, 2),
                    jobs=len(job_ids),
                )
                await anyio.sleep(delay)
        taken = await self.store.known_generation_ids()
        window_s = self.settings.oxen.connect_timeout_s + self.settings.oxen.read_timeout_s
        jobs = [j for j in await self.store.jobs([JobState.SUBMITTING]) if j.job_id in job_ids]
        for job in sorted(jobs, key=lambda j: j.post_started_at or j.updated_at):
            outcome = settle_lost_post(
                job.request or {},
                job.post_started_at or job.updated_at,
                window_s=window_s,
                candidates=candidates,
                taken=taken,
            )
            if isinstance(outcome, Unsettled):
                await self.store.set_job_state(
                    job.job_id, JobState.NEEDS_ATTENTION, error=outcome.reason
                )
                log.error("job needs attention", job_id=job.job_id, reason=outcome.reason)
                continue
            pairs = [(g.generation_id, g.status) for g in outcome.generations]
            taken.update(g for g, _ in pairs)
            await self.store.record_submission(job.job_id, pairs, how="adopted from the listing")
            early = self.matcher.register(job.job_id, pairs, enqueued_at=job.created_at)
            log.warning(
                "lost POST settled from the queue listing",
                job_id=job.job_id,
                generation_ids=[g for g, _ in pairs],
            )
            for observed in early:
                await self.observe(observed)
        # Adopted generations may have finished while we were away: look once.
        self.health.request_reconcile()

    # ---- submission -------------------------------------------------------------------

    async def _submit(self, job_id: str) -> None:
        job = await self.store.job(job_id)
        if job is None or job.state is not JobState.ACCEPTED or job.request is None:
            return
        bound = log.bind(job_id=job_id)
        await self.health.first_attempt_done.wait()
        attempt = 0
        while True:
            if not await self.store.claim_for_submission(job_id):
                bound.warning("job is already being submitted elsewhere; not sending it again")
                return
            try:
                # Once the POST is sent its answer must be recorded, even on shutdown.
                with anyio.CancelScope(shield=True):
                    self.counters.posts += 1
                    generations = await self.provider.enqueue(job.request)
                    pairs = [(g.generation_id, g.status) for g in generations]
                    await self.store.record_submission(job_id, pairs)
                    early = self.matcher.register(job_id, pairs, enqueued_at=job.created_at)
            except RequestRefused as exc:
                await self._refuse(job, f"refused by the provider: {exc.message}")
                return
            except _NOT_CREATED as exc:
                # Nothing was created: the server said so, or the request never reached it.
                remaining = job.created_at + self.settings.jobs.deadline_s - time.time()
                if remaining <= 0:
                    await self._refuse(
                        job, f"not submitted within the job deadline; last error: {exc}"
                    )
                    return
                await self.store.set_job_state(job_id, JobState.ACCEPTED, error=str(exc))
                delay = min(self._retry_delay(exc, attempt), remaining)
                attempt += 1
                bound.warning("submission will be retried", error=str(exc), retry_in_s=delay)
                await anyio.sleep(delay)
                continue
            except (httpx.HTTPError, DropreelError) as exc:
                await self.store.set_job_state(
                    job_id,
                    JobState.NEEDS_ATTENTION,
                    error=f"the POST's answer was lost ({exc}); it may have been created and "
                    "billed, so it was not resubmitted",
                )
                bound.error("job needs attention", error=str(exc))
                return
            break
        bound.info("submitted", generation_ids=[g for g, _ in pairs])
        for observed in early:
            await self.observe(observed)

    def _retry_delay(self, exc: Exception, attempt: int) -> float:
        if isinstance(exc, RetryableProviderError) and exc.retry_after_s is not None:
            return exc.retry_after_s
        floor = self.settings.events.reconnect_max_s if isinstance(exc, AuthRefused) else 0.0
        return max(floor, backoff_delay(attempt, initial_s=1.0, max_s=60.0))

    async def _refuse(self, job: JobRow, reason: str) -> None:
        """The provider refused the job: its file goes to failed/ under its own name."""

        def move() -> str | None:
            kept = Path(job.kept_path) if job.kept_path else None
            if kept is None or not kept.exists():
                return None
            failed = self.settings.failed_dir
            return str(move_to_failed(kept, failed, reason, original_name=job.source_name))

        moved = await anyio.to_thread.run_sync(move)
        await self.store.set_job_state(job.job_id, JobState.FAILED, error=reason, kept_path=moved)
        self.counters.jobs_failed += 1
        log.warning("job failed", job_id=job.job_id, file=job.source_name, reason=reason)

    # ---- observations -----------------------------------------------------------------

    async def observe(self, observed: Observation) -> None:
        """Apply what the stream or a poll says about a generation."""
        waiting = self.matcher.route(observed, keep_if_unknown=observed.source is Source.EVENT)
        if waiting is None:
            return
        decision = decide(Phase.WAITING, waiting.status, observed)
        bound = log.bind(job_id=waiting.job_id, generation_id=observed.generation_id)
        if isinstance(decision, Ignore):
            bound.debug("observation ignored", reason=decision.reason, source=observed.source)
            return
        if isinstance(decision, StillRunning):
            waiting.status = decision.status
            await self.store.update_remote_status(observed.generation_id, decision.status)
            return
        assert isinstance(decision, Finished)
        # Forget first, synchronously: a duplicate event or a racing poll now finds nothing.
        self.matcher.forget(observed.generation_id)
        if observed.source is Source.EVENT:
            self.counters.events_matched += 1
        generation = await self.store.generation(observed.generation_id)
        if generation is None:
            return
        await self.store.record_finished(
            generation,
            decision.status,
            decision.next_phase,
            result_url=decision.result_url,
            error=decision.error,
            source=observed.source.value,
        )
        bound.info("generation finished", status=decision.status.value, via=observed.source.value)
        await self._deliver_send.send(observed.generation_id)

    # ---- delivery ---------------------------------------------------------------------

    async def _deliver(self, generation_id: str) -> None:
        generation = await self.store.generation(generation_id)
        if generation is None:
            return
        if generation.phase is Phase.DOWNLOADING and not await self._download(generation):
            return
        await self._maybe_complete(generation.job_id)
        await self._hook_send.send(generation_id)

    async def _download(self, generation: GenerationRow) -> bool:
        """Fetch the result; False if it will be tried again later."""
        job = await self.store.job(generation.job_id)
        assert job is not None
        siblings = await self.store.generations_of(job.job_id)
        bound = log.bind(job_id=job.job_id, generation_id=generation.generation_id)
        try:
            path = await self._downloader.fetch(job, generation, len(siblings))
        except (httpx.HTTPError, DropreelError, OSError) as exc:
            attempts = await self.store.record_download_failure(
                generation.generation_id, job.job_id, str(exc)
            )
            refreshed = isinstance(exc, ResultUrlRefused) and await self._refresh_url(generation)
            settings = self.settings.delivery
            # A paid result is worth retrying (full disk, network, expired URL) until the
            # job's deadline: only then is it given up, with the reason, never silently.
            remaining = job.created_at + self.settings.jobs.deadline_s - time.time()
            if remaining <= 0:
                reason = (
                    f"not downloaded within the job deadline ({self.settings.jobs.deadline_s:g}s)"
                    f" after {attempts} attempts; last error: {exc}"
                )
                await self.store.record_delivered(generation, None, error=reason)
                bound.error("download abandoned", error=str(exc), attempts=attempts)
                return True
            delay = (
                0.0
                if refreshed
                else backoff_delay(
                    attempts - 1, initial_s=settings.retry_initial_s, max_s=settings.retry_max_s
                )
            )
            delay = min(delay, remaining)
            bound.warning("download failed", error=str(exc), retry_in_s=round(delay, 2))
            self._spawn_later(delay, self._deliver_send, generation.generation_id)
            return False
        self.counters.downloads += 1
        self.counters.download_bytes += path.stat().st_size
        await self.store.record_delivered(generation, str(path))
        bound.info("delivered", path=str(path))
        return True

    async def _refresh_url(self, generation: GenerationRow) -> bool:
        """Presigned result URLs expire: ask REST for a fresh one. True if we got one."""
        try:
            remote = await self.provider.get(generation.generation_id)
        except (httpx.HTTPError, DropreelError) as exc:
            log.warning(
                "could not refresh result URL",
                generation_id=generation.generation_id,
                error=str(exc),
            )
            return False
        if not remote.result_url or remote.result_url == generation.result_url:
            return False
        await self.store.update_result_url(generation.generation_id, remote.result_url)
        return True

    async def _maybe_complete(self, job_id: str) -> None:
        async with self._completion_lock:
            job = await self.store.job(job_id)
            if job is None or job.state is not JobState.SUBMITTED:
                return
            generations = await self.store.generations_of(job_id)
            if not job_state_after_generations([g.phase for g in generations]):
                return
            path = await anyio.to_thread.run_sync(
                write_manifest, self.settings.outbox_dir, job, generations
            )
            await self.store.complete_job(job_id, str(path))
        self.counters.jobs_completed += 1
        log.info(
            "job completed",
            job_id=job_id,
            manifest=str(path),
            generations=len(generations),
            succeeded=sum(1 for g in generations if g.output_path),
            duration_s=round(time.time() - job.created_at, 3),
        )

    # ---- hooks ------------------------------------------------------------------------

    async def _hook(self, generation_id: str) -> None:
        generation = await self.store.generation(generation_id)
        if generation is None or generation.phase is not Phase.HOOKING:
            return
        argv = self.settings.hooks.on_complete
        if not argv:
            await self.store.mark_hook_skipped(generation)
            return
        job = await self.store.job(generation.job_id)
        assert job is not None
        fields = hook_fields(job, generation)
        env = hook_environment(
            self._environ,
            fields,
            secret_names={self.settings.oxen.api_key_env},
            secret_values={self._api_key.get_secret_value()} if self._api_key else set(),
        )
        settings = self.settings.hooks
        self.counters.hooks_run += 1
        result = await run_hook(argv, env, hook_stdin(fields), timeout_s=settings.timeout_s)
        bound = log.bind(job_id=job.job_id, generation_id=generation_id)
        if result.ok:
            await self.store.record_hook_attempt(generation, error=None, give_up=False)
            bound.info("hook ran", status=fields["DROPREEL_STATUS"])
            return
        self.counters.hook_failures += 1
        give_up = generation.hook_attempts + 1 >= settings.max_attempts
        await self.store.record_hook_attempt(generation, error=result.detail, give_up=give_up)
        if give_up:
            bound.error("hook gave up", error=result.detail, attempts=generation.hook_attempts + 1)
            return
        delay = backoff_delay(
            generation.hook_attempts, initial_s=settings.retry_initial_s, max_s=300.0
        )
        bound.warning("hook failed", error=result.detail, retry_in_s=round(delay, 2))
        self._spawn_later(delay, self._hook_send, generation_id)
