"""What `status` and `show` print: names and provider text never act on the terminal."""

from __future__ import annotations

import json

from dropreel.lifecycle import JobState, Phase, RemoteStatus
from dropreel.ops.board import Spend, shown
from dropreel.ops.report import job_story, json_line, terminal_safe
from dropreel.ops.status_view import Summary, status_table

from .rows import generation_row, job_row

SUMMARY = Summary({}, Spend(0.0, 0, estimated=False), None)
HOSTILE = "clip\x1b]0;owned\x07\x1b[2J\r\nline\u202etxt.exe\x9b31m"


def test_escapes_newlines_and_bidi_overrides_are_shown_not_obeyed() -> None:
    assert terminal_safe(HOSTILE) == (
        "clip\\x1b]0;owned\\x07\\x1b[2J\\r\\nline\\u202etxt.exe\\x9b31m"
    )
    assert terminal_safe("café 🎬 ok") == "café 🎬 ok"


def test_status_and_show_print_no_raw_control_character() -> None:
    job = job_row(stem=HOSTILE, source_name=HOSTILE, state=JobState.FAILED, error=HOSTILE)
    generation = generation_row(
        remote_status=RemoteStatus.FAILED, phase=Phase.DONE, error=HOSTILE, hook_error=HOSTILE
    )
    table = status_table(shown([(job, [generation])], ["j1"]), SUMMARY, now=10.0)
    story = job_story(job, [generation], [(5.0, "g1", "failed", HOSTILE)])
    for printed in (table, story):
        for line in printed.splitlines():
            assert terminal_safe(line) == line
    assert len(table.splitlines()) == 3, "one row per job, whatever the name holds"


def test_json_lines_stay_json_and_carry_the_exact_text() -> None:
    record = {"name": HOSTILE, "plain": "café"}
    line = json_line(record)
    assert terminal_safe(line) == line
    assert "café" in line
    assert json.loads(line) == record


def test_show_lists_every_hook_run_of_each_generation() -> None:
    first = generation_row(generation_id="g1", phase=Phase.DONE, hook_attempts=2)
    second = generation_row(generation_id="g2", idx=2, phase=Phase.DONE, output_path="/o/2.mp4")
    history = [
        (100.0, "g1", "delivered", "/out/cat-1.mp4"),
        (101.0, "g1", "hook failed", "exit status 1 after 0.21s: no route to host"),
        (103.0, "g1", "hook ok", "exit 0 after 0.05s"),
        (104.0, "g2", "hook gave up", "timed out after 60s"),
    ]
    story = job_story(job_row(), [first, second], history).splitlines()
    runs = [line.strip() for line in story if line.startswith("    ")]
    assert runs == [
        "1970-01-01T00:01:41.000+00:00  failed: exit status 1 after 0.21s: no route to host",
        "1970-01-01T00:01:43.000+00:00  ok: exit 0 after 0.05s",
        "1970-01-01T00:01:44.000+00:00  gave up: timed out after 60s",
    ]
    assert story.index("generation 2: g2  succeeded") < story.index("    " + runs[-1])
