from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import structlog

import dropreel.stage as stage
from dropreel.config import Settings
from dropreel.lifecycle import JobState, Phase
from dropreel.state.store import Store
from dropreel_simulator.oxen import Simulator

from .daemon_harness import hook_argv, hook_lines, run_daemon, settings_for, until


def drop(root: Path, name: str, text: str) -> None:
    inbox = root / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / name).write_text(text, encoding="utf-8")


def outputs(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "outbox").iterdir())}


async def jobs_and_generations(root: Path) -> list[tuple[str, JobState, list[Phase]]]:
    async with Store.open(root / "state" / "dropreel.sqlite3", read_only=True) as store:
        return [
            (job.stem, job.state, [g.phase for g in await store.generations_of(job.job_id)])
            for job in await store.jobs()
        ]


async def test_the_happy_path_delivers_every_generation_once(
    tmp_path: Path, simulator: Simulator
) -> None:
    log = tmp_path / "hooks.log"
    settings = settings_for(tmp_path, simulator, hooks={"on_complete": hook_argv(log)})
    drop(tmp_path, "one.txt", "A cat on a skateboard")
    drop(tmp_path, "three.json", json.dumps({"prompt": "rain", "num_generations": 3}))
    drop(tmp_path, "toml.toml", 'prompt = "waves"\nseconds = "8"\n')
    await run_daemon(settings)

    files = outputs(tmp_path)
    assert sorted(files) == [
        "one.mp4",
        "one.result.json",
        "three-1.mp4",
        "three-2.mp4",
        "three-3.mp4",
        "three.result.json",
        "toml.mp4",
        "toml.result.json",
    ]
    manifest = json.loads(files["three.result.json"])
    assert manifest["request"] == {
        "prompt": "rain",
        "num_generations": 3,
        "model": "openai-sora-2-pro",
    }
    for entry in manifest["generations"]:
        served = simulator.content_for(entry["generation_id"], simulator.options.result_bytes)
        assert files[entry["file"]] == served
        assert entry["status"] == "succeeded"
    assert simulator.count("enqueue") == 3
    assert simulator.count("events") == 1
    assert simulator.polls_while_streaming() == 0
    runs = hook_lines(log)
    assert sorted(r["generation_id"] for r in runs) == sorted(simulator.generations)
    assert {r["status"] for r in runs} == {"succeeded"}
    assert all(Path(r["output"]).is_file() for r in runs)
    assert [s for _, s, _ in await jobs_and_generations(tmp_path)] == [JobState.COMPLETED] * 3


