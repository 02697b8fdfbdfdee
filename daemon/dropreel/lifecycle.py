"""Job and generation states, and what an observation of a generation means for it. No I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class JobState(enum.StrEnum):
    CLAIMING = "claiming"  # row written, file not yet moved out of the inbox
    ACCEPTED = "accepted"  # file moved to state/accepted, not yet POSTed
    SUBMITTING = "submitting"  # POST may be on the wire: its answer decides what happened
    SUBMITTED = "submitted"  # generations recorded
    COMPLETED = "completed"  # every generation terminal and the manifest written
    FAILED = "failed"  # rejected file or refused by the provider; explained in `error`
    NEEDS_ATTENTION = "needs_attention"  # cannot be settled without a person


class RemoteStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The provider forgot the generation (404) and no record says how it ended.
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self not in (RemoteStatus.QUEUED, RemoteStatus.PROCESSING)

    @classmethod
    def parse(cls, value: object) -> RemoteStatus | None:
        try:
            return cls(str(value).lower())
        except ValueError:
            return None


class Phase(enum.StrEnum):
    """Where a generation is on our side."""

    WAITING = "waiting"  # not terminal at the provider as far as we know
    DOWNLOADING = "downloading"  # succeeded; the result is not in the outbox yet
    HOOKING = "hooking"  # terminal and delivered; the hook has not run to success yet
    DONE = "done"  # nothing left to do


class Source(enum.StrEnum):
    EVENT = "event"
    POLL = "poll"


@dataclass(frozen=True, slots=True)
class Progress:
    """How far along a generation is and what it costs, where the provider says."""

    percent: int | None = None
    cost_usd: float | None = None
    cost_is_estimate: bool = False


@dataclass(frozen=True, slots=True)
class Observation:
    """What we learnt about one generation, from the event stream or from REST."""

    generation_id: str
    status: RemoteStatus
    source: Source
    result_url: str | None = None
    error: str | None = None
    progress: Progress | None = None


@dataclass(frozen=True, slots=True)
class Ignore:
    reason: str


@dataclass(frozen=True, slots=True)
class StillRunning:
    status: RemoteStatus


@dataclass(frozen=True, slots=True)
class Finished:
    """The generation is terminal: record it and move it to `next_phase`."""

    status: RemoteStatus
    next_phase: Phase
    result_url: str | None
    error: str | None


Decision = Ignore | StillRunning | Finished

HOOK_STATUS = {
    RemoteStatus.SUCCEEDED: "succeeded",
    RemoteStatus.FAILED: "failed",
    RemoteStatus.CANCELLED: "cancelled",
    RemoteStatus.UNKNOWN: "failed",
}


def decide(phase: Phase, status: RemoteStatus, observed: Observation) -> Decision:
    """What an observation means for a generation now in `phase` with last known `status`."""
    if phase is not Phase.WAITING:
        if (
            phase is Phase.DOWNLOADING
            and observed.status is RemoteStatus.SUCCEEDED
            and observed.result_url
        ):
            # A fresher URL for a result we have not fetched yet: the old one may have expired.
            return Finished(RemoteStatus.SUCCEEDED, Phase.DOWNLOADING, observed.result_url, None)
        return Ignore(f"already {phase.value}")
    if not observed.status.is_terminal:
        if observed.status is status and observed.progress is None:
            return Ignore("no change")
        return StillRunning(observed.status)
    if observed.status is RemoteStatus.SUCCEEDED:
        # Without a usable URL it is still paid for: delivery asks the provider for one.
        return Finished(RemoteStatus.SUCCEEDED, Phase.DOWNLOADING, observed.result_url, None)
    error = observed.error or _default_error(observed.status)
    return Finished(observed.status, Phase.HOOKING, None, error)


def _default_error(status: RemoteStatus) -> str:
    if status is RemoteStatus.CANCELLED:
        return "cancelled"
    if status is RemoteStatus.UNKNOWN:
        return (
            "the provider no longer knows this generation (404) and kept no record of its "
            "outcome; it was not resubmitted"
        )
    return "failed without a message from the provider"


def job_state_after_generations(phases: list[Phase]) -> bool:
    """Whether a job whose generations are in these phases can have its manifest written."""
    return bool(phases) and all(p in (Phase.HOOKING, Phase.DONE) for p in phases)
