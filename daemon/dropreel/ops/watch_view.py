"""What `dropreel watch` shows, worked out from stored rows and the daemon's live facts:
each job with a progress figure where its provider reports one and elapsed time against the
model's typical duration where it does not, each provider's stream, the last events. Pure;
the terminal drawing lives in cli/watch_screen.py, the plain text here."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from dropreel.lifecycle import Phase
from dropreel.ops.board import ShownJob
from dropreel.ops.live import LiveFacts, ProviderFacts
from dropreel.ops.report import terminal_safe
from dropreel.ops.standing import Standing
from dropreel.ops.status_view import fitted
from dropreel.state.records import GenerationRow, JobRow

HEADER = ("ID", "STATE", "PROGRESS", "NAME", "REASON")
# The typical duration is the median of this many of a model's latest generations.
TYPICAL_OF = 20
BAR_WIDTH = 20

ModelKey = tuple[str, str]  # (provider, model)


@dataclass(frozen=True, slots=True)
class WatchRow:
    short_id: str
    name: str
    state: Standing
    reason: str
    # 0-100 where the provider reports progress; else None, and `timing` says how long.
    percent: int | None
    timing: str
    # The generations still at the provider: what a watcher asks the daemon about.
    waiting_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Screen:
    title: str
    streams: Sequence[tuple[str, str]]  # (provider, how the daemon hears of it)
    rows: Sequence[WatchRow]
    events: Sequence[tuple[str, str, str]]  # (time of day, job name, what happened)
    summary: str


def typical_durations(
    durations: Iterable[tuple[str, str, float]], *, of_latest: int = TYPICAL_OF
) -> dict[ModelKey, float]:
    """The median of each model's latest `of_latest` durations, from (provider, model,
    seconds) newest first."""
    latest: dict[ModelKey, list[float]] = defaultdict(list)
    for provider, model, seconds in durations:
        if len(latest[provider, model]) < of_latest:
            latest[provider, model].append(seconds)
    return {key: statistics.median(found) for key, found in latest.items()}


def watch_rows(
    jobs: Sequence[ShownJob], typical: Mapping[ModelKey, float], *, now: float
) -> list[WatchRow]:
    """A row per job: those not finished first, oldest first; then the finished ones."""
    ordered = [j for j in jobs if not _finished(j)] + [j for j in jobs if _finished(j)]
    return [
        WatchRow(
            shown.short_id,
            shown.job.stem,
            shown.standing.state,
            shown.standing.reason,
            progress_of(shown.generations),
            timing_of(shown.job, shown.generations, typical, now=now),
            tuple(g.generation_id for g in shown.generations if g.phase is Phase.WAITING),
        )
        for shown in ordered
    ]


def _finished(shown: ShownJob) -> bool:
    return shown.job.finished_at is not None and all(
        g.phase is Phase.DONE for g in shown.generations
    )


def progress_of(generations: Sequence[GenerationRow]) -> int | None:
    """How far the job is at its provider: its least advanced waiting generation, where
    the provider reports progress."""
    found = [g.progress for g in generations if g.phase is Phase.WAITING and g.progress is not None]
    return min(found) if found else None


def timing_of(
    job: JobRow,
    generations: Sequence[GenerationRow],
    typical: Mapping[ModelKey, float],
    *,
    now: float,
) -> str:
    """How long its generations have waited against how long the model usually takes; how
    long a finished one took; nothing for a job not sent yet."""
    waiting = [g for g in generations if g.phase is Phase.WAITING]
    if waiting:
        elapsed = duration(now - min(g.enqueued_at for g in waiting))
        model = str((job.request or {}).get("model"))
        usual = typical.get((job.provider, model))
        if usual is None:
            return f"{elapsed}, typical unknown"
        return f"{elapsed} of ~{duration(usual)}"
    completed = [g.completed_at for g in generations if g.completed_at is not None]
    if completed:
        return f"took {duration(max(completed) - min(g.enqueued_at for g in generations))}"
    return ""


def duration(seconds: float) -> str:
    """A short duration: 45s, 4m05s, 1h02m."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def time_of_day(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S")