async def test_an_event_before_the_post_answer_is_not_lost(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.complete_before_answer = True
    settings = settings_for(tmp_path, simulator, poll={"interval_s": 60})
    drop(tmp_path, "early.txt", "fast")
    await run_daemon(settings)
    assert "early.mp4" in outputs(tmp_path)
    assert simulator.count("get") + simulator.count("list") == 0, "delivered from the event"


async def test_without_a_stream_it_polls_and_still_delivers(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.refuse_events_with = 503
    settings = settings_for(tmp_path, simulator)
    drop(tmp_path, "polled.txt", "no stream today")
    await run_daemon(settings)
    assert "polled.mp4" in outputs(tmp_path)
    assert simulator.count("get") + simulator.count("list") >= 1


async def test_events_missed_while_disconnected_are_caught_by_reconcile(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.complete_after_s = (0.6, 0.6)
    # Polling so slow it cannot be what finds the results: the reconnect's reconcile must.
    settings = settings_for(tmp_path, simulator, poll={"interval_s": 600})
    drop(tmp_path, "missed.txt", "while away")

    async def outage() -> None:
        await until(lambda: simulator.count("enqueue") == 1)
        simulator.options.refuse_events_with = 503
        simulator.call_soon(simulator.drop_streams)
        await until(lambda: all(g.status == "succeeded" for g in simulator.generations.values()))
        simulator.options.refuse_events_with = None

    async with anyio.create_task_group() as group:
        group.start_soon(outage)
        await run_daemon(settings)
    assert "missed.mp4" in outputs(tmp_path)
    assert len(simulator.events_sent) == 1
    assert simulator.count("events") >= 2
    assert simulator.count("list") >= 1


async def test_the_older_api_404_is_settled_from_the_generation_record(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.legacy_api = True
    simulator.options.refuse_events_with = 503
    settings = settings_for(tmp_path, simulator)
    drop(tmp_path, "legacy.txt", "old docs")
    await run_daemon(settings)
    assert "legacy.mp4" in outputs(tmp_path)
    assert simulator.count("record") >= 1


async def test_a_refused_job_ends_in_failed_with_the_servers_message(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, simulator)
    drop(tmp_path, "nope.json", json.dumps({"model": "bad-model-name", "prompt": "p"}))
    await run_daemon(settings)
    sidecar = json.loads((tmp_path / "failed" / "nope.json.error.json").read_text())
    assert "Model not found: bad-model-name" in sidecar["reason"]
    assert (tmp_path / "failed" / "nope.json").exists()
    assert simulator.count("enqueue") == 1
    assert [s for _, s, _ in await jobs_and_generations(tmp_path)] == [JobState.FAILED]


@pytest.mark.parametrize(
    "failures",
    [[(429, {"Retry-After": "0"})], [(503, {})], [(429, {}), (503, {})]],
)
async def test_throttling_and_server_errors_are_retried_to_one_creation(
    tmp_path: Path, simulator: Simulator, failures: list[tuple[int, dict[str, str]]]
) -> None:
    simulator.options.fail_next["enqueue"] = list(failures)
    settings = settings_for(tmp_path, simulator)
    drop(tmp_path, "busy.txt", "try again")
    await run_daemon(settings, timeout_s=60)
    assert "busy.mp4" in outputs(tmp_path)
    assert simulator.count("enqueue") == len(failures) + 1
    assert len(simulator.generations) == 1


async def test_a_restart_resumes_without_posting_again(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.complete_after_s = (1.0, 1.0)
    settings = settings_for(tmp_path, simulator)
    drop(tmp_path, "resume.json", json.dumps({"prompt": "p", "num_generations": 2}))
    stop = anyio.Event()

    async def stop_once_submitted() -> None:
        await until(lambda: len(simulator.generations) == 2)
        await anyio.sleep(0.1)
        stop.set()

    async with anyio.create_task_group() as group:
        group.start_soon(stop_once_submitted)
        await run_daemon(settings, until_idle=False, stop=stop)
    [(_, state, phases)] = await jobs_and_generations(tmp_path)
    assert state is JobState.SUBMITTED and phases == [Phase.WAITING, Phase.WAITING]

    await run_daemon(settings)
    assert simulator.count("enqueue") == 1
    assert sorted(outputs(tmp_path)) == ["resume-1.mp4", "resume-2.mp4", "resume.result.json"]


@pytest.mark.parametrize("generations", [1, 3])
async def test_a_failing_hook_is_retried_and_its_attempts_recorded_and_logged(
    tmp_path: Path, simulator: Simulator, generations: int
) -> None:
    marker = tmp_path / "failed-once"
    script = (
        "import os, sys; m = sys.argv[1]\n"
        "if not os.path.exists(m): open(m, 'w').close(); sys.exit(1)\n"
    )

    settings = settings_for(
        tmp_path, simulator, hooks={"on_complete": [sys.executable, "-c", script, str(marker)]}
    )
    drop(tmp_path, "hooked.json", json.dumps({"prompt": "p", "num_generations": generations}))
    with structlog.testing.capture_logs() as logs:
        await run_daemon(settings)
    async with Store.open(settings.database_path, read_only=True) as store:
        stored = await store.all_generations()
    assert all(g.phase is Phase.DONE and g.hook_error is None for g in stored)
    assert sorted(g.hook_attempts for g in stored) == [1] * (generations - 1) + [2]
    # The job's one line comes once its hooks are done, and counts every attempt.
    [ending] = [e for e in logs if e["event"] == "job finished"]
    assert ending["hook_attempts"] == generations + 1 and ending["generations"] == generations


async def test_failed_generations_reach_the_hook_and_the_manifest(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.failure_rate = 1.0
    log = tmp_path / "hooks.log"
    settings = settings_for(tmp_path, simulator, hooks={"on_complete": hook_argv(log)})
    drop(tmp_path, "doomed.txt", "p")
    await run_daemon(settings)
    [run] = hook_lines(log)
    assert run["status"] == "failed" and run["error"] == "simulated failure"
    assert run["output"] == ""
    manifest = json.loads((tmp_path / "outbox" / "doomed.result.json").read_text())
    assert manifest["generations"][0]["status"] == "failed"
    assert sorted(outputs(tmp_path)) == ["doomed.result.json"]


async def test_a_file_dropped_while_running_is_taken_by_the_watcher(
    tmp_path: Path, simulator: Simulator
) -> None:
    # The periodic rescan is pushed far out: only the change notification can find the file.
    settings = settings_for(tmp_path, simulator, inbox={"rescan_interval_s": 3600})
    stop = anyio.Event()

    async def drop_after_start() -> None:
        await until(lambda: simulator.streams_open == 1)
        await anyio.sleep(0.2)
        staging = tmp_path / "late.txt.tmp"
        staging.write_text("arrived late")
        staging.rename(tmp_path / "inbox" / "late.txt")
        await until(lambda: (tmp_path / "outbox" / "late.mp4").exists(), timeout_s=20)
        stop.set()

    (tmp_path / "inbox").mkdir()
    async with anyio.create_task_group() as group:
        group.start_soon(drop_after_start)
        await run_daemon(settings, until_idle=False, stop=stop)
    assert simulator.count("enqueue") == 1


async def stranded_post(settings: Settings, request: dict[str, object]) -> str:
    """The state a crash between a POST and its answer's commit leaves behind."""
    async with Store.open(settings.database_path) as store:
        await store.begin_claim(
            job_id="stranded",
            source_name="stranded.json",
            source_path="/gone",
            kept_path=str(settings.accepted_dir / "stranded-stranded.json"),
            stem="stranded",
            request=request,
        )
        await store.set_job_state("stranded", JobState.ACCEPTED)
        assert await store.claim_for_submission("stranded")
    settings.accepted_dir.mkdir(parents=True, exist_ok=True)
    (settings.accepted_dir / "stranded-stranded.json").write_text(json.dumps(request))
    return "stranded"


async def test_a_lost_post_answer_is_settled_from_the_listing_not_resent(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, simulator)
    request = {"prompt": "lost answer", "num_generations": 2, "model": "openai-sora-2-pro"}
    await stranded_post(settings, request)
    async with httpx.AsyncClient() as http:  # the POST that did reach the provider
        answer = await http.post(
            f"{simulator.base_url}/api/ai/queue",
            json=request,
            headers={"Authorization": "Bearer k"},
        )
        assert answer.status_code == 200
    await until(lambda: all(g.status == "succeeded" for g in simulator.generations.values()))
    await run_daemon(settings)
    assert simulator.count("enqueue") == 1, "never resent"
    assert sorted(outputs(tmp_path)) == ["stranded-1.mp4", "stranded-2.mp4", "stranded.result.json"]
    async with Store.open(settings.database_path, read_only=True) as store:
        story = [row["what"] for row in await store.history("stranded")]
    assert "adopted from the listing" in story


async def test_an_unsettled_post_is_parked_until_a_person_retries(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, simulator)
    await stranded_post(settings, {"prompt": "never arrived", "model": "openai-sora-2-pro"})
    await run_daemon(settings)
    [(_, state, _)] = await jobs_and_generations(tmp_path)
    assert state is JobState.NEEDS_ATTENTION
    assert simulator.count("enqueue") == 0

    retried = await anyio.run_process(
        [
            sys.executable,
            "-m",
            "dropreel",
            "retry",
            "stranded",
            "--config",
            str(settings.config_file),
        ],
        check=False,
    )
    assert retried.returncode == 0, retried.stderr.decode()
    assert (tmp_path / "inbox" / "stranded.json").exists()
    await run_daemon(settings)
    assert simulator.count("enqueue") == 1
    assert "stranded.mp4" in outputs(tmp_path)
    states = sorted(state.value for _, state, _ in await jobs_and_generations(tmp_path))
    assert states == ["completed", "failed"]


def test_retry_refuses_jobs_that_are_not_parked(tmp_path: Path, simulator: Simulator) -> None:
    settings = settings_for(tmp_path, simulator)
    request: dict[str, object] = {"prompt": "p", "model": "m"}
    anyio.run(stranded_post, settings, request)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dropreel",
            "retry",
            "stranded",
            "--config",
            str(settings.config_file),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "is submitting; only needs_attention and failed jobs can be retried" in result.stderr
    assert not (tmp_path / "inbox").exists()


async def test_a_claim_cut_short_by_a_crash_is_posted_exactly_once(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, simulator)
    kept = settings.accepted_dir / "halfway-halfway.json"
    async with Store.open(settings.database_path) as store:
        await store.begin_claim(
            job_id="halfway",
            source_name="halfway.json",
            source_path="/gone",
            kept_path=str(kept),
            stem="halfway",
            request={"prompt": "p", "model": "m"},
        )
    kept.parent.mkdir(parents=True)
    kept.write_text('{"prompt": "p"}')  # the move happened; recording it did not
    await run_daemon(settings)
    assert simulator.count("enqueue") == 1
    assert "halfway.mp4" in outputs(tmp_path)


class BreaksOnFirstDownload:
    """A provider whose first download fails in a way nothing in dropreel foresees."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.broken = 0

    def open_download(self, *args: Any, **kwargs: Any) -> Any:
        if not self.broken:
            self.broken += 1
            raise RuntimeError("a bug nobody foresaw")
        return self._inner.open_download(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_an_unforeseen_failure_on_one_item_is_retried_not_fatal(
    tmp_path: Path, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stage, "UNEXPECTED_FAILURE_RETRY_S", 0.1)
    settings = settings_for(tmp_path, simulator)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.txt").write_text("first")
    (tmp_path / "inbox" / "b.txt").write_text("second")
    wrappers: list[BreaksOnFirstDownload] = []

    def wrap(inner: Any) -> BreaksOnFirstDownload:
        wrappers.append(BreaksOnFirstDownload(inner))
        return wrappers[0]

    with structlog.testing.capture_logs() as logs:
        await run_daemon(settings, provider_wrapper=wrap)
    assert wrappers[0].broken == 1
    assert sorted(p.name for p in (tmp_path / "outbox").glob("*.result.json")) == [
        "a.result.json",
        "b.result.json",
    ]
    failures = [e for e in logs if e["event"].startswith("unexpected failure")]
    assert len(failures) == 1 and failures[0]["log_level"] == "error"
