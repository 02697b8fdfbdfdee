"""Store rows for tests that need one without a database."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dropreel.lifecycle import JobState, Phase, RemoteStatus
from dropreel.state.records import GenerationRow, JobRow

_JOB = JobRow(
    job_id="j1",
    source_name="cat.json",
    source_path="/in/cat.json",
    kept_path="/kept",
    stem="cat",
    request={"model": "m", "prompt": "p"},
    state=JobState.SUBMITTED,
    error=None,
    created_at=1.0,
    updated_at=1.0,
    post_started_at=1.5,
    post_attempts=1,
    submitted_at=2.0,
    finished_at=None,
    manifest_path=None,
)

_GENERATION = GenerationRow(
    generation_id="g1",
    job_id="j1",
    idx=1,
    remote_status=RemoteStatus.SUCCEEDED,
    phase=Phase.DOWNLOADING,
    result_url="https://cdn.test/r/abc.mp4",
    error=None,
    output_path=None,
    enqueued_at=2.0,
    completed_at=3.0,
    delivered_at=None,
    download_attempts=0,
    hook_attempts=0,
    hook_error=None,
    hooked_at=None,
)


def job_row(**changes: Any) -> JobRow:
    return replace(_JOB, **changes)


def generation_row(**changes: Any) -> GenerationRow:
    return replace(_GENERATION, **changes)
