"""Batch files: one job a line (JSONL) or a row (CSV), bad ones refused alone, crash-safe."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dropreel.cli import admin
from dropreel.errors import CommandError, JobFileRejected
from dropreel.intake.batches import batch_of, parse_batch, row_stem
from dropreel.intake.jobs import Routes
from dropreel.lifecycle import JobState
from dropreel.state.records import Claim
from dropreel.state.store import Store
from dropreel_simulator.oxen import Simulator, SimulatorOptions, running_simulator
from tests.daemon_harness import (
    db_rows,
    drop_job,
    hook_argv,
    hook_lines,
    run_daemon,
    settings_for,
    sidecar,
    write_config,
)
from tests.test_e2e import dropreel, start_daemon, wait_for

ROUTES = Routes({"oxen": "openai-sora-2-pro", "lumenfall": "sora-2-pro"}, "oxen")
MODEL = "openai-sora-2-pro"


def rows_of(name: str, text: str) -> list[tuple[int, dict[str, Any] | str]]:
    return [
        (r.number, dict(r.request.body) if r.request else r.problem or "")
        for r in parse_batch(name, text.encode(), ROUTES)
    ]


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        (
            '{"prompt": "a"}\n\n{"prompt": "b", "seconds": "8"}\n',
            [
                (1, {"prompt": "a", "model": MODEL}),
                (3, {"prompt": "b", "seconds": "8", "model": MODEL}),
            ],
        ),
        (
            '{"prompt": "a"\n[1]\n{"prompt": ""}\n{"prompt": "p", "num_generations": 9}\n',
            [
                (1, "line 1: not valid JSON: Expecting ',' delimiter: line 1 column 15 (char 14)"),
                (2, "line 2: expected an object, found list"),
                (3, "line 3: prompt must be a non-empty string"),
                (4, "line 4: num_generations must be a whole number 1-4, got 9"),
            ],
        ),
        (
            '{"prompt": "a", "dropreel": {"provider": "lumenfall"}}\n'
            '{"prompt": "b", "dropreel": {"image": "x.png"}}\n'
            '{"prompt": "c", "dropreel": {"provider": "zz"}}\n',
            [
                (1, {"prompt": "a", "model": "sora-2-pro"}),
                (2, "line 2: images are for job files, not batch rows"),
                (
                    3,
                    "line 3: dropreel.provider 'zz' is not a configured provider (lumenfall, oxen)",
                ),
            ],
        ),
    ],
    ids=["good-lines-and-a-blank", "bad-lines", "options"],
)
def test_jsonl_lines(text: str, rows: list[tuple[int, Any]]) -> None:
    assert rows_of("shots.jsonl", text) == rows


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        (
            'prompt,seconds,num_generations\na cat,8,2\n"a dog, running",,\n',
            [
                (1, {"prompt": "a cat", "seconds": "8", "num_generations": 2, "model": MODEL}),
                (2, {"prompt": "a dog, running", "model": MODEL}),
            ],
        ),
        (
            "prompt,dropreel.provider\na,lumenfall\n,\nb,\n",
            [
                (1, {"prompt": "a", "model": "sora-2-pro"}),
                (2, {"prompt": "b", "model": MODEL}),
            ],
        ),
        (
            "prompt,num_generations,dropreel.colour\na,two,\nb,1,x,extra\nc,,red\n",
            [
                (1, "row 1: num_generations must be a whole number 1-4, got 'two'"),
                (2, "row 2: 4 cells, but the header names 3 columns"),
                (3, "row 3: dropreel: unknown option 'colour' (known: image, provider)"),
            ],
        ),
    ],
    ids=["cells-are-text-but-the-count", "options-and-blank-rows", "bad-rows"],
)
def test_csv_rows(text: str, rows: list[tuple[int, Any]]) -> None:
    assert rows_of("shots.csv", text) == rows


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("a.csv", "seconds\n8\n", "the header row has no `prompt` column"),
        ("a.csv", "prompt,prompt\na,b\n", "names a column twice"),
        ("a.csv", "prompt\n", "no rows"),
        ("a.jsonl", "\n\n", "no rows"),
        ("a.jsonl", '{"prompt": "p"}\n' * 10_001, "10001 rows; a batch may hold 10000"),
        ("a.jsonl", "\xff", "not UTF-8"),
    ],
)
def test_a_batch_that_cannot_be_read_is_refused_whole(name: str, text: str, reason: str) -> None:
    data = text.encode("latin-1") if text == "\xff" else text.encode()
    with pytest.raises(JobFileRejected) as refused:
        parse_batch(name, data, ROUTES)
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("number", "last", "stem"), [(1, 9, "s-1"), (7, 12, "s-07"), (42, 1000, "s-0042")]
)
def test_row_stems_are_zero_padded(number: int, last: int, stem: str) -> None:
    assert row_stem("s", number, last) == stem


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("shots.csv:7", ("shots.csv", 7)),
        ("p/a.JSONL:12", ("p/a.JSONL", 12)),
        ("a.txt", None),
        ("a.csv", None),
        ("a:7.txt", None),
        ("x.json:3", None),
    ],
)
def test_a_rows_source_names_its_batch(source: str, found: tuple[str, int] | None) -> None:
    assert batch_of(source) == found


async def test_a_jsonl_with_two_bad_lines_makes_one_job_per_good_line(
    tmp_path: Path, simulator: Simulator
) -> None:
    log = tmp_path / "hooks.log"
    settings = settings_for(tmp_path, simulator, hooks={"on_complete": hook_argv(log)})
    lines = [json.dumps({"prompt": f"shot {n}", "seconds": "4"}) for n in range(1, 11)]
    lines[3] = '{"prompt": "shot 4", '  # cut short
    lines[6] = json.dumps({"prompt": "shot 7", "num_generation": 2})  # a typo
    drop_job(tmp_path / "inbox", "shots.jsonl", "\n".join(lines) + "\n")

    await run_daemon(settings)

    posted = sorted(body["prompt"] for body, _ in simulator.enqueued)
    assert posted == sorted(f"shot {n}" for n in range(1, 11) if n not in (4, 7))
    outbox = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    good = [f"shots-{n:02}" for n in range(1, 11) if n not in (4, 7)]
    assert outbox == sorted([f"{s}.mp4" for s in good] + [f"{s}.result.json" for s in good])
    manifest = json.loads((tmp_path / "outbox" / "shots-10.result.json").read_text())
    assert manifest["source_file"] == "shots.jsonl:10"
    assert manifest["request"]["prompt"] == "shot 10"
    assert len(hook_lines(log)) == 8
    failed = sorted(p.name for p in (tmp_path / "failed").iterdir())
    assert failed == [
        "shots-04.jsonl",
        "shots-04.jsonl.error.json",
        "shots-07.jsonl",
        "shots-07.jsonl.error.json",
    ]
    assert (tmp_path / "failed" / "shots-04.jsonl").read_text() == lines[3]
    assert sidecar(tmp_path, "shots-04.jsonl").startswith("line 4: not valid JSON")
    assert "line 7: " in sidecar(tmp_path, "shots-07.jsonl")
    assert "did you mean `num_generations`?" in sidecar(tmp_path, "shots-07.jsonl")
    (kept,) = settings.accepted_dir.iterdir()
    assert kept.name.endswith("-shots.jsonl") and kept.read_text().count("\n") == 10
    assert not list((tmp_path / "inbox").iterdir())
    states = Counter(r["state"] for r in db_rows(settings.database_path, "SELECT state FROM jobs"))
    assert states == {JobState.COMPLETED: 8, JobState.FAILED: 2}


async def test_a_thousand_row_csv_makes_a_thousand_jobs(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.result_bytes = 1024
    settings = settings_for(
        tmp_path, simulator, submit={"concurrency": 16}, oxen={"max_requests_per_s": 1000}
    )
    rows = "".join(f'"take {n}, in the rain",8,portrait\n' for n in range(1, 1001))
    drop_job(tmp_path / "inbox", "takes.csv", "prompt,seconds,aspect_ratio\n" + rows)

    await run_daemon(settings, timeout_s=240)

    posted = Counter(body["prompt"] for body, _ in simulator.enqueued)
    assert posted == Counter(f"take {n}, in the rain" for n in range(1, 1001))
    assert {body["seconds"] for body, _ in simulator.enqueued} == {"8"}
    manifests = sorted((tmp_path / "outbox").glob("*.result.json"))
    assert [m.name for m in manifests[:2]] == ["takes-0001.result.json", "takes-0002.result.json"]
    assert len(manifests) == 1000
    assert len(list(settings.accepted_dir.iterdir())) == 1


@pytest.mark.e2e
def test_a_kill_mid_batch_neither_loses_nor_doubles_a_row(tmp_path: Path) -> None:
    options = SimulatorOptions(complete_after_s=(0.05, 0.2), result_bytes=1024, keepalive_s=1.0)
    with running_simulator(Simulator(options)) as simulator:
        config = write_config(
            tmp_path, simulator, submit={"concurrency": 2}, oxen={"max_requests_per_s": 40}
        )
        rows = "".join(f"row {n}\n" for n in range(1, 301))
        drop_job(tmp_path / "inbox", "many.csv", "prompt\n" + rows)
        database = tmp_path / "state" / "dropreel.sqlite3"
        with (tmp_path / "run-1.log").open("w") as output:
            first = start_daemon(config, output)
            try:
                wait_for(lambda: len(simulator.enqueued) >= 20, 60, "the batch's first POSTs")
            finally:
                first.send_signal(signal.SIGKILL)
                first.wait(10)
        assert len(simulator.enqueued) < 300, "killed mid-batch"
        with (tmp_path / "run-2.log").open("w") as output:
            second = start_daemon(config, output)
            try:
                wait_for(lambda: settled(database) >= 300, 90, "every row finished or parked")
            finally:
                second.send_signal(signal.SIGTERM)
                assert second.wait(30) == 0
        states = rows_by_state(database)
        posted = Counter(body["prompt"] for body, _ in simulator.enqueued)
        assert max(posted.values()) == 1, "no row POSTed twice"
        assert set(posted) <= {f"row {n}" for n in range(1, 301)}
        # A row killed with its POST in flight is adopted from the listing, or parked for a
        # person if it cannot be told apart: never lost, never sent again.
        assert set(states) <= {"completed", "needs_attention"}, states
        assert {f"row {n}" for n in states["completed"]} <= set(posted)
        assert len(states["completed"]) + len(states.get("needs_attention", [])) == 300
        assert len(list((tmp_path / "outbox").glob("many-*.result.json"))) == len(
            states["completed"]
        )
        assert len(list((tmp_path / "state" / "accepted").iterdir())) == 1
        assert "Traceback" not in (tmp_path / "run-2.log").read_text()


def rows_by_state(database: Path) -> dict[str, list[int]]:
    """Each job state, with the batch rows in it."""
    found: dict[str, list[int]] = {}
    for row in db_rows(database, "SELECT state, source_name FROM jobs"):
        found.setdefault(row["state"], []).append(int(row["source_name"].rsplit(":", 1)[1]))
    return found


def settled(database: Path) -> int:
    if not database.exists():
        return 0
    states = rows_by_state(database)
    return len(states.get("completed", [])) + len(states.get("needs_attention", []))


async def test_a_batch_claim_cut_short_by_a_crash_is_finished_once_at_the_next_start(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, simulator)
    batch = drop_job(tmp_path / "inbox", "cut.jsonl", '{"prompt": "a"}\n{"prompt": "b"}\n')
    kept = settings.accepted_dir / "00000000000000-cut.jsonl"
    # What a crash after the rows were recorded, before the file left the inbox, leaves.
    async with Store.open(settings.database_path) as store:
        await store.begin_batch_claim(
            [
                Claim(
                    f"0000000000000{n}",
                    f"cut.jsonl:{n}",
                    str(batch),
                    str(kept),
                    f"cut-{n}",
                    {"prompt": prompt, "model": MODEL},
                )
                for n, prompt in ((1, "a"), (2, "b"))
            ]
        )
    await run_daemon(settings)
    assert sorted(body["prompt"] for body, _ in simulator.enqueued) == ["a", "b"]
    assert not batch.exists() and kept.exists()
    assert list(settings.accepted_dir.iterdir()) == [kept]
    assert sorted(p.name for p in (tmp_path / "outbox").glob("*.mp4")) == ["cut-1.mp4", "cut-2.mp4"]


async def test_a_row_the_provider_refuses_is_kept_alone_and_the_batch_stays(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, simulator)
    drop_job(
        tmp_path / "inbox",
        "mixed.jsonl",
        '{"prompt": "a"}\n{"prompt": "b", "model": "bad-model"}\n{"prompt": "c"}\n',
    )
    await run_daemon(settings)
    assert sorted(p.name for p in (tmp_path / "outbox").glob("*.mp4")) == [
        "mixed-1.mp4",
        "mixed-3.mp4",
    ]
    (kept,) = settings.accepted_dir.iterdir()
    assert kept.name.endswith("-mixed.jsonl")
    row = json.loads((tmp_path / "failed" / "mixed-2.json").read_text())
    assert row == {"prompt": "b", "model": "bad-model", "dropreel": {"provider": "oxen"}}
    assert "Model not found: bad-model" in sidecar(tmp_path, "mixed-2.json")
    async with Store.open(settings.database_path) as store:
        jobs = {j.source_name: j for j in await store.jobs()}
    placed = await admin.retry(settings, jobs["mixed.jsonl:2"].job_id)
    assert placed == str(tmp_path / "inbox" / "mixed-2.json"), "the row alone goes back"
    # A row parked (its POST's answer lost) is kept only in its batch: not retried alone.
    async with Store.open(settings.database_path) as store:
        await store.set_job_state(jobs["mixed.jsonl:1"].job_id, JobState.NEEDS_ATTENTION)
    with pytest.raises(CommandError, match="a row of a batch"):
        await admin.retry(settings, jobs["mixed.jsonl:1"].job_id)


@pytest.mark.e2e
def test_check_names_a_batchs_bad_lines(tmp_path: Path, simulator: Simulator) -> None:
    config = write_config(tmp_path, simulator)
    batch = tmp_path / "shots.jsonl"
    batch.write_text('{"prompt": "a"}\n{"prompt": "b", "seconds": 5}\nnot json\n')
    checked = dropreel("check", "--config", str(config), str(batch))
    assert checked.returncode == 1
    assert checked.stdout.splitlines() == [
        f"{batch} line 1: ok",
        f'{batch} line 2: seconds must be a string, not 5 (allowed: "4", "8", "12")',
        f"{batch}: line 3: not valid JSON: Expecting value: line 1 column 1 (char 0)",
    ]
