"""Operator commands: status, show, cancel, retry and check-config, safe while the daemon runs."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from glob import escape as glob_escape
from pathlib import Path

import anyio
from pydantic import SecretStr

from dropreel.config import Settings, read_api_key, read_webhook_key
from dropreel.errors import CommandError, ConfigError, DropreelError
from dropreel.fs.layout import overlap_problem
from dropreel.fs.moves import lexists, link_no_clobber, probe_folder, same_content, stage_copy
from dropreel.fs.naming import first_free
from dropreel.hooks.run import hook_problem
from dropreel.hooks.webhook_send import shown
from dropreel.intake.batches import batch_of
from dropreel.lifecycle import JobState, Phase
from dropreel.ops.board import counts, jobs_to_show, parse_since, parse_states, start_of_day
from dropreel.ops.board import spend as todays_spend
from dropreel.ops.report import job_story, json_line, terminal_safe
from dropreel.ops.shortid import resolve
from dropreel.ops.standing import CANCELLED_BEFORE_SUBMISSION
from dropreel.ops.status_view import Summary, status_record, status_table
from dropreel.providers.oxen.client import events_url
from dropreel.providers.registry import Connected, api_prefix, connected_providers
from dropreel.spend.report import spend_lines, spend_table
from dropreel.state.lock import lock_holder
from dropreel.state.records import JobRow
from dropreel.state.store import Store


@asynccontextmanager
async def database(settings: Settings, *, write: bool = False) -> AsyncIterator[Store]:
    if not settings.database_path.exists():
        raise CommandError(
            f"no database at {settings.database_path} (has the daemon run with this config?)"
        )
    async with Store.open(settings.database_path, read_only=not write) as store:
        yield store


async def one_job(store: Store, given: str) -> JobRow:
    """The job `given` names: its id, its short id (as status shows it) or its start."""
    job_id = only_one(given, resolve(given, await store.job_ids()), "jobs")
    job = await store.job(job_id) if job_id else None
    if job is None:
        raise CommandError(f"no job {given!r}")
    return job


def only_one(given: str, found: Sequence[str], things: str) -> str | None:
    """The one id `given` named; None if none; CommandError if it names several."""
    if len(found) > 1:
        some = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise CommandError(f"{given!r} matches {len(found)} {things} ({some}); give more of it")
    return found[0] if found else None


async def status(
    settings: Settings,
    *,
    as_json: bool,
    width: int | None = None,
    since: str | None = None,
    states: Sequence[str] = (),
) -> str:
    """Every job (accepted `since`, standing in one of `states`), one line each, and a
    summary; or one JSON object per job."""
    now = time.time()
    wanted = parse_states(states)
    after = parse_since(since, now=now) if since is not None else None
    async with database(settings) as store:
        jobs = await jobs_to_show(store, since=after, states=wanted)
        if as_json:
            return "\n".join(json_line(status_record(j)) for j in jobs)
        spent = todays_spend(await store.costs_since(start_of_day(now)))
    summary = Summary(counts(jobs), spent, daemon_words(settings), settings.budget.daily_usd)
    return status_table(jobs, summary, now=now, width=width)


async def spend(settings: Settings, *, since: str | None = None, as_json: bool = False) -> str:
    """What generations created since `since` (all without it) cost, per day, model and
    provider: reported where the provider says, else estimated from the model's price."""
    after = parse_since(since, now=time.time()) if since is not None else 0.0
    async with database(settings) as store:
        lines = spend_lines(await store.spend_rows(after))
    if as_json:
        return "\n".join(json_line(line.record()) for line in lines)
    return terminal_safe(spend_table(lines))


def daemon_words(settings: Settings) -> str | None:
    """Whether the daemon runs: "running (pid 12)" or "not running"; None if the lock
    cannot be looked at."""
    try:
        holder = lock_holder(settings.state_dir)
    except OSError:
        return None
    return "not running" if holder is None else f"running ({holder})"


async def show(settings: Settings, prefix: str) -> str:
    async with database(settings) as store:
        job = await one_job(store, prefix)
        generations = await store.generations_of(job.job_id)
        history = [
            (r["at"], r["generation_id"], r["what"], r["detail"])
            for r in await store.history(job.job_id)
        ]
    return job_story(job, generations, history)