def stream_text(facts: ProviderFacts, now: float) -> str:
    """How the daemon hears of one provider's completions, and since when."""
    since = f"since {time_of_day(facts.since)} ({duration(now - facts.since)})"
    every = f"polling every {facts.poll_interval_s:g}s"
    if not facts.streams:
        return f"no stream: {every} {since}"
    if facts.up:
        return f"stream up {since}"
    return f"stream down {since}; {every}"


def streams(live: LiveFacts | None, daemon: str | None, *, now: float) -> list[tuple[str, str]]:
    """Each provider's stream as the daemon last said; or why that cannot be told."""
    if daemon == "not running":
        return [("", "the daemon is not running")]
    if live is None:
        return [("", "the daemon has published no live facts yet")]
    lines = [(name, stream_text(facts, now)) for name, facts in live.providers.items()]
    if not live.fresh(now):
        said = f"{time_of_day(live.written_at)}, {duration(now - live.written_at)} ago"
        lines.append(("", f"as the daemon last said at {said}: is it stuck?"))
    return lines


def event(at: float, name: str, what: str, detail: str | None) -> tuple[str, str, str]:
    """A history row as (time of day, job name, what happened)."""
    return time_of_day(at), name, what + (f": {detail}" if detail else "")


def bar(percent: int, width: int = BAR_WIDTH) -> str:
    """[#####...............]  25%"""
    done = round(width * max(0, min(100, percent)) / 100)
    return f"[{'#' * done}{'.' * (width - done)}] {percent:>3}%"


def progress_cell(row: WatchRow) -> str:
    return bar(row.percent) if row.percent is not None else row.timing


def watched_ids(rows: Iterable[WatchRow]) -> list[str]:
    """The generations on screen that are still at their provider."""
    return [g for row in rows for g in row.waiting_ids]


def screen(
    rows: Sequence[WatchRow],
    live: LiveFacts | None,
    daemon: str | None,
    events: Sequence[tuple[float, str, str, str | None]],
    *,
    now: float,
    note: str | None = None,
) -> Screen:
    """Everything `watch` shows at `now`; `note` says what a person should know of this
    view (that it cannot ask for fresher progress)."""
    counts = Counter(r.state for r in rows)
    each = ", ".join(f"{counts[s]} {s.value}" for s in Standing if counts[s])
    summary = f"{len(rows)} job{'' if len(rows) == 1 else 's'} on watch" + (
        f": {each}" if each else ""
    )
    return Screen(
        title=f"dropreel watch  {time_of_day(now)}  daemon {daemon or 'state unknown'}",
        streams=streams(live, daemon, now=now),
        rows=rows,
        events=[event(*e) for e in events],
        summary=summary + (f"; {note}" if note else ""),
    )


def plain_screen(screen: Screen, width: int | None = None) -> str:
    """The screen as plain lines, for a pipe or `--once`."""
    lines = [screen.title, "streams"]
    name_width = max((len(name) for name, _ in screen.streams), default=0)
    lines += [
        f"  {name.ljust(name_width)}  {text}" if name else f"  {text}"
        for name, text in screen.streams
    ]
    lines.append("jobs")
    if screen.rows:
        table = [
            [
                terminal_safe(cell)
                for cell in (r.short_id, r.state.value, progress_cell(r), r.name, r.reason)
            ]
            for r in screen.rows
        ]
        inner = None if width is None else width - 2
        lines += ["  " + line for line in fitted([list(HEADER), *table], inner)]
    else:
        lines.append("  nothing to show")
    lines.append("last events")
    name_width = max((len(name) for _, name, _ in screen.events), default=0)
    lines += [
        terminal_safe(f"  {at}  {name.ljust(name_width)}  {what}")
        for at, name, what in screen.events
    ] or ["  none yet"]
    lines.append(screen.summary)
    return "\n".join(lines)
