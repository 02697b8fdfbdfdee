"""The webhook stage: each terminal generation's facts POSTed to hooks.on_complete_url, its
own queue, workers and retries beside the command hook's, every attempt recorded."""

from __future__ import annotations

import structlog

from dropreel.backoff import backoff_delay
from dropreel.config import HookSettings
from dropreel.hooks.run import hook_fields
from dropreel.hooks.webhook_send import WebhookSender
from dropreel.ops.counters import Counters
from dropreel.stage import Drain, Stage
from dropreel.state.records import GenerationRow, JobRow
from dropreel.state.store import Store

log = structlog.get_logger("dropreel.webhooks")


class Webhooks:
    """Sends due webhooks (the same `webhook-id` on every retry) until one is answered 2xx or
    `hooks.max_attempts` are spent."""

    def __init__(
        self,
        settings: HookSettings,
        store: Store,
        sender: WebhookSender,
        counters: Counters,
        *,
        drain: Drain,
    ) -> None:
        self._settings = settings
        self._store = store
        self._sender = sender
        self._counters = counters
        self.stage = Stage(
            "webhook", self.send, workers=settings.concurrency, drain=drain, finish_on_stop=True
        )
        self._sending: set[str] = set()

    async def due(self, generation_id: str) -> None:
        """A generation reached its hooks: its webhook is due (recorded before it is sent)."""
        await self._store.want_webhook(generation_id)
        await self.stage.put(generation_id)

    async def send(self, generation_id: str) -> None:
        found = await self._store.generation_with_job(generation_id)
        # Queued twice (a rerun asked for while a retry waits): never two attempts at once.
        if found is None or found[0].webhook_state != "due" or generation_id in self._sending:
            return
        self._sending.add(generation_id)
        try:
            await self._send(*found)
        finally:
            self._sending.discard(generation_id)

    async def _send(self, generation: GenerationRow, job: JobRow) -> None:
        fields = hook_fields(job, generation)
        self._counters.webhooks_sent += 1
        result = await self._sender.send(generation.generation_id, fields)
        bound = log.bind(job_id=job.job_id, generation_id=generation.generation_id)
        attempts = generation.webhook_attempts + 1
        give_up = not result.ok and attempts >= self._settings.max_attempts
        await self._store.record_webhook_attempt(
            generation,
            error=None if result.ok else result.detail,
            give_up=give_up,
            detail=result.detail,
        )
        if result.ok:
            bound.info("webhook sent", status=fields["DROPREEL_STATUS"], detail=result.detail)
            return
        self._counters.webhook_failures += 1
        if give_up:
            bound.error("webhook gave up", error=result.detail, attempts=attempts)
            return
        delay = backoff_delay(attempts - 1, initial_s=self._settings.retry_initial_s, max_s=300.0)
        bound.warning("webhook failed", error=result.detail, retry_in_s=round(delay, 2))
        self.stage.later(generation.generation_id, delay)

    async def aclose(self) -> None:
        await self._sender.aclose()
