"""`dropreel hooks rerun ID`: run again every hook of a job (or one generation) that gave
up, whether the daemon runs or not, and never two runs of one hook at once."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import anyio
from pydantic import SecretStr

from dropreel.cli.admin import database, only_one
from dropreel.config import Settings, key_sources, read_api_key, read_webhook_key
from dropreel.errors import CommandError, ConfigError
from dropreel.hooks.run import hook_environment, hook_fields, hook_stdin, run_hook
from dropreel.hooks.webhook_send import WebhookSender
from dropreel.lifecycle import Phase
from dropreel.ops.report import terminal_safe
from dropreel.ops.shortid import resolve
from dropreel.state.lock import AlreadyRunning, hold_state_lock
from dropreel.state.records import GenerationRow, JobRow
from dropreel.state.store import Store

# How often to look whether the running daemon has run what it was asked to.
_LOOK_EVERY_S = 0.2


async def rerun_hooks(settings: Settings, given: str) -> tuple[bool, str]:
    """Whether every hook ran to success this time, and a line for each.

    With a daemon running, it owns the hooks: they are marked due in the database, and it
    picks them up within a heartbeat. Without one, this command takes the state folder's
    lock (a daemon starting meanwhile is refused) and runs them itself, as the user running
    it. Each rerun is one attempt."""
    if not settings.hook_argv and settings.hooks.on_complete_url is None:
        raise CommandError("no hook to run: hooks.on_complete and hooks.on_complete_url are empty")
    async with database(settings, write=True) as store:
        job, gave_up = await _given_up(store, given)
        kinds = {g.generation_id: _kinds_given_up(g) for g in gave_up}
        ids = [g.generation_id for g in gave_up]
        try:
            lock = hold_state_lock(settings.state_dir)
        except OSError as exc:
            raise CommandError(
                f"cannot take the state folder's lock ({exc.strerror}): run this as the "
                "service's user"
            ) from None
        except AlreadyRunning:
            due = await store.want_hooks_again(ids, by_daemon=True)
            await _until_run(store, due, within_s=_daemon_may_take_s(settings, len(due)))
        else:
            try:
                due = await store.want_hooks_again(ids, by_daemon=False)
                for generation in gave_up:
                    if generation.generation_id in due:
                        await _run_here(settings, store, job, generation)
            finally:
                os.close(lock)
        return await _outcomes(store, job, {g: kinds[g] for g in due})


async def _given_up(store: Store, given: str) -> tuple[JobRow, list[GenerationRow]]:
    """The job `given` names (by a job or a generation id, or either's short form), and its
    generations whose hook gave up: all of the job's, or the one generation named."""
    job_id = only_one(given, resolve(given, await store.job_ids()), "jobs")
    if job_id is not None:
        found = await store.job(job_id), await store.generations_of(job_id)
    else:
        known = sorted(await store.known_generation_ids())
        generation_id = only_one(given, resolve(given, known), "generations")
        pair = await store.generation_with_job(generation_id) if generation_id else None
        found = (pair[1], [pair[0]]) if pair else (None, [])
    job, generations = found
    if job is None:
        raise CommandError(f"no job or generation {given!r}")
    gave_up = [g for g in generations if _kinds_given_up(g)]
    if not gave_up:
        which = f"generation {generations[0].generation_id}" if job_id is None else "job"
        raise CommandError(f"no hook of {which} {job.job_id} gave up: nothing to run again")
    return job, gave_up


def _kinds_given_up(generation: GenerationRow) -> list[str]:
    """Which of a generation's hooks gave up: "hook" (the command), "webhook"."""
    kinds = []
    if generation.phase is Phase.DONE and generation.hook_error:
        kinds.append("hook")
    if generation.webhook_state == "gave_up":
        kinds.append("webhook")
    return kinds


async def _run_here(
    settings: Settings, store: Store, job: JobRow, generation: GenerationRow
) -> None:
    """One run of each hook that gave up, told and recorded as the daemon would."""
    kinds = _kinds_given_up(generation)
    fields = hook_fields(job, generation)
    if "hook" in kinds and settings.hook_argv:
        env = hook_environment(os.environ, fields, key_sources(settings, _readable_keys(settings)))
        result = await run_hook(
            settings.hook_argv, env, hook_stdin(fields), timeout_s=settings.hooks.timeout_s
        )
        await store.record_hook_attempt(
            generation,
            error=None if result.ok else result.detail,
            give_up=True,
            detail=result.detail,
        )
    key, url = read_webhook_key(settings), settings.hooks.on_complete_url
    if "webhook" in kinds and key is not None and url is not None:
        sender = WebhookSender(str(url), key, timeout_s=settings.hooks.timeout_s)
        try:
            sent = await sender.send(generation.generation_id, fields)
        finally:
            await sender.aclose()
        await store.record_webhook_attempt(
            generation, error=None if sent.ok else sent.detail, give_up=True, detail=sent.detail
        )


def _readable_keys(settings: Settings) -> dict[str, SecretStr]:
    """The keys this user can read: whatever holds them is kept from the hook (variables
    naming a key and key files are, whether or not they can be read)."""
    keys = {}
    for name in settings.providers:
        try:
            keys[name] = read_api_key(settings, name=name)
        except ConfigError:
            pass
    return keys


def _daemon_may_take_s(settings: Settings, hooks: int) -> float:
    """A heartbeat to notice, then each hook to its time-out (they may queue), and a margin."""
    return 2 * settings.service.heartbeat_s + hooks * settings.hooks.timeout_s + 5.0


async def _until_run(store: Store, generation_ids: Sequence[str], *, within_s: float) -> None:
    with anyio.move_on_after(within_s):
        while True:
            rows = [await store.generation(g) for g in generation_ids]
            if all(
                r is None or (r.phase is not Phase.HOOKING and r.webhook_state != "due")
                for r in rows
            ):
                return
            await anyio.sleep(_LOOK_EVERY_S)


async def _outcomes(
    store: Store, job: JobRow, kinds: Mapping[str, Sequence[str]]
) -> tuple[bool, str]:
    """A line per hook run again (command, webhook): how it ended, as the story records it."""
    runs: dict[tuple[str, str], tuple[str, str | None]] = {}
    for r in await store.history(job.job_id):
        generation_id, what, detail = r["generation_id"], r["what"], r["detail"]
        if not what.startswith("hook ") or generation_id not in kinds:
            continue
        if what == "hook rerun asked":
            for kind in kinds[generation_id]:
                runs[(generation_id, kind)] = ("hook still running", None)
            continue
        kind = "webhook" if (detail or "").startswith("webhook") else "hook"
        runs[(generation_id, kind)] = (what, detail)
    lines, ok = [], True
    for generation_id, rerun in kinds.items():
        for kind in rerun:
            what, detail = runs.get((generation_id, kind), ("hook still running", None))
            ok &= what == "hook ok"
            outcome = {"hook ok": "ran", "hook gave up": "gave up again"}.get(what, "still running")
            lines.append(f"{kind} of {generation_id} (job {job.job_id}) {outcome}: {detail or '-'}")
    if not kinds:
        lines.append(f"job {job.job_id}: its hooks were already due again")
        ok = False
    return ok, "\n".join(terminal_safe(line) for line in lines)
