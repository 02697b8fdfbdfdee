"""What `dropreel watch` shows, from rows: progress bars where the provider reports progress,
elapsed time against the model's typical duration where it does not, each provider's stream,
the last events."""

from __future__ import annotations

from datetime import datetime

import pytest

from dropreel.lifecycle import JobState, Phase, RemoteStatus
from dropreel.ops.board import shown
from dropreel.ops.live import LiveFacts, ProviderFacts
from dropreel.ops.standing import Standing
from dropreel.ops.watch_view import (
    bar,
    duration,
    plain_screen,
    screen,
    stream_text,
    streams,
    timing_of,
    typical_durations,
    watch_rows,
    watched_ids,
)
from dropreel.state.records import GenerationRow

from .rows import generation_row, job_row

# 14:00:00 local time, wherever the test runs: times of day read back the same.
NOW = datetime(2026, 5, 1, 14, 0, 0).timestamp()


def waiting(**changes: object) -> GenerationRow:
    fields: dict[str, object] = {
        "phase": Phase.WAITING,
        "remote_status": RemoteStatus.QUEUED,
        "result_url": None,
        "completed_at": None,
        "enqueued_at": NOW - 130,
    }
    return generation_row(**(fields | changes))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (44.6, "45s"), (59.4, "59s"), (60, "1m00s"), (245, "4m05s"), (3720, "1h02m")],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("percent", "text"),
    [
        (0, "[....................]   0%"),
        (35, "[#######.............]  35%"),
        (100, "[####################] 100%"),
    ],
)
def test_bar(percent: int, text: str) -> None:
    assert bar(percent) == text


def test_the_typical_duration_is_the_median_of_a_models_latest() -> None:
    newest_first = [
        ("oxen", "sora", 300.0),
        ("oxen", "veo", 60.0),
        ("oxen", "sora", 200.0),
        ("lumenfall", "sora", 90.0),
        ("oxen", "sora", 250.0),
        ("oxen", "sora", 9999.0),  # older than the latest three: left out
    ]
    assert typical_durations(newest_first, of_latest=3) == {
        ("oxen", "sora"): 250.0,
        ("oxen", "veo"): 60.0,
        ("lumenfall", "sora"): 90.0,
    }


TYPICAL = {("oxen", "m"): 240.0}


@pytest.mark.parametrize(
    ("provider", "generations", "text"),
    [
        # Waiting: how long, against the model's usual time at that provider.
        ("oxen", [waiting()], "2m10s of ~4m00s"),
        ("lumenfall", [waiting()], "2m10s, typical unknown"),
        # The longest-waiting generation counts.
        ("oxen", [waiting(enqueued_at=NOW - 10), waiting(enqueued_at=NOW - 70)], "1m10s of ~4m00s"),
        # Finished: how long it took, first enqueue to last completion.
        (
            "oxen",
            [
                generation_row(phase=Phase.DONE, enqueued_at=NOW - 500, completed_at=NOW - 400),
                generation_row(phase=Phase.DONE, enqueued_at=NOW - 500, completed_at=NOW - 300),
            ],
            "took 3m20s",
        ),
        # Not sent yet: its reason says why; no time to tell.
        ("oxen", [], ""),
    ],
)
def test_timing(provider: str, generations: list[GenerationRow], text: str) -> None:
    job = job_row(provider=provider)
    assert timing_of(job, generations, TYPICAL, now=NOW) == text


