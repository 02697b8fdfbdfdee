"""`dropreel status`: fitted to the terminal without losing a reason, a summary line, and
every field for scripts."""

from __future__ import annotations

import json

import pytest

from dropreel.lifecycle import JobState, Phase, RemoteStatus
from dropreel.ops.board import ShownJob, Spend, counts, shown
from dropreel.ops.report import json_line
from dropreel.ops.standing import Standing
from dropreel.ops.status_view import Summary, status_record, status_table, summary_line

from .rows import generation_row, job_row

NOW = 1_000_000.0
REFUSED = "not valid JSON: Unterminated string starting at: line 1 column 12 (char 11)"
KEY = "key refused: POST /api/ai/queue -> HTTP 401: The API key is not valid or has expired"


def board() -> list[ShownJob]:
    rows = [
        (job_row(job_id="a0001", stem="broken", state=JobState.FAILED, error=REFUSED), []),
        (
            job_row(
                job_id="a0002",
                stem="a-rather-long-name-for-a-job-file",
                error=KEY,
                state=JobState.ACCEPTED,
            ),
            [],
        ),
        (
            job_row(job_id="a0003", stem="sunrise", state=JobState.COMPLETED),
            [generation_row(phase=Phase.DONE, output_path="/out/sunrise.mp4")],
        ),
    ]
    return shown(rows, ["a0001", "a0002", "a0003"])


SUMMARY = Summary({Standing.BLOCKED: 1}, Spend(0.0, 0, estimated=False), "not running")


@pytest.mark.parametrize("width", [None, 200, 100, 80, 60, 40, 30])
def test_every_reason_is_shown_whole_within_the_width(width: int | None) -> None:
    table = status_table(board(), SUMMARY, now=NOW, width=width)
    lines = table.splitlines()
    if width is not None:
        assert all(len(line) <= width for line in lines), table
    flowing = " ".join(table.split())
    for job in board():
        assert " ".join(job.standing.reason.split()) in flowing, table


def test_at_eighty_columns_the_name_is_cut_first_and_the_reason_wraps_in_its_column() -> None:
    table = status_table(board(), SUMMARY, now=NOW, width=80)
    assert table.splitlines() == [
        "ID    STATE      AGE  NAME          REASON",
        "0001  failed     11d  broken        not valid JSON: Unterminated string starting",
        "                                    at: line 1 column 12 (char 11)",
        "0002  blocked    11d  a-rather-lo…  oxen refuses the key, trying again: POST",
        "                                    /api/ai/queue -> HTTP 401: The API key is",
        "                                    not valid or has expired",
        "0003  delivered  11d  sunrise       1/1 delivered",
        "1 job: 1 blocked; spent today: $0.00; daemon not running",
    ]


def test_too_narrow_for_a_column_each_reason_gets_lines_of_its_own() -> None:
    lines = status_table(board(), SUMMARY, now=NOW, width=40).splitlines()
    assert lines[:8] == [
        "ID    STATE      AGE  NAME",
        "    REASON",
        "0001  failed     11d  broken",
        "    not valid JSON: Unterminated string",
        "    starting at: line 1 column 12 (char",
        "    11)",
        "0002  blocked    11d  a-rather-long-nam…",
        "    oxen refuses the key, trying again:",
    ]


def test_a_pipe_gets_whole_lines() -> None:
    lines = status_table(board(), SUMMARY, now=NOW).splitlines()
    assert lines[2].endswith("oxen refuses the key, trying again: " + KEY.split(": ", 1)[1])
    assert "a-rather-long-name-for-a-job-file" in lines[2]


def test_no_jobs() -> None:
    empty = Summary({}, Spend(0.0, 0, estimated=False), None)
    assert status_table([], empty, now=NOW) == ("no jobs to show\n0 jobs; spent today: $0.00")


@pytest.mark.parametrize(
    ("summary", "line"),
    [
        (
            Summary(counts(board()), Spend(2.4, 0, estimated=False), "running (pid 7)"),
            "3 jobs: 1 blocked, 1 failed, 1 delivered; spent today: $2.40; daemon running (pid 7)",
        ),
        (
            Summary({Standing.WAITING: 2}, Spend(1.2, 5, estimated=True), None),
            "2 jobs: 2 waiting; spent today: $1.20 (partly estimated), 5 generations of unknown "
            "cost",
        ),
        (
            Summary({Standing.DELIVERED: 1}, Spend(0.0, 1, estimated=False), None),
            "1 job: 1 delivered; spent today: unknown",
        ),
        (
            Summary({Standing.HELD: 1}, Spend(1.2, 0, estimated=True), None, daily_cap_usd=3.0),
            "1 job: 1 held; spent today: $1.20 (partly estimated) of the $3.00 daily cap",
        ),
    ],
)
def test_the_summary_counts_each_state_and_todays_spend(summary: Summary, line: str) -> None:
    assert summary_line(summary) == line


def test_json_gives_every_field_with_the_state_and_the_reason_in_words() -> None:
    job = job_row(job_id="a0003", state=JobState.COMPLETED, manifest_path="/out/cat.result.json")
    generation = generation_row(
        remote_status=RemoteStatus.SUCCEEDED,
        phase=Phase.DONE,
        output_path="/out/cat.mp4",
        cost_usd=1.2,
        hook_attempts=1,
    )
    [one] = shown([(job, [generation])], ["a0003"])
    record = json.loads(json_line(status_record(one)))
    assert {k: record[k] for k in ("job_id", "short_id", "state", "reason", "job_state")} == {
        "job_id": "a0003",
        "short_id": "0003",
        "state": "delivered",
        "reason": "1/1 delivered, $1.20",
        "job_state": "completed",
    }
    assert record["cost_usd"] == 1.2 and record["manifest"] == "/out/cat.result.json"
    [g] = record["generations"]
    assert g["output"] == "/out/cat.mp4" and g["hook_attempts"] == 1
    assert "result_url" not in g, "a presigned URL is a credential to the video"
