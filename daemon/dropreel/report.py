"""How jobs are shown to people and scripts (`dropreel status`). Pure formatting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dropreel.deliver import generation_outcome, iso
from dropreel.lifecycle import Phase
from dropreel.records import GenerationRow, JobRow


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


def status_record(job: JobRow, generations: Sequence[GenerationRow]) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "name": job.stem,
        "source_file": job.source_name,
        "state": job.state.value,
        "error": job.error,
        "created_at": iso(job.created_at),
        "finished_at": iso(job.finished_at),
        "manifest": job.manifest_path,
        "generations": [
            {
                "generation_id": g.generation_id,
                "state": generation_label(g),
                "output": g.output_path,
                "error": g.error,
                "hook_attempts": g.hook_attempts,
                "hook_error": g.hook_error,
            }
            for g in generations
        ],
    }


def status_line(job: JobRow, generations: Sequence[GenerationRow]) -> str:
    labels = ",".join(generation_label(g) for g in generations) or "-"
    line = f"{job.job_id}  {job.state.value:<15}  {job.stem}  [{labels}]"
    if job.error and job.state.value in ("failed", "needs_attention"):
        line += f"  {job.error}"
    return line


def service_status(
    *,
    stream_up: bool,
    waiting: int,
    downloading: int,
    hooking: int,
    failed: int,
    needs_attention: int,
) -> str:
    """The one line systemd shows as the service's STATUS."""
    parts = [
        "stream up" if stream_up else "stream down, polling",
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
    job: JobRow, generations: Sequence[GenerationRow], *, post_attempts: int, outcome: str
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
        "post_attempts": post_attempts,
        "download_attempts": sum(g.download_attempts for g in generations),
        "hook_attempts": sum(g.hook_attempts for g in generations),
        "error": job.error,
    }