async def retry(settings: Settings, prefix: str) -> str:
    """Resubmit a parked or failed job on a person's request, once: its file goes back to
    the inbox as a new job."""
    async with database(settings, write=True) as store:
        job = await one_job(store, prefix)
        if job.retried_as:
            return await _finish_or_refuse_retry(settings, store, job, job.retried_as)
        if job.state not in (JobState.NEEDS_ATTENTION, JobState.FAILED):
            raise CommandError(
                f"job {job.job_id} is {job.state.value}; only needs_attention and failed jobs "
                "can be retried"
            )
        kept = Path(job.kept_path) if job.kept_path else None
        if kept is None or not kept.is_file():
            raise CommandError(f"job {job.job_id}'s file is gone ({job.kept_path})")
        name = job.source_name
        if batch_of(job.source_name) is not None:
            if kept.parent == settings.accepted_dir:
                raise CommandError(
                    f"job {job.job_id} is {job.source_name}, a row of a batch: retrying it "
                    "would send the whole batch again; drop that row as a file of its own"
                )
            # A refused row was kept as a file of its own: that file goes back.
            name = str(Path(job.source_name).parent / kept.name)
        inbox = settings.inbox_dir
        if job.image_path and job.image_source:
            await anyio.to_thread.run_sync(
                _restore_image, Path(job.image_path), inbox / Path(job.image_source).name
            )
        # The copy waits under a hidden name (the daemon ignores those) until the retry is
        # recorded: only the winner of the compare-and-set lets it into the inbox, and a
        # crash in between leaves the copy for the next `retry` to finish placing.
        staged = stage_copy(kept, inbox, prefix=_retry_prefix(job.job_id))
        target = inbox / first_free(name, lambda n: lexists(inbox / n))
        if not await store.mark_retried(job.job_id, str(target)):
            staged.unlink()
            refreshed = await store.job(job.job_id)
            return await _finish_or_refuse_retry(
                settings, store, job, (refreshed and refreshed.retried_as) or str(target)
            )
        # Back into its own folder: a preset's job goes back into the preset's folder.
        placed = link_no_clobber(staged, target.parent, target.name)
        if placed != target:
            await store.mark_retried_as(job.job_id, str(placed))
    return str(placed)


def _restore_image(kept: Path, target: Path) -> None:
    """Put a job's image back in the inbox under the name its job file gives it."""
    if not kept.is_file():
        raise CommandError(f"its image is gone ({kept})")
    if lexists(target):
        if same_content(kept, target):
            return
        raise CommandError(f"{target} is another file; move it aside to retry this job")
    staged = stage_copy(kept, target.parent, prefix=".dropreel-retry-image-")
    try:
        os.link(staged, target)
    except FileExistsError:
        raise CommandError(f"{target} appeared meanwhile; move it aside to retry") from None
    finally:
        staged.unlink()


def _retry_prefix(job_id: str) -> str:
    return f".dropreel-retry-{job_id}-"


async def _finish_or_refuse_retry(
    settings: Settings, store: Store, job: JobRow, placed: str
) -> str:
    """A job already retried: finish placing its copy if a crash cut that short, else refuse
    naming the job it became."""
    taken = await store.job_from_source(placed)
    if taken is None and not lexists(Path(placed)):
        inbox = settings.inbox_dir
        staged = sorted(inbox.glob(glob_escape(_retry_prefix(job.job_id)) + "*"))
        if staged:
            final = link_no_clobber(staged[0], inbox, Path(placed).name)
            for leftover in staged[1:]:
                leftover.unlink(missing_ok=True)
            await store.mark_retried_as(job.job_id, str(final))
            return str(final)
    became = (
        f"job {taken.job_id} ({taken.state.value})"
        if taken is not None
        else "a file the daemon has not taken yet"
    )
    raise CommandError(f"job {job.job_id} was already retried: it became {became}, from {placed}")


async def cancel(settings: Settings, prefix: str) -> str:
    """Stop a job: at the provider if it was submitted, before the POST if it was not."""
    async with database(settings, write=True) as store:
        job = await one_job(store, prefix)
        if job.state is JobState.ACCEPTED and await store.cancel_unsubmitted(
            job.job_id, CANCELLED_BEFORE_SUBMISSION
        ):
            return f"job {job.job_id} cancelled before it was submitted (nothing was billed)"
        waiting = [g for g in await store.generations_of(job.job_id) if g.phase is Phase.WAITING]
        if not waiting:
            raise CommandError(
                f"job {job.job_id} is {job.state.value} with nothing waiting at the provider"
            )
        api_key = read_api_key(settings, name=job.provider)
        async with connected_providers(settings, {job.provider: api_key}, only=job.provider) as (
            providers
        ):
            provider = providers[job.provider].provider
            for generation in waiting:
                try:
                    await provider.cancel(generation.generation_id)
                except DropreelError as exc:
                    raise CommandError(
                        f"cancelling {generation.generation_id} failed: {exc}"
                    ) from None
                await store.note(
                    job.job_id, "cancel requested", "dropreel cancel", generation.generation_id
                )
        # Cancellations fire no event: ask the daemon to look.
        await store.request_reconcile()
    return (
        f"asked the provider to cancel {len(waiting)} generation(s) of job {job.job_id}; "
        "the daemon records it within seconds (at its next start if it is not running)"
    )


