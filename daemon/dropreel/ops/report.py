"""How jobs are shown to people and scripts (`dropreel status`). Pure formatting."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from dropreel.delivery.download import generation_outcome, iso
from dropreel.lifecycle import Phase
from dropreel.state.records import GenerationRow, JobRow

# Characters a terminal acts on rather than shows: C0 and C1 controls (escape sequences,
# newlines, carriage returns) and the bidirectional overrides that reorder what is seen.
_ACTED_ON = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# What JSON itself leaves raw of those (it escapes C0 already).
_RAW_IN_JSON = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """`text` with every character a terminal would act on shown as its escape (`\\x1b`)."""
    return _ACTED_ON.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


def json_line(record: Mapping[str, Any]) -> str:
    """One JSON object on one line, safe to print to a terminal, still plain JSON."""
    text = json.dumps(record, ensure_ascii=False)
    return _RAW_IN_JSON.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def generation_label(generation: GenerationRow) -> str:
    """One word for where a generation is: the provider's status until it is delivered."""
    if generation.phase is Phase.WAITING:
        return generation.remote_status.value
    if generation.phase is Phase.DOWNLOADING:
        return "downloading"
    outcome = generation_outcome(generation)
    if generation.phase is Phase.HOOKING:
        return f"{outcome}+hook-pending"
    return outcome


def age(seconds: float) -> str:
    """A short human age: 45s, 12m, 3h, 2d."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def job_story(
    job: JobRow,
    generations: Sequence[GenerationRow],
    history: Sequence[tuple[float, str | None, str, str | None]],
) -> str:
    """`dropreel show`: everything known about one job."""
    lines = [
        f"job {job.job_id}  {job.state.value}",
        f"  file       {job.source_name}",
        f"  kept at    {job.kept_path or '-'}",
        f"  name       {job.stem}",
        f"  provider   {job.provider}",
        f"  request    {json.dumps(dict(job.request or {}), ensure_ascii=False)}",
        f"  created    {iso(job.created_at)}",
        f"  submitted  {iso(job.submitted_at) or '-'}",
        f"  finished   {iso(job.finished_at) or '-'}",
        f"  manifest   {job.manifest_path or '-'}",
    ]
    if job.error:
        lines.append(f"  error      {job.error}")
    for g in generations:
        lines += _generation_story(g, history)
    lines.append("history:")
    for at, generation_id, what, detail in history:
        about = f" [{generation_id}]" if generation_id else ""
        lines.append(f"  {iso(at)}  {what}{about}{': ' + detail if detail else ''}")
    return "\n".join(terminal_safe(line) for line in lines)


def _generation_story(
    g: GenerationRow, history: Sequence[tuple[float, str | None, str, str | None]]
) -> list[str]:
    lines = [
        f"generation {g.idx}: {g.generation_id}  {generation_label(g)}",
        f"  output     {g.output_path or '-'}",
        f"  attempts   downloads {g.download_attempts}, hooks {g.hook_attempts}"
        + (f", webhooks {g.webhook_attempts}" if g.webhook_state else ""),
    ]
    if g.progress is not None and g.phase is Phase.WAITING:
        lines.append(f"  progress   {g.progress}%")
    if g.cost_usd is not None:
        estimate = " (estimate)" if g.cost_is_estimate else ""
        lines.append(f"  cost       ${g.cost_usd:.2f}{estimate}")
    if g.error:
        lines.append(f"  error      {g.error}")
    if g.hook_error:
        lines.append(f"  hook error {g.hook_error}")
    if g.webhook_state:
        lines.append(
            f"  webhook    {g.webhook_state}" + (f": {g.webhook_error}" if g.webhook_error else "")
        )
    runs = [
        (at, what.removeprefix("hook "), detail)
        for at, generation_id, what, detail in history
        if generation_id == g.generation_id and what.startswith("hook ")
    ]
    if runs:
        lines.append("  hook runs")
        # Each run's end, how it ended, after how long, and the tail of what it printed.
        lines += [
            f"    {iso(at)}  {what}{': ' + detail if detail else ''}" for at, what, detail in runs
        ]
    return lines


def service_status(
    *,
    stream_up: bool | None,
    waiting: int,
    downloading: int,
    hooking: int,
    failed: int,
    needs_attention: int,
) -> str:
    """The one line systemd shows as the service's STATUS (`stream_up` None: no provider
    pushes, so polling is the normal way)."""
    parts = [
        {True: "stream up", False: "stream down, polling", None: "polling"}[stream_up],
        f"{waiting} waiting",
        f"{downloading} downloading",
    ]
    if hooking:
        parts.append(f"{hooking} hooks pending")
    parts.append(f"{failed} failed")
    if needs_attention:
        parts.append(f"{needs_attention} need attention")
    return "; ".join(parts)


def job_summary(
    job: JobRow, generations: Sequence[GenerationRow], *, outcome: str
) -> dict[str, Any]:
    """The facts of the one canonical line logged when a job ends."""
    end = job.finished_at or job.updated_at
    return {
        "job_id": job.job_id,
        "file": job.source_name,
        "outcome": outcome,
        "duration_s": round(end - job.created_at, 3),
        "to_submit_s": round(job.submitted_at - job.created_at, 3) if job.submitted_at else None,
        "generations": len(generations),
        "succeeded": sum(1 for g in generations if generation_outcome(g) == "succeeded"),
        "post_attempts": job.post_attempts,
        "download_attempts": sum(g.download_attempts for g in generations),
        "hook_attempts": sum(g.hook_attempts for g in generations),
        "error": job.error,
    }
