"""The daemon: recovery at start, then inbox, submitters, each provider's tracking,
delivery and hooks."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import anyio
import structlog
from pydantic import SecretStr

from dropreel.config import Settings, read_webhook_key
from dropreel.delivery.completion import Completion
from dropreel.errors import ConfigError, DropreelError
from dropreel.fs.moves import finish_failed_moves, settle_move, sweep_move_temps
from dropreel.hooks.webhook_send import WebhookSender
from dropreel.hooks.webhooks import Webhooks
from dropreel.intake.inbox import Inbox, InboxFolders
from dropreel.intake.jobs import Routes
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
)
from dropreel.ops.counters import Counters
from dropreel.ops.live import LiveFacts, ProviderFacts, publish_live
from dropreel.ops.metrics import Metrics
from dropreel.ops.notify import Notifier
from dropreel.ops.report import service_status
from dropreel.providers.base import Provider
from dropreel.providers.catalogue import ModelCatalogue
from dropreel.providers.registry import Connected
from dropreel.spend.budget import periods
from dropreel.stage import Drain, Stage
from dropreel.state.records import Finish, JobRow
from dropreel.state.store import Store
from dropreel.submission.holdup import Holdup, read_holdup
from dropreel.submission.submitter import Submitter
from dropreel.tracking.matching import Matcher
from dropreel.tracking.onscreen import ProgressAsks
from dropreel.tracking.recorder import FinishRecorder
from dropreel.tracking.tracker import Tracker
from dropreel.validation.checker import RequestChecker

log = structlog.get_logger("dropreel.service")


def webhooks_for(
    settings: Settings, store: Store, counters: Counters, drain: Drain
) -> Webhooks | None:
    """The webhook stage, if hooks.on_complete_url is set (its secret read now)."""
    key = read_webhook_key(settings)
    url = settings.hooks.on_complete_url
    if key is None or url is None:
        return None
    sender = WebhookSender(str(url), key, timeout_s=settings.hooks.timeout_s)
    return Webhooks(settings.hooks, store, sender, counters, drain=drain)


_UNFINISHED_JOB_STATES = (
    JobState.CLAIMING,
    JobState.ACCEPTED,
    JobState.SUBMITTING,
    JobState.SUBMITTED,
)


async def _all_of(events: list[anyio.Event], done: anyio.Event) -> None:
    """Set `done` once every one of `events` is set."""
    for event in events:
        await event.wait()
    done.set()


async def _first_of(*events: anyio.Event) -> None:
    """Return as soon as any of these events is set."""
    async with anyio.create_task_group() as race:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            race.cancel_scope.cancel()

        for event in events:
            race.start_soon(wait, event)


class Daemon:
    """One running dropreel: owns every task through one task group."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        providers: Mapping[str, Connected],
        *,
        api_keys: Mapping[str, SecretStr] | None = None,
        environ: Mapping[str, str] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.providers: dict[str, Provider] = {n: c.provider for n, c in providers.items()}
        self.matcher = Matcher()
        self.trackers = {
            name: Tracker(name, connected, self.matcher, self.observe, settings)
            for name, connected in providers.items()
        }
        self.counters = Counters()
        self.ready = anyio.Event()
        self.drain = Drain()
        self.metrics = Metrics(self.counters, self._live_figures)
        self.webhooks = webhooks_for(settings, store, self.counters, self.drain)
        # One look-up per model, shared by the request check and the budget.
        self.models = ModelCatalogue(self.providers, ttl_s=settings.jobs.model_ttl_s)
        self.submitter = Submitter(
            settings,
            store,
            self.trackers,
            self.matcher,
            self.counters,
            self.observe,
            self.drain,
            self.models,
        )
        self.completion = Completion(
            settings,
            store,
            self.providers,
            self.counters,
            environ=os.environ if environ is None else environ,
            api_keys=api_keys,
            metrics=self.metrics,
            drain=self.drain,
            webhooks=self.webhooks,
        )
        self.stages: tuple[Stage, ...] = (
            self.submitter.stage,
            self.completion.deliveries,
            self.completion.hooks,
        )
        if self.webhooks is not None:
            self.stages += (self.webhooks.stage,)
        self.inbox = Inbox(
            InboxFolders(
                inbox=settings.inbox_dir,
                accepted=settings.accepted_dir,
                failed=settings.failed_dir,
                outbox=settings.outbox_dir,
            ),
            store,
            routes=Routes(
                {n: settings.providers[n].default_model for n in providers},
                settings.default_provider,
            ),
            settle_s=settings.inbox.settle_s,
            on_accepted=self.submitter.stage.put,
            stable_s=settings.inbox.stable_s,
            asset_wait_s=settings.inbox.asset_wait_s,
            presets=settings.preset_folders(),
            checker=RequestChecker(self.models) if settings.jobs.check_schema else None,
        )
        self.notifier = notifier or Notifier(environ={})
        self.finishes = FinishRecorder(self.store.record_finished, self.completion.deliveries.put)
        self.progress_asks = ProgressAsks(
            settings.state_dir,
            self.trackers,
            self.matcher,
            self.observe,
            default_poll_s=settings.poll.interval_s,
        )
        self._started_at = time.time()
        # Said once, not at every heartbeat, until publishing works again.
        self._live_unpublished = False
        self._lost_posts: list[str] = []

    # ---- running ----------------------------------------------------------------------

    def reload(self, settings: Settings) -> list[str]:
        """Apply a reloaded config's `[budget]` (at once: held jobs are looked at again); the
        sections that changed but take effect only at the next start, by name."""
        self.submitter.budget.reconfigure(settings.budget)
        old, new = self.settings.model_dump(), settings.model_dump()
        self.settings = self.settings.model_copy(update={"budget": settings.budget})
        return sorted(k for k in new if k != "budget" and new[k] != old.get(k))

    async def run(self, stop: anyio.Event, *, until_idle: bool = False) -> Counters:
        """Run until `stop` is set (or, with until_idle, until nothing is left to do)."""
        for folder in (
            self.settings.inbox_dir,
            self.settings.outbox_dir,
            self.settings.failed_dir,
            self.settings.accepted_dir,
            # Each preset's folder, in the inbox and in the outbox.
            *(self.settings.inbox_dir / name for name in self.settings.presets),
            *(self.settings.outbox_dir / name for name in self.settings.presets),
        ):
            folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        inbox_stop = anyio.Event()
        if self.settings.metrics.port:
            host, port = self.settings.metrics.host, self.settings.metrics.port
            try:
                port = self.metrics.serve(host, port)
            except OSError as exc:
                raise ConfigError(
                    "metrics.port",
                    f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another "
                    "port, or 0 to serve no metrics",
                ) from None
            log.info("metrics served", url=f"http://{host}:{port}/metrics")
        try:
            await self._run_tasks(stop, inbox_stop, until_idle)
        finally:
            self.metrics.close()
            self.finishes.close()
            if self.webhooks is not None:
                await self.webhooks.aclose()
            for stage in self.stages:
                stage.close()
        log.info(
            "stopped",
            uptime_s=round(time.monotonic() - started, 3),
            waiting=len(self.matcher.pending),
            stream_connects=sum(t.health.connects for t in self.trackers.values()),
            reconcile_rounds=sum(t.reconciler.rounds for t in self.trackers.values()),
            **asdict(self.counters),
        )
        return self.counters

    async def _run_tasks(
        self, stop: anyio.Event, inbox_stop: anyio.Event, until_idle: bool
    ) -> None:
        async with anyio.create_task_group() as group:
            await self._recover()
            for tracker in self.trackers.values():
                group.start_soon(tracker.run)
            first_attempts = anyio.Event()
            group.start_soon(
                _all_of,
                [t.health.first_attempt_done for t in self.trackers.values()],
                first_attempts,
            )
            group.start_soon(self._enforce_deadlines)
            group.start_soon(self.submitter.release_held)
            group.start_soon(self.finishes.run)
            group.start_soon(self.store.run_deferred_flusher)
            for stage in self.stages:
                group.start_soon(stage.run)
            # The first stream attempt may hang up to its time-outs: a stop must not wait.
            await _first_of(first_attempts, stop)
            if stop.is_set():
                await self._wind_down(inbox_stop)
                group.cancel_scope.cancel()
                return
            if self._lost_posts:
                group.start_soon(self.submitter.settle_lost_posts, self._lost_posts)
            group.start_soon(self._watch_inbox, inbox_stop)
            self.ready.set()
            self.notifier.ready(await self.status_line())
            group.start_soon(self._heartbeat)
            group.start_soon(self.progress_asks.run, self.settings.service.heartbeat_s)
            log.info("ready", inbox=str(self.settings.inbox_dir), stream=self._streams_up())
            if until_idle:
                group.start_soon(self._stop_when_idle, stop)
            await stop.wait()
            await self._wind_down(inbox_stop)
            group.cancel_scope.cancel()

    async def _wind_down(self, inbox_stop: anyio.Event) -> None:
        """Take no new work; give running downloads and hooks the grace period to finish."""
        inbox_stop.set()
        self.drain.stopping = True
        grace_s = self.settings.service.shutdown_grace_s
        self.notifier.stopping(f"stopping: {self.drain.busy} downloads/hooks finishing")
        log.info("stopping", finishing=self.drain.busy, grace_s=grace_s)
        with anyio.move_on_after(grace_s) as grace:
            if self.drain.busy:
                await self.drain.drained.wait()
        if grace.cancelled_caught:
            log.warning(
                "grace period over; the rest resumes at the next start", left=self.drain.busy
            )

    def _streams_up(self) -> bool | None:
        """Whether every push stream is up; None if no provider pushes."""
        pushing = [t.health.up for t in self.trackers.values() if t.pushes]
        return all(pushing) if pushing else None

    def _live_figures(self) -> dict[str, float]:
        trackers = self.trackers.values()
        return {
            "events_received": sum(t.health.events_received for t in trackers),
            "stream_connects": sum(t.health.connects for t in trackers),
            "polls": sum(t.reconciler.requests for t in trackers),
            "stream_up": 1.0 if self._streams_up() else 0.0,
            "waiting": len(self.matcher.pending),
        }

    async def status_line(self) -> str:
        """The service's state in one line, read from memory and the database."""
        jobs, phases = await self.store.counts()
        self.metrics.snapshot.jobs_by_state = jobs
        self.metrics.snapshot.generations_by_phase = phases
        if self.metrics.serving:
            await self._money_figures()
        return service_status(
            stream_up=self._streams_up(),
            waiting=len(self.matcher.pending),
            downloading=phases.get(Phase.DOWNLOADING, 0),
            hooking=phases.get(Phase.HOOKING, 0),
            failed=jobs.get(JobState.FAILED, 0),
            needs_attention=jobs.get(JobState.NEEDS_ATTENTION, 0),
        )

    async def _money_figures(self) -> None:
        """Spend and the budget, for the metrics (a scan of today's and this month's rows:
        read only when someone may scrape them)."""
        period = periods(time.time())
        today, month = await self.store.budget_used(period.day_start, period.month_start)
        budget = self.submitter.budget
        snapshot = self.metrics.snapshot
        snapshot.spend_usd = {"today": today, "month": month}
        caps = {"today": budget.caps.daily_usd, "month": budget.caps.monthly_usd}
        snapshot.caps_usd = {k: v for k, v in caps.items() if v is not None}
        snapshot.held_by_budget = budget.held

    async def _heartbeat(self) -> None:
        """Prove progress: a database round-trip from the event loop, then STATUS and WATCHDOG."""
        watchdog_s = self.notifier.watchdog_interval_s
        interval = min(self.settings.service.heartbeat_s, watchdog_s or math.inf)
        seen_request = await self.store.reconcile_requested_at()
        while True:
            self.notifier.status(await self.status_line())
            await self._publish_live()
            # `dropreel cancel` asks for a look: cancellations fire no event.
            requested = await self.store.reconcile_requested_at()
            if requested > seen_request:
                seen_request = requested
                for tracker in self.trackers.values():
                    tracker.health.request_reconcile()
            # `dropreel hooks rerun` made hooks that gave up due again.
            for generation_id in await self.store.take_hook_reruns():
                await self.completion.hooks.put(generation_id)
                if self.webhooks is not None:
                    await self.webhooks.stage.put(generation_id)
            if watchdog_s is not None:
                self.notifier.watchdog()
            await anyio.sleep(interval)

    async def _publish_live(self) -> None:
        """What `dropreel watch` cannot read from the database: each stream's state."""
        phases = self.metrics.snapshot.generations_by_phase
        facts = LiveFacts(
            pid=os.getpid(),
            written_at=time.time(),
            heartbeat_s=self.settings.service.heartbeat_s,
            providers={
                name: ProviderFacts(
                    streams=tracker.pushes,
                    up=tracker.health.up,
                    since=tracker.health.since if tracker.pushes else self._started_at,
                    poll_interval_s=tracker.connected.poll_interval_s
                    or self.settings.poll.interval_s,
                    progress_asks=self.progress_asks.asks[name],
                )
                for name, tracker in self.trackers.items()
            },
            waiting=len(self.matcher.pending),
            downloading=phases.get(Phase.DOWNLOADING, 0),
            hooking=phases.get(Phase.HOOKING, 0),
        )
        try:
            await anyio.to_thread.run_sync(publish_live, self.settings.state_dir, facts)
        except OSError as exc:
            if not self._live_unpublished:
                log.warning("cannot publish the live facts for watch", error=str(exc))
            self._live_unpublished = True
        else:
            self._live_unpublished = False

    async def _watch_inbox(self, stop: anyio.Event) -> None:
        await self.inbox.watch(
            stop,
            force_polling=self.settings.inbox.force_polling,
            rescan_interval_s=self.settings.inbox.rescan_interval_s,
        )

    async def _enforce_deadlines(self) -> None:
        """Generations still waiting past their job's deadline: look once more, then give up."""
        deadline_s = self.settings.jobs.deadline_s
        while True:
            await anyio.sleep(min(60.0, deadline_s / 4))
            for generation_id in self.matcher.overdue(deadline_s):
                await self._give_up_waiting(generation_id, deadline_s)

    async def _give_up_waiting(self, generation_id: str, deadline_s: float) -> None:
        pending = self.matcher.pending.get(generation_id)
        if pending is None:
            return
        provider = self.providers[pending.provider]
        try:
            remote = await provider.get(generation_id)
        except DropreelError:
            remote = None
        if remote is not None and remote.status.is_terminal:
            await self.observe(
                Observation(
                    generation_id, remote.status, Source.POLL, remote.result_url, remote.error
                )
            )
            return
        try:
            await provider.cancel(generation_id)
            cancelled = "cancelled at the provider"
        except DropreelError as exc:
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
        """Nothing in the inbox, no job unfinished (but those the budget holds: they wait for
        a period or a cap to change), no generation waiting for anything."""
        try:
            names = await anyio.to_thread.run_sync(self.inbox.waiting_names)
        except OSError:
            return False  # an inbox we cannot read may hold work: see Inbox.watch
        if names:
            return False
        jobs, phases = await self.store.counts()
        if any(jobs.get(state, 0) for state in _UNFINISHED_JOB_STATES):
            unsent = [s for s in _UNFINISHED_JOB_STATES if jobs.get(s, 0)]
            if unsent != [JobState.ACCEPTED] or not await self._all_held_by_budget():
                return False
        if self.webhooks is not None and await self.store.webhooks_due():
            return False
        return not any(
            phases.get(phase, 0) for phase in (Phase.WAITING, Phase.DOWNLOADING, Phase.HOOKING)
        )

    async def _all_held_by_budget(self) -> bool:
        # Read after the counts: none left means one was just claimed, not that all are held.
        waiting = await self.store.jobs([JobState.ACCEPTED])
        held = [j for j in waiting if (read_holdup(j.error) or (None,))[0] is Holdup.BUDGET]
        return bool(waiting) and len(held) == len(waiting)

    # ---- recovery ---------------------------------------------------------------------

    async def _recover(self) -> None:
        """Pick up every unfinished job and generation where the last run left it."""
        await anyio.to_thread.run_sync(finish_failed_moves, self.settings.failed_dir)
        await anyio.to_thread.run_sync(sweep_move_temps, self.settings.accepted_dir)
        for job in await self.store.jobs([JobState.CLAIMING]):
            await self._finish_claim(job)
        # After the claims above are settled, so each accepted job is queued exactly once.
        for job in await self.store.jobs([JobState.ACCEPTED]):
            await self.submitter.stage.put(job.job_id)
        self._lost_posts = [j.job_id for j in await self.store.jobs([JobState.SUBMITTING])]
        async for page in self.store.waiting_generations():
            for generation_id, job_id, status, accepted_at, provider in page:
                self.matcher.register(
                    job_id,
                    [(generation_id, RemoteStatus(status))],
                    enqueued_at=accepted_at,
                    provider=provider,
                )
        for generation in await self.store.generations_in(Phase.DOWNLOADING):
            await self.completion.deliveries.put(generation.generation_id)
        # Every due hook is queued here, those asked for again while we were away too.
        await self.store.take_hook_reruns()
        for generation in await self.store.generations_in(Phase.HOOKING):
            await self.completion.hooks.put(generation.generation_id)
        if self.webhooks is not None:
            for generation_id in await self.store.webhooks_due():
                await self.webhooks.stage.put(generation_id)
        for job_id in await self.store.jobs_ready_to_complete():
            await self.completion.complete_if_done(job_id)

    async def _finish_claim(self, job: JobRow) -> None:
        """A crash came between recording a claim and moving its files: finish the moves."""

        def settle() -> str | None:
            if not job.kept_path or not settle_move(Path(job.source_path), Path(job.kept_path)):
                return "the job file vanished while being claimed"
            image = (job.image_source, job.image_path)
            if image[0] and image[1] and not settle_move(Path(image[0]), Path(image[1])):
                return "its image vanished while being claimed"
            return None

        problem = await anyio.to_thread.run_sync(settle)
        if problem is None:
            await self.store.set_job_state(job.job_id, JobState.ACCEPTED)
        else:
            await self.store.set_job_state(job.job_id, JobState.FAILED, error=problem)

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
            percent = observed.progress.percent if observed.progress else None
            if decision.status is waiting.status and percent == waiting.progress:
                return  # the same as last time: nothing to record
            waiting.status, waiting.progress = decision.status, percent
            await self.store.update_remote_status(
                observed.generation_id, decision.status, observed.progress
            )
            return
        assert isinstance(decision, Finished)
        # Forget first, synchronously: a duplicate event or a racing poll now finds nothing.
        self.matcher.forget(observed.generation_id)
        if observed.source is Source.EVENT:
            self.counters.events_matched += 1
        self.metrics.generation_finished(observed.generation_id)
        self.finishes.add(
            Finish(
                observed.generation_id,
                waiting.job_id,
                decision.status,
                decision.next_phase,
                result_url=decision.result_url,
                error=decision.error,
                source=observed.source.value,
                progress=observed.progress,
            )
        )