async def check_config(settings: Settings) -> tuple[bool, list[str]]:
    """Each check with its verdict: config, keys, folders, and each provider's API and
    event stream."""
    lines = [f"ok    config: {settings.config_file or 'no file; defaults and environment'}"]
    healthy = True

    def verdict(ok: bool, what: str) -> None:
        nonlocal healthy
        healthy &= ok
        lines.append(f"{'ok  ' if ok else 'FAIL'}  {what}")

    keys: dict[str, SecretStr] = {}
    several = len(settings.providers) > 1
    for name, config in settings.providers.items():
        label = f" ({name})" if several else ""
        try:
            keys[name] = read_api_key(settings, name=name)
            source = config.api_key_file or f"${config.api_key_env}"
            verdict(True, f"api key{label}: present (from {source})")
        except ConfigError as exc:
            verdict(False, f"api key{label}: {exc.problem}")
    overlapping = overlap_problem(settings.folders())
    if overlapping is not None:
        verdict(False, ": ".join(overlapping))
    for key, folder in settings.folders().items():
        verdict(*_folder_verdict(key, folder))
    for ok, what in _hook_verdicts(settings):
        verdict(ok, what)
    for name in settings.providers:
        label = f" ({name})" if several else ""
        if name not in keys:
            verdict(False, f"api and event stream{label}: not checked without a key")
            continue
        async with connected_providers(settings, keys, only=name) as providers:
            for ok, what in await _provider_verdicts(settings, name, providers[name]):
                verdict(ok, what.replace(":", f"{label}:", 1))
    return healthy, lines


async def _provider_verdicts(
    settings: Settings, name: str, connected: Connected
) -> list[tuple[bool, str]]:
    """Whether the provider's API answers, and its event stream connects (if it has one)."""
    config = settings.providers[name]
    api = api_prefix(config)
    found: list[tuple[bool, str]] = []
    started = time.monotonic()
    try:
        await connected.provider.listed(())
        elapsed_ms = (time.monotonic() - started) * 1000
        found.append((True, f"api: {api} answered in {elapsed_ms:.0f} ms"))
    except DropreelError as exc:
        found.append((False, f"api: {api}: {exc or type(exc).__name__}"))
    if connected.feed is None:
        return found
    stream = events_url(str(config.base_url))
    try:
        with anyio.fail_after(config.connect_timeout_s + 5):
            async with connected.feed.connect():
                pass
        found.append((True, f"event stream: {stream} connected"))
    except (DropreelError, TimeoutError) as exc:
        found.append((False, f"event stream: {stream}: {exc or type(exc).__name__}"))
    return found


def _hook_verdicts(settings: Settings) -> list[tuple[bool, str]]:
    """Whether the hook's program can be run, and the webhook's secret can sign."""
    found = []
    if settings.hook_argv:
        problem = hook_problem(settings.hook_argv, os.environ.get("PATH"))
        found.append((problem is None, f"hooks.on_complete: {problem or settings.hook_argv[0]}"))
    if settings.hooks.on_complete_url is not None:
        found.append(_webhook_verdict(settings))
    return found


def _webhook_verdict(settings: Settings) -> tuple[bool, str]:
    """Whether the webhook's secret can sign (the receiver is not called: that would deliver)."""
    try:
        read_webhook_key(settings)
    except ConfigError as exc:
        return False, f"{exc.key}: {exc.problem}"
    url = shown(str(settings.hooks.on_complete_url))
    return True, f"hooks.on_complete_url: {url}, signed with {settings.webhook_secret_path}"


def _folder_verdict(key: str, folder: Path) -> tuple[bool, str]:
    created = not folder.exists()
    problem = probe_folder(folder)
    if problem is not None:
        return False, f"{key}: {problem}"
    return True, f"{key}: {folder}" + (" (created)" if created else "")
