"""The daemon as a real subprocess, fed real files, stopped with real signals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import IO, Any

import pytest

from dropreel_simulator.oxen import Simulator, SimulatorOptions, running_simulator

from .daemon_harness import KEY, drop_job, hook_argv, hook_lines, write_config

pytestmark = pytest.mark.e2e


def daemon_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DROPREEL_", "OXEN_"))}
    env.update({"OXEN_API_KEY": KEY.get_secret_value(), "PYTHONUNBUFFERED": "1", **extra})
    return env


def dropreel(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dropreel", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or daemon_env(),
        check=False,
    )


def start_daemon(
    config: Path, output: IO[Any] | int, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`dropreel run` as a real subprocess, its output (stdout and stderr) to `output`."""
    return subprocess.Popen(
        [sys.executable, "-m", "dropreel", "run", "--config", str(config)],
        stdout=output,
        stderr=subprocess.STDOUT,
        env=env or daemon_env(),
        text=True,
    )


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def job_states(database: Path) -> list[str]:
    if not database.exists():
        return []
    # Closed at once: an open reader would keep the daemon from removing its -wal on exit.
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return [row[0] for row in db.execute("SELECT state FROM jobs")]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    options = SimulatorOptions(
        complete_after_s=(0.1, 0.8), result_bytes=48 * 1024, keepalive_s=1.0, seed=5
    )
    with running_simulator(Simulator(options)) as simulator:
        yield simulator


def twenty_job_files(inbox: Path) -> dict[str, str]:
    """19 valid jobs in three formats (one asking for three generations) and one broken."""
    files: dict[str, str] = {}
    for n in range(7):
        files[f"prompt-{n:02}.txt"] = f"A short clip number {n}"
    for n in range(6):
        files[f"request-{n:02}.json"] = json.dumps({"prompt": f"json {n}", "seconds": "4"})
    for n in range(5):
        files[f"table-{n:02}.toml"] = f'prompt = "toml {n}"\naspect_ratio = "portrait"\n'
    files["triple.json"] = json.dumps({"prompt": "three takes", "num_generations": 3})
    files["malformed.json"] = '{"prompt": "never closed'
    # Written elsewhere and renamed in, as writers should: all twenty appear at once.
    staging = inbox.parent / "staging"
    staging.mkdir()
    for name, text in files.items():
        (staging / name).write_text(text, encoding="utf-8")
    for name in files:
        (staging / name).rename(inbox / name)
    return files


