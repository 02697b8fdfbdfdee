"""`dropreel status`, `show` and `hooks rerun` against a real daemon holding a job in every
state; each command takes the short ids status shows."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from dropreel_simulator.oxen import Simulator, SimulatorOptions, running_simulator

from .daemon_harness import KEY, drop_job, write_config
from .test_e2e import daemon_env, dropreel, start_daemon, wait_for

pytestmark = pytest.mark.e2e

# The hook notes each run; it fails for jobs named notify-fails* until a file says it is
# fixed, and holds slow-hook's run until it is released.
HOOK = """
import json, os, sys, time
payload, folder = json.load(sys.stdin), sys.argv[1]
name = payload["job_name"]
with open(os.path.join(folder, "runs"), "a") as runs:
    runs.write(name + "\\n")
if name.startswith("notify-fails") and not os.path.exists(os.path.join(folder, "fixed")):
    sys.exit("no route to host")
if name == "slow-hook":
    until = time.time() + 60
    while not os.path.exists(os.path.join(folder, "release")) and time.time() < until:
        time.sleep(0.05)
"""


@pytest.fixture
def sim() -> Iterator[Simulator]:
    # Every generation is held until the test finishes it; only our key is accepted.
    options = SimulatorOptions(
        hold=True, api_key=KEY.get_secret_value(), result_bytes=4096, keepalive_s=1.0
    )
    with running_simulator(Simulator(options)) as simulator:
        yield simulator


class Scene:
    """The daemon's folder, and what the test reads of it and does to the simulator."""

    def __init__(self, root: Path, sim: Simulator) -> None:
        self.root, self.sim = root, sim
        self.database = root / "state" / "dropreel.sqlite3"
        sections: dict[str, dict[str, Any]] = {
            "providers.lumenfall": {
                "kind": "openai-videos",
                "base_url": sim.base_url + "/v1",
                "poll_interval_s": 0.3,
            },
            "providers.offline": {
                "kind": "openai-videos",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key_env": "OFFLINE_API_KEY",
            },
            # A refused key waits this long before its POST is sent again.
            "events": {"reconnect_max_s": 60.0},
            "hooks": {
                "on_complete": [sys.executable, "-c", HOOK, str(root)],
                "max_attempts": 2,
            },
        }
        self.config = write_config(root, sim, **sections)

    def rows(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        with closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as db:
            return list(db.execute(sql, params))

    def job(self, stem: str) -> tuple[str, str | None]:
        """The job's stored state and error ("" before it is taken)."""
        found = self.rows("SELECT state, error FROM jobs WHERE stem = ?", stem)
        if not found:
            return "", None
        state, error = found[0]
        return str(state), None if error is None else str(error)

    def generations(self, stem: str) -> list[str]:
        found = self.rows(
            "SELECT g.generation_id FROM generations g JOIN jobs j USING (job_id)"
            " WHERE j.stem = ? ORDER BY g.idx",
            stem,
        )
        return [str(r[0]) for r in found]

    def drop(self, name: str, text: str, until: str | None = "submitted") -> None:
        drop_job(self.root / "inbox", name, text)
        stem = name.rsplit(".", 1)[0]
        if until is not None:
            wait_for(lambda: self.job(stem)[0] == until, 30, f"{stem} {until}")

    def finish(self, stem: str, *, failing: int = 0) -> None:
        """Let the job's generations finish now, the first `failing` of them failed."""
        for n, generation_id in enumerate(self.generations(stem)):
            self.sim.generations[generation_id].will_fail = n < failing
            self.sim.call_soon(partial(self.sim.finish, generation_id))

    def wait_for_error(self, stem: str, start: str) -> None:
        wait_for(lambda: (self.job(stem)[1] or "").startswith(start), 30, f"{stem}: {start}")

    def wait_for_hook(self, stem: str, phase_and_error: tuple[str, int]) -> None:
        """Until the job's one generation is in this phase, with a hook error or not."""
        sql = (
            "SELECT g.phase, g.hook_error IS NOT NULL FROM generations g JOIN jobs j"
            " USING (job_id) WHERE j.stem = ?"
        )
        wait_for(lambda: self.rows(sql, stem) == [phase_and_error], 30, f"{stem}'s hook")

    def status(self, *args: str) -> dict[str, dict[str, str]]:
        """`status --json`, by job name."""
        result = self.dropreel("status", "--json", *args)
        return {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}

    def dropreel(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = dropreel(*args, "--config", str(self.config), env=env())
        assert "Traceback" not in result.stderr, result.stderr
        return result


def env() -> dict[str, str]:
    return daemon_env(LUMENFALL_API_KEY="not-the-key", OFFLINE_API_KEY="any")


def on_a_terminal(columns: int, *argv: str) -> str:
    """What `argv` prints on a terminal `columns` wide."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    with subprocess.Popen(argv, stdout=terminal, env=env()) as process:
        os.close(terminal)
        shown = bytearray()
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal's other end is closed: all is read
                break
            if not chunk:
                break
            shown += chunk
        os.close(controller)
    assert process.returncode == 0
    return shown.decode().replace("\r\n", "\n")


def set_the_scene(scene: Scene) -> None:
    """A job in every state the status shows."""
    scene.drop("sunrise.txt", "A sunrise")
    scene.finish("sunrise")
    scene.drop("pair.json", json.dumps({"prompt": "two takes", "num_generations": 2}))
    scene.finish("pair", failing=1)
    scene.drop("doomed.txt", "never works")
    scene.finish("doomed", failing=1)
    scene.drop("broken.json", '{"prompt": "cut', until="failed")
    for name in ("notify-fails", "notify-fails-too", "slow-hook"):
        scene.drop(f"{name}.txt", "hooked")
        scene.finish(name)
    scene.drop("long-render.txt", "a long one")
    scene.drop("cancel-me.txt", "changed my mind")
    scene.sim.options.fail_next["enqueue"] = [(429, {"Retry-After": "600"})]
    scene.drop("busy.txt", "come back later", until=None)
    scene.wait_for_error("busy", "throttled")
    scene.sim.options.fail_next["enqueue"] = [(502, {})]
    scene.drop("lost.txt", "no answer", until="needs_attention")
    lumenfall = {"prompt": "p", "dropreel": {"provider": "lumenfall"}}
    scene.drop("locked-out.json", json.dumps(lumenfall), until=None)
    offline = {"prompt": "p", "dropreel": {"provider": "offline"}}
    scene.drop("offline.json", json.dumps(offline), until=None)
    for stem, holdup in (("locked-out", "key refused"), ("offline", "provider unreachable")):
        scene.wait_for_error(stem, holdup)
    for stem in ("notify-fails", "notify-fails-too"):
        scene.wait_for_hook(stem, ("done", 1))
    wait_for(lambda: scene.job("pair")[0] == scene.job("doomed")[0] == "completed", 30, "ends")
    scene.wait_for_hook("slow-hook", ("hooking", 0))


def test_status_shows_every_state_with_its_reason_and_commands_take_short_ids(
    tmp_path: Path, sim: Simulator
) -> None:
    scene = Scene(tmp_path, sim)
    with (tmp_path / "daemon.log").open("w") as log:
        process = start_daemon(scene.config, log, env=env())
    try:
        wait_for(lambda: sim.streams_open == 1, 30, "the daemon's event stream")
        set_the_scene(scene)
        cancelled = scene.dropreel("cancel", scene.status()["cancel-me"]["short_id"])
        assert cancelled.returncode == 0, cancelled.stderr
        wait_for(lambda: scene.job("cancel-me")[0] == "completed", 30, "the cancellation")

        jobs = scene.status()
        assert {name: job["state"] for name, job in jobs.items()} == {
            "sunrise": "delivered",
            "pair": "partly-delivered",
            "doomed": "failed",
            "broken": "failed",
            "notify-fails": "hook-gave-up",
            "notify-fails-too": "hook-gave-up",
            "slow-hook": "delivering",
            "long-render": "waiting",
            "cancel-me": "cancelled",
            "busy": "throttled",
            "lost": "parked",
            "locked-out": "blocked",
            "offline": "blocked",
        }
        reasons = {name: job["reason"] for name, job in jobs.items()}
        assert reasons["pair"] == "1/2 delivered; 1/2 failed: simulated failure"
        assert reasons["doomed"] == "1/1 failed: simulated failure"
        assert reasons["broken"].startswith("not valid JSON")
        assert re.fullmatch(
            r"hook gave up after 2 tries: exit status 1 after \d+\.\d\ds: no route to host",
            reasons["notify-fails"],
        )
        assert reasons["slow-hook"] == "1/1 delivered, running its hook"
        assert reasons["long-render"] in ("queued at oxen", "running at oxen")
        assert reasons["cancel-me"] == "1/1 cancelled"
        assert reasons["busy"] == (
            "oxen is throttling, trying again: POST /api/ai/queue (model 'openai-sora-2-pro')"
            " -> HTTP 429: simulated 429"
        )
        assert reasons["lost"].startswith("the POST ended ambiguously")
        assert reasons["locked-out"] == (
            "lumenfall refuses the key, trying again: POST /videos (model 'sora-2-pro')"
            " -> HTTP 401: unauthenticated"
        )
        assert reasons["offline"].startswith("offline cannot be reached, trying again: POST")
        assert all(len(job["short_id"]) <= 5 for job in jobs.values())

        table = on_a_terminal(
            100, sys.executable, "-m", "dropreel", "status", "--config", str(scene.config)
        )
        print(table)  # the README's screen
        assert all(len(line) <= 100 for line in table.splitlines())
        assert " ".join(table.split()).endswith(
            "13 jobs: 1 parked, 2 blocked, 1 throttled, 2 hook-gave-up, 2 failed, 1 waiting, "
            "1 delivering, 1 partly-delivered, 1 delivered, 1 cancelled; spent today: unknown; "
            f"daemon running (pid {process.pid})"
        )
        for job in jobs.values():
            assert " ".join(job["reason"].split()) in " ".join(table.split()), "never cut"

        assert set(scene.status("--state", "blocked", "--state", "parked")) == {
            "lost",
            "locked-out",
            "offline",
        }
        assert len(scene.status("--since", "1h")) == 13
        assert scene.dropreel("status", "--since", "2999-01-01").stdout.startswith(
            "no jobs to show\n0 jobs; spent today"
        )

        hooked = jobs["notify-fails"]["short_id"]
        story = scene.dropreel("show", hooked).stdout
        assert re.search(
            r"  hook runs\n    \S+  failed: exit status 1 after .*\n    \S+  gave up", story
        )

        not_given_up = scene.dropreel("hooks", "rerun", jobs["sunrise"]["short_id"])
        assert not_given_up.returncode == 1
        assert not_given_up.stderr.startswith("dropreel: no hook of job ")

        (tmp_path / "fixed").touch()
        rerun = scene.dropreel("hooks", "rerun", hooked)
        assert rerun.returncode == 0, rerun.stderr
        assert re.fullmatch(r"hook of \S+ \(job \S+\) ran: exit 0 after \d\.\d\ds\n", rerun.stdout)
        assert scene.status()["notify-fails"]["state"] == "delivered"
        story = scene.dropreel("show", hooked).stdout
        print(story)  # the README's example
        assert re.search(
            r"  hook runs\n(    \S+  .*\n){2}    \S+  rerun asked\n    \S+  ok: ", story
        )

        retried = scene.dropreel("retry", jobs["lost"]["short_id"])
        assert retried.returncode == 0, retried.stderr
    finally:
        (tmp_path / "release").touch()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0

    # The daemon has stopped: the command runs the hook itself.
    runs_before = (tmp_path / "runs").read_text().splitlines()
    again = scene.dropreel("hooks", "rerun", scene.generations("notify-fails-too")[0])
    assert again.returncode == 0, again.stderr
    assert " ran: exit 0 after " in again.stdout
    assert (tmp_path / "runs").read_text().splitlines() == [*runs_before, "notify-fails-too"]
    assert scene.status()["notify-fails-too"]["state"] == "delivered"
    assert scene.dropreel("status").stdout.splitlines()[-1].endswith("daemon not running")
