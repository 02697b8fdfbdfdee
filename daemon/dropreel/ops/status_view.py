"""`dropreel status` as people and scripts read it: a table fitted to the terminal that never
cuts a reason, a summary line, or one JSON object per job. Pure formatting."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dropreel.delivery.download import iso, total_cost
from dropreel.ops.board import ShownJob, Spend
from dropreel.ops.report import age, generation_label, terminal_safe
from dropreel.ops.standing import Standing

HEADER = ("ID", "STATE", "AGE", "NAME", "REASON")
_GAP = "  "
# A name is cut (with "…") before a reason is wrapped, but never below this.
_NAME_MIN = 12
# Narrower than this, a reason column wraps into a ribbon: it goes on lines of its own.
_REASON_MIN = 24
_INDENT = "    "


@dataclass(frozen=True, slots=True)
class Summary:
    counts: Mapping[Standing, int]
    spent_today: Spend
    daemon: str | None  # "running (pid 12)", "not running", or None if it cannot be told
    daily_cap_usd: float | None = None  # [budget] daily_usd, where one is set


def status_table(
    jobs: Sequence[ShownJob], summary: Summary, *, now: float, width: int | None = None
) -> str:
    """One row per job, each reason whole (wrapped, or on lines of its own when the
    terminal is narrow), then the summary line."""
    rows = [
        [
            terminal_safe(cell)
            for cell in (
                shown.short_id,
                shown.standing.state.value,
                age(now - shown.job.created_at),
                shown.job.stem,
                shown.standing.reason,
            )
        ]
        for shown in jobs
    ]
    lines = fitted([list(HEADER), *rows], width) if rows else ["no jobs to show"]
    return "\n".join([*lines, *_wrapped(summary_line(summary), width)])


def fitted(rows: Sequence[list[str]], width: int | None) -> list[str]:
    """Rows of (id, state, age, name, reason) in columns within `width` (None: no limit).
    Names are cut first; a reason is wrapped in its column, or given lines of its own
    below its row, and never cut."""
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    longest_reason = max(len(row[4]) for row in rows)
    name = widths[3]
    if width is not None:
        before_name = sum(widths[:3]) + 3 * len(_GAP)
        room_for_name = width - before_name - len(_GAP) - min(longest_reason, 2 * _REASON_MIN)
        widths[3] = max(min(name, room_for_name), min(name, _NAME_MIN))
    start = sum(widths) + 4 * len(_GAP)
    # Where a reason's lines begin, and how wide they may be.
    indent, room = start, None if width is None else width - start
    if width is not None and width - start < _REASON_MIN:
        # Lines of its own: the row keeps the whole width for its name.
        widths[3] = min(name, max(1, width - before_name))
        indent, room = len(_INDENT), width - len(_INDENT)
    lines = []
    for row in rows:
        cells = [_cut(cell, w).ljust(w) for cell, w in zip(row, widths, strict=False)]
        reason = _wrapped(row[4], room)
        if indent == start:
            lines.append(_GAP.join([*cells, *reason[:1]]).rstrip())
            reason = reason[1:]
        else:
            lines.append(_GAP.join(cells).rstrip())
        lines += [" " * indent + part for part in reason]
    return lines


def summary_line(summary: Summary) -> str:
    """How many jobs in each state, what today cost, and whether the daemon runs."""
    total = sum(summary.counts.values())
    each = ", ".join(f"{n} {state.value}" for state, n in summary.counts.items())
    parts = [f"{total} job{'' if total == 1 else 's'}" + (f": {each}" if each else "")]
    cap = summary.daily_cap_usd
    of_cap = f" of the ${cap:.2f} daily cap" if cap is not None else ""
    parts.append(f"spent today: {summary.spent_today}{of_cap}")
    if summary.daemon is not None:
        parts.append(f"daemon {summary.daemon}")
    return "; ".join(parts)


def status_record(shown: ShownJob) -> dict[str, Any]:
    """Every field of a job for scripts (`status --json`): where it stands and why, as the
    table says, and what the database holds."""
    job, generations = shown.job, shown.generations
    return {
        "job_id": job.job_id,
        "short_id": shown.short_id,
        "state": shown.standing.state.value,
        "reason": shown.standing.reason,
        "job_state": job.state.value,
        "name": job.stem,
        "source_file": job.source_name,
        "source_path": job.source_path,
        "kept_path": job.kept_path,
        "image": job.image_source,
        "provider": job.provider,
        "request": job.request,
        "cost_usd": total_cost(generations),
        "error": job.error,
        "created_at": iso(job.created_at),
        "submitted_at": iso(job.submitted_at),
        "finished_at": iso(job.finished_at),
        "updated_at": iso(job.updated_at),
        "post_attempts": job.post_attempts,
        "manifest": job.manifest_path,
        "retried_as": job.retried_as,
        # Result URLs are left out: a presigned one is a credential to the video.
        "generations": [
            {
                "generation_id": g.generation_id,
                "index": g.idx,
                "state": generation_label(g),
                "remote_status": g.remote_status.value,
                "phase": g.phase.value,
                "output": g.output_path,
                "error": g.error,
                "progress": g.progress,
                "cost_usd": g.cost_usd,
                "cost_is_estimate": g.cost_is_estimate,
                "download_attempts": g.download_attempts,
                "hook_attempts": g.hook_attempts,
                "hook_error": g.hook_error,
                "webhook_state": g.webhook_state,
                "webhook_attempts": g.webhook_attempts,
                "webhook_error": g.webhook_error,
                "enqueued_at": iso(g.enqueued_at),
                "completed_at": iso(g.completed_at),
                "delivered_at": iso(g.delivered_at),
                "hooked_at": iso(g.hooked_at),
            }
            for g in generations
        ],
    }


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _wrapped(text: str, width: int | None) -> list[str]:
    if width is None or len(text) <= width:
        return [text] if text else []
    return textwrap.wrap(text, max(1, width), break_on_hyphens=False)