def test_rows_show_progress_where_reported_and_put_finished_jobs_last() -> None:
    jobs = shown(
        [
            (
                job_row(job_id="a1111", stem="done", state=JobState.COMPLETED, finished_at=NOW),
                [generation_row(phase=Phase.DONE, output_path="/out/done.mp4")],
            ),
            (
                job_row(job_id="a2222", stem="pct", provider="lumenfall", generation_count=2),
                [
                    waiting(generation_id="v1", remote_status=RemoteStatus.PROCESSING, progress=60),
                    waiting(generation_id="v2", remote_status=RemoteStatus.PROCESSING, progress=35),
                ],
            ),
            (job_row(job_id="a3333", stem="oxen-job"), [waiting(generation_id="o1")]),
        ],
        ["a1111", "a2222", "a3333"],
    )
    rows = watch_rows(jobs, TYPICAL, now=NOW)
    assert [(r.name, r.state, r.percent, r.timing) for r in rows] == [
        ("pct", Standing.WAITING, 35, "2m10s, typical unknown"),
        ("oxen-job", Standing.WAITING, None, "2m10s of ~4m00s"),
        ("done", Standing.DELIVERED, None, "took 1s"),
    ]
    assert watched_ids(rows) == ["v1", "v2", "o1"]
    assert watched_ids(rows[2:]) == []

    live = LiveFacts(
        pid=12,
        written_at=NOW - 1,
        heartbeat_s=2.0,
        providers={
            "oxen": ProviderFacts(streams=True, up=True, since=NOW - 171, poll_interval_s=5.0),
            "lumenfall": ProviderFacts(
                streams=False, up=False, since=NOW - 600, poll_interval_s=60.0
            ),
        },
    )
    history = [(NOW - 5, "pct", "submitted", "video_1"), (NOW - 9, "oxen-job", "accepted", None)]
    view = screen(rows, live, "running (pid 12)", history, now=NOW)
    assert plain_screen(view, width=100).splitlines() == [
        "dropreel watch  14:00:00  daemon running (pid 12)",
        "streams",
        "  oxen       stream up since 13:57:09 (2m51s)",
        "  lumenfall  no stream: polling every 60s since 13:50:00 (10m00s)",
        "jobs",
        "  ID    STATE      PROGRESS                     NAME      REASON",
        "  2222  waiting    [#######.............]  35%  pct       2 running (35%) at lumenfall",
        "  3333  waiting    2m10s of ~4m00s              oxen-job  queued at oxen",
        "  1111  delivered  took 1s                      done      1/1 delivered",
        "last events",
        "  13:59:55  pct       submitted: video_1",
        "  13:59:51  oxen-job  accepted",
        "3 jobs on watch: 2 waiting, 1 delivered",
    ]


@pytest.mark.parametrize(
    ("facts", "text"),
    [
        (
            ProviderFacts(streams=True, up=True, since=NOW - 65, poll_interval_s=5.0),
            "stream up since 13:58:55 (1m05s)",
        ),
        (
            ProviderFacts(streams=True, up=False, since=NOW - 7, poll_interval_s=5.0),
            "stream down since 13:59:53 (7s); polling every 5s",
        ),
        (
            ProviderFacts(streams=False, up=False, since=NOW - 7, poll_interval_s=0.5),
            "no stream: polling every 0.5s since 13:59:53 (7s)",
        ),
    ],
)
def test_stream_text(facts: ProviderFacts, text: str) -> None:
    assert stream_text(facts, NOW) == text


def test_streams_say_when_they_cannot_be_told() -> None:
    facts = {"oxen": ProviderFacts(streams=True, up=True, since=NOW - 60, poll_interval_s=5.0)}
    old = LiveFacts(pid=1, written_at=NOW - 120, heartbeat_s=2.0, providers=facts)
    assert streams(old, "not running", now=NOW) == [("", "the daemon is not running")]
    assert streams(None, "running (pid 1)", now=NOW) == [
        ("", "the daemon has published no live facts yet")
    ]
    assert streams(old, "running (pid 1)", now=NOW) == [
        ("oxen", "stream up since 13:59:00 (1m00s)"),
        ("", "as the daemon last said at 13:58:00, 2m00s ago: is it stuck?"),
    ]


def test_a_screen_without_live_facts_says_why() -> None:
    lines = plain_screen(screen([], None, "not running", [], now=NOW)).splitlines()
    assert lines == [
        "dropreel watch  14:00:00  daemon not running",
        "streams",
        "  the daemon is not running",
        "jobs",
        "  nothing to show",
        "last events",
        "  none yet",
        "0 jobs on watch",
    ]
