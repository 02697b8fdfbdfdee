"""Where a job stands, for a person at a glance: one state and the reason in words, read
from its stored rows. Pure: `status` shows it, and a live view can too."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from dropreel.delivery.download import generation_outcome, total_cost
from dropreel.lifecycle import JobState, Phase, RemoteStatus
from dropreel.state.records import GenerationRow, JobRow, expected_generations
from dropreel.submission.holdup import Holdup, read_holdup

# What `dropreel cancel` records on a job it stopped before its POST.
CANCELLED_BEFORE_SUBMISSION = "cancelled on request before it was submitted"


class Standing(enum.StrEnum):
    """In the order a person should look at them: what needs someone first."""

    PARKED = "parked"  # needs_attention: only a person can settle it
    BLOCKED = "blocked"  # not sent: the key is refused, or the provider cannot be reached
    THROTTLED = "throttled"  # not sent yet: the provider asked us to come back later
    HELD = "held"  # not sent: its estimate would cross a budget cap (the reason: "budget: ...")
    HOOK_GAVE_UP = "hook-gave-up"  # delivered (or failed), but its hook stopped trying
    FAILED = "failed"
    WAITING = "waiting"  # not sent yet, or queued or running at the provider
    DELIVERING = "delivering"  # downloading, or its hooks running or trying again
    PARTLY_DELIVERED = "partly-delivered"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class JobStanding:
    state: Standing
    reason: str


def standing(job: JobRow, generations: Sequence[GenerationRow]) -> JobStanding:
    """The job's state for people, and why, from its row and its generations' rows."""
    if job.state is JobState.NEEDS_ATTENTION:
        return JobStanding(Standing.PARKED, job.error or "needs a person to settle it")
    if job.state is JobState.FAILED:
        if job.error == CANCELLED_BEFORE_SUBMISSION:
            return JobStanding(Standing.CANCELLED, job.error)
        return JobStanding(Standing.FAILED, job.error or "failed")
    if job.state in (JobState.CLAIMING, JobState.ACCEPTED, JobState.SUBMITTING):
        return _not_sent(job)
    return _sent(job, generations)


# Each holdup: the job's state, and what it says of the provider.
_HELD = {
    Holdup.THROTTLED: (Standing.THROTTLED, "{} is throttling"),
    Holdup.KEY_REFUSED: (Standing.BLOCKED, "{} refuses the key"),
    Holdup.UNREACHABLE: (Standing.BLOCKED, "{} cannot be reached"),
    Holdup.FAILING: (Standing.BLOCKED, "{} is failing"),
}


def _not_sent(job: JobRow) -> JobStanding:
    if job.state is JobState.CLAIMING:
        return JobStanding(Standing.WAITING, "being taken from the inbox")
    if job.state is JobState.SUBMITTING:
        return JobStanding(Standing.WAITING, f"being sent to {job.provider}")
    held = read_holdup(job.error)
    if held is not None and held[0] is Holdup.BUDGET:
        # Not sent, to keep within the budget: "budget: " and the figures.
        return JobStanding(Standing.HELD, job.error or "")
    if held is not None:
        holdup, failure = held
        state, says = _HELD[holdup]
        return JobStanding(state, f"{says.format(job.provider)}, trying again: {failure}")
    last = f"; the last try: {job.error}" if job.error else ""
    return JobStanding(Standing.WAITING, f"not sent to {job.provider} yet{last}")


def _sent(job: JobRow, generations: Sequence[GenerationRow]) -> JobStanding:
    gave_up = [g for g in generations if g.phase is Phase.DONE and g.hook_error]
    if gave_up:
        return JobStanding(Standing.HOOK_GAVE_UP, _hooks_given_up(gave_up, len(generations)))
    webhook_gave_up = [g for g in generations if g.webhook_state == "gave_up"]
    if webhook_gave_up:
        return JobStanding(
            Standing.HOOK_GAVE_UP, _webhooks_given_up(webhook_gave_up, len(generations))
        )
    waiting = [g for g in generations if g.phase is Phase.WAITING]
    if waiting or not generations:
        return JobStanding(Standing.WAITING, _at_provider(job, generations, waiting))
    if (
        job.state is not JobState.COMPLETED
        or any(g.phase is not Phase.DONE for g in generations)
        or any(g.webhook_state == "due" for g in generations)
    ):
        return JobStanding(Standing.DELIVERING, _delivering(generations))
    return _outcome(generations)


def _hooks_given_up(gave_up: Sequence[GenerationRow], total: int) -> str:
    first = gave_up[0]
    which = f" on {len(gave_up)} of {total}" if total > 1 else ""
    return f"hook gave up{which} after {_tries(first.hook_attempts)}: {first.hook_error}"


def _webhooks_given_up(gave_up: Sequence[GenerationRow], total: int) -> str:
    first = gave_up[0]
    which = f" on {len(gave_up)} of {total}" if total > 1 else ""
    return f"webhook gave up{which} after {_tries(first.webhook_attempts)}: {first.webhook_error}"


def _tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"


def _at_provider(
    job: JobRow, generations: Sequence[GenerationRow], waiting: Sequence[GenerationRow]
) -> str:
    running = [g for g in waiting if g.remote_status is RemoteStatus.PROCESSING]
    parts = []
    total = expected_generations(job)
    if running:
        progress = [g.progress for g in running if g.progress is not None]
        percent = f" ({min(progress)}%)" if progress else ""
        parts.append(f"{_some(len(running), total)}running{percent}")
    if queued := len(waiting) - len(running):
        parts.append(f"{_some(queued, total)}queued")
    done = _so_far(generations, total)
    return done + " and ".join(parts or ["submitted"]) + f" at {job.provider}"


def _delivering(generations: Sequence[GenerationRow]) -> str:
    downloading = sum(1 for g in generations if g.phase is Phase.DOWNLOADING)
    retrying = [g for g in generations if g.phase is Phase.HOOKING and g.hook_error]
    parts = []
    if downloading:
        parts.append(f"downloading {_some(downloading, len(generations))}".rstrip())
    if retrying:
        g = retrying[0]
        parts.append(f"hook failed {_times(g.hook_attempts)}, will try again: {g.hook_error}")
    elif any(g.phase is Phase.HOOKING for g in generations):
        parts.append("running its hook")
    webhooks = [g for g in generations if g.webhook_state == "due"]
    if webhooks and webhooks[0].webhook_error:
        g = webhooks[0]
        parts.append(
            f"webhook failed {_times(g.webhook_attempts)}, will try again: {g.webhook_error}"
        )
    elif webhooks:
        parts.append("sending its webhook")
    return _so_far(generations, len(generations)) + ("; ".join(parts) or "writing its manifest")


def _outcome(generations: Sequence[GenerationRow]) -> JobStanding:
    outcomes = Counter(generation_outcome(g) for g in generations)
    total = len(generations)
    delivered = f"{outcomes['succeeded']}/{total} delivered{_spent(generations)}"
    if outcomes["succeeded"] == total:
        return JobStanding(Standing.DELIVERED, delivered)
    misses = _misses(generations, outcomes)
    if outcomes["succeeded"]:
        return JobStanding(Standing.PARTLY_DELIVERED, f"{delivered}; {misses}")
    if outcomes["cancelled"] == total:
        return JobStanding(Standing.CANCELLED, misses)
    return JobStanding(Standing.FAILED, misses)


def _misses(generations: Sequence[GenerationRow], outcomes: Counter[str]) -> str:
    failed = [g for g in generations if generation_outcome(g) == "failed"]
    total = len(generations)
    parts = []
    if failed:
        why = failed[0].error or "no reason given"
        parts.append(f"{outcomes['failed']}/{total} failed: {why}")
    if outcomes["cancelled"]:
        parts.append(f"{outcomes['cancelled']}/{total} cancelled")
    return "; ".join(parts)


def _so_far(generations: Sequence[GenerationRow], total: int) -> str:
    delivered = sum(1 for g in generations if g.output_path)
    return f"{delivered}/{total} delivered, " if delivered else ""


def _spent(generations: Sequence[GenerationRow]) -> str:
    cost = total_cost(generations)
    if cost is None:
        return ""
    estimated = any(g.cost_is_estimate for g in generations if g.cost_usd is not None)
    return f", ${cost:.2f}" + (" (estimate)" if estimated else "")


def _some(n: int, total: int) -> str:
    """How many of a job's generations ("2 "): nothing when it has only one."""
    return f"{n} " if total > 1 else ""


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"