def test_twenty_files_at_once_through_the_real_daemon(tmp_path: Path, sim: Simulator) -> None:
    log = tmp_path / "hooks.log"
    config = write_config(tmp_path, sim, hooks={"on_complete": hook_argv(log)})
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    daemon_log = (tmp_path / "daemon.log").open("w")
    process = start_daemon(config, daemon_log)
    try:
        wait_for(lambda: sim.streams_open == 1, 30, "the daemon's event stream")
        files = twenty_job_files(inbox)
        database = tmp_path / "state" / "dropreel.sqlite3"
        wait_for(
            lambda: (
                sorted(job_states(database)) == ["completed"] * 19 + ["failed"]
                and len(hook_lines(log)) == 21
            ),
            60,
            "every job to finish",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        daemon_log.close()

    outbox = tmp_path / "outbox"
    manifests = sorted(outbox.glob("*.result.json"))
    assert len(manifests) == 19
    served_files: list[str] = []
    for manifest_path in manifests:
        manifest = json.loads(manifest_path.read_text())
        assert manifest_path.name == f"{Path(manifest['source_file']).stem}.result.json"
        for entry in manifest["generations"]:
            assert entry["status"] == "succeeded"
            content = (outbox / entry["file"]).read_bytes()
            assert content == sim.content_for(entry["generation_id"], sim.options.result_bytes)
            served_files.append(entry["file"])
    assert len(served_files) == 21 == len(set(served_files))
    assert sorted(f"{name}" for name in ("triple-1.mp4", "triple-2.mp4", "triple-3.mp4")) == sorted(
        f for f in served_files if f.startswith("triple")
    )
    assert sorted(p.name for p in outbox.iterdir()) == sorted(
        [m.name for m in manifests] + served_files
    ), "nothing else in the outbox: no temp files, no duplicates"

    runs = hook_lines(log)
    assert sorted(r["generation_id"] for r in runs) == sorted(sim.generations)
    assert all(r["status"] == "succeeded" and Path(r["output"]).is_file() for r in runs)

    reason = json.loads((tmp_path / "failed" / "malformed.json.error.json").read_text())["reason"]
    assert "not valid JSON" in reason
    assert (tmp_path / "failed" / "malformed.json").read_text() == files["malformed.json"]
    assert len(list((tmp_path / "state" / "accepted").iterdir())) == 19
    assert list(inbox.iterdir()) == []

    assert sim.count("enqueue") == 19
    assert sim.count("events") == 1
    assert sim.polls_while_streaming() == 0
    assert sim.count("get") + sim.count("list") + sim.count("record") == 0

    lines = (tmp_path / "daemon.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records[-1]["event"] == "stopped" and records[-1]["posts"] == 19
    finished = [r for r in records if r["event"] == "generation finished"]
    assert len(finished) == 21 and all(r["job_id"] and r["generation_id"] for r in finished)
    endings = [r for r in records if r["event"] == "job finished"]
    assert len(endings) == 19, "one canonical line per job"
    assert {r["file"] for r in endings} == set(files) - {"malformed.json"}
    for ending in endings:
        assert ending["outcome"] == "completed" and ending["post_attempts"] == 1
        assert ending["succeeded"] == ending["generations"] and ending["duration_s"] > 0
        assert ending["hook_attempts"] == ending["generations"], "the line waits for the hooks"


def test_the_api_key_appears_nowhere_the_daemon_writes(tmp_path: Path, sim: Simulator) -> None:
    log = tmp_path / "hooks.env"
    dump_env = "import os, sys; open(sys.argv[1], 'a').write(repr(dict(os.environ)))"
    config = write_config(
        tmp_path,
        sim,
        hooks={"on_complete": [sys.executable, "-c", dump_env, str(log)]},
        log={"level": "debug"},
    )
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.txt").write_text("p")
    (tmp_path / "inbox" / "bad.json").write_text(json.dumps({"model": "bad-x", "prompt": "p"}))
    result = dropreel("run", "--until-idle", "--config", str(config))
    assert result.returncode == 0, result.stderr
    status = dropreel("status", "--json", "--config", str(config))
    secret = KEY.get_secret_value()
    assert log.exists()
    written = [result.stdout, result.stderr, status.stdout, status.stderr]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            written.append(path.read_bytes().decode("utf-8", "replace"))
    assert written and not any(secret in text for text in written)


def test_sigint_also_stops_cleanly(tmp_path: Path, sim: Simulator) -> None:
    config = write_config(tmp_path, sim)
    process = start_daemon(config, subprocess.PIPE)
    try:
        wait_for(lambda: sim.streams_open == 1, 30, "the daemon's event stream")
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert json.loads(output.splitlines()[-1])["event"] == "stopped"


@pytest.mark.parametrize(
    ("config_text", "env_change", "expected"),
    [
        ("", {"OXEN_API_KEY": ""}, "oxen.api_key_env: environment variable OXEN_API_KEY"),
        ("[oxen]\napi_key_file = 'missing.key'\n", {}, "oxen.api_key_file: cannot read"),
        (
            "[poll]\ninterval_s = 0\n",
            {},
            "poll.interval_s: 0 is not allowed: Input should be greater than 0",
        ),
        ("[paths]\ninbox = '/proc/version'\n", {}, "paths.inbox"),
    ],
)
def test_bad_config_stops_start_up_with_one_line(
    tmp_path: Path, config_text: str, env_change: dict[str, str], expected: str
) -> None:
    config = tmp_path / "dropreel.toml"
    config.write_text(config_text)
    result = dropreel("run", "--config", str(config), env=daemon_env(**env_change))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and expected in result.stderr
    assert not (tmp_path / "state").exists() or "paths" in expected


def test_submit_copies_atomically_and_status_reports(tmp_path: Path, sim: Simulator) -> None:
    config = write_config(tmp_path, sim)
    source = tmp_path / "mine.txt"
    source.write_text("A fox in the snow")
    first = dropreel("submit", "--config", str(config), str(source))
    second = dropreel("submit", "--config", str(config), str(source))
    assert first.returncode == second.returncode == 0
    assert sorted(p.name for p in (tmp_path / "inbox").iterdir()) == ["mine.txt", "mine_2.txt"]
    assert source.exists()
    assert dropreel("run", "--until-idle", "--config", str(config)).returncode == 0
    status = dropreel("status", "--json", "--config", str(config))
    records = [json.loads(line) for line in status.stdout.splitlines()]
    # Files taken in the same scan are claimed together: their order among themselves is
    # not promised.
    assert sorted(
        (r["name"], r["state"], r["reason"], [g["state"] for g in r["generations"]])
        for r in records
    ) == [
        ("mine", "delivered", "1/1 delivered", ["succeeded"]),
        ("mine_2", "delivered", "1/1 delivered", ["succeeded"]),
    ]
    header, *rows, summary = dropreel("status", "--config", str(config)).stdout.splitlines()
    assert header.split() == ["ID", "STATE", "AGE", "NAME", "REASON"]
    assert sorted(row.split()[1::2] for row in rows) == [
        ["delivered", "mine", "delivered"],
        ["delivered", "mine_2", "delivered"],
    ]
    assert summary.startswith("2 jobs: 2 delivered; spent today: unknown")


def test_version_and_help(tmp_path: Path) -> None:
    from dropreel import __version__

    assert dropreel("--version").stdout.strip() == f"dropreel {__version__}"
    golden = Path(__file__).parent / "golden" / "help.txt"
    # argparse wraps to the terminal's width: pin it so the text is the same everywhere.
    assert dropreel("--help", env=daemon_env(COLUMNS="100")).stdout == golden.read_text()


def test_operator_commands_against_a_live_daemon(tmp_path: Path, sim: Simulator) -> None:
    sim.options.complete_after_s = (600.0, 600.0)  # nothing finishes unless cancelled
    config = write_config(tmp_path, sim)
    process = start_daemon(config, subprocess.DEVNULL)
    database = tmp_path / "state" / "dropreel.sqlite3"
    try:
        wait_for(lambda: sim.streams_open == 1, 30, "the daemon")
        drop_job(tmp_path / "inbox", "long.json", '{"prompt": "p", "num_generations": 2}')
        wait_for(lambda: job_states(database) == ["submitted"], 30, "the submission")
        [record] = [
            json.loads(line)
            for line in dropreel("status", "--json", "--config", str(config)).stdout.splitlines()
        ]
        job_id = record["job_id"]
        assert [g["state"] for g in record["generations"]] == ["queued", "queued"]

        shown = dropreel("show", job_id[:8], "--config", str(config))
        assert shown.returncode == 0, shown.stderr
        assert f"job {job_id}  submitted" in shown.stdout and "long.json" in shown.stdout
        assert " submitted: " in shown.stdout, "the history lists each transition"

        cancelled = dropreel("cancel", job_id, "--config", str(config))
        assert cancelled.returncode == 0, cancelled.stderr
        assert "cancel 2 generation(s)" in cancelled.stdout
        wait_for(lambda: job_states(database) == ["completed"], 30, "the cancellation to land")
        after = dropreel("show", job_id, "--config", str(config)).stdout
        assert after.count("cancel requested") == 2 and after.count("generation cancelled") == 2
        manifest = json.loads((tmp_path / "outbox" / "long.result.json").read_text())
        assert [g["status"] for g in manifest["generations"]] == ["cancelled", "cancelled"]

        checked = dropreel("check-config", "--config", str(config))
        assert checked.returncode == 0, checked.stdout
        assert [line.split()[0] for line in checked.stdout.splitlines()] == ["ok"] * 8
        missing = dropreel("show", "ffff", "--config", str(config))
        assert missing.returncode == 1 and "no job 'ffff'" in missing.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert sim.count("cancel") == 2


def test_check_config_names_what_is_wrong(tmp_path: Path) -> None:
    config = tmp_path / "dropreel.toml"
    (tmp_path / "a-file").write_text("not a folder")
    config.write_text('[oxen]\nbase_url = "http://127.0.0.1:9"\n[paths]\ninbox = "a-file/inbox"\n')
    result = dropreel("check-config", "--config", str(config), env=daemon_env(OXEN_API_KEY=""))
    assert result.returncode == 1
    verdicts = {line.split()[1]: line.split()[0] for line in result.stdout.splitlines()}
    assert verdicts["api"] == "FAIL" and verdicts["paths.inbox:"] == "FAIL"
    assert verdicts["paths.outbox:"] == "ok"
