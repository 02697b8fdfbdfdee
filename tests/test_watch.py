"""`dropreel watch` in a real terminal (tmux) beside a real daemon: a job's progress rises on
screen, the streams are shown, `q` and Ctrl-C leave the terminal as they found it; off a
terminal it prints one plain snapshot."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from dropreel_simulator.oxen import Simulator, SimulatorOptions, running_simulator

from .daemon_harness import KEY, drop_job, write_config
from .test_e2e import daemon_env, dropreel, job_states, start_daemon, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux for a real terminal"),
]

# The slow video: queued for its first third, then running with a rising `progress`.
VIDEO_S = 30.0
PERCENT = re.compile(r"\s(\d{1,3})%\s+long-render\s")


@pytest.fixture
def sim() -> Iterator[Simulator]:
    # Oxen's generations are held until the test finishes them.
    options = SimulatorOptions(hold=True, api_key=KEY.get_secret_value(), keepalive_s=1.0)
    with running_simulator(Simulator(options)) as simulator:
        simulator.videos.options.complete_after_s = (VIDEO_S, VIDEO_S)
        yield simulator


class Terminal:
    """A shell in a tmux session 100 columns by 30 lines, on a tmux server of its own."""

    def __init__(self) -> None:
        self.server = f"dropreel-watch-{time.monotonic_ns()}"
        self.tmux("new-session", "-d", "-x", "100", "-y", "30", "-s", "t", "bash --norc")

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.server, *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def type(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def wait_for(self, pattern: str, what: str, timeout_s: float = 30) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def shown() -> bool:
            match = re.search(pattern, self.screen())
            found[:] = [match] if match else []
            return bool(match)

        wait_for(shown, timeout_s, f"{what} on screen:\n{self.screen()}")
        return found[0]

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], check=False)


def stty_shows_a_normal_terminal(terminal: Terminal) -> None:
    terminal.type("clear; stty -a", "Enter")
    terminal.wait_for(r"\bicanon\b", "stty's settings")
    settings = set(terminal.screen().split())
    assert {"icanon", "echo", "isig"} <= settings, terminal.screen()


def test_watch_shows_progress_rising_and_the_streams_then_quits_cleanly(
    tmp_path: Path, sim: Simulator
) -> None:
    slow = {"prompt": "a slow one", "dropreel": {"provider": "lumenfall"}}
    lumenfall: dict[str, Any] = {
        "kind": "openai-videos",
        "base_url": sim.base_url + "/v1",
        # Its own polls are a minute apart: a percentage that moves sooner was asked for.
        "poll_interval_s": 60.0,
    }
    config = write_config(
        tmp_path, sim, **{"providers.lumenfall": lumenfall, "service": {"heartbeat_s": 0.2}}
    )
    env = daemon_env(LUMENFALL_API_KEY=KEY.get_secret_value())
    database = tmp_path / "state" / "dropreel.sqlite3"
    with (tmp_path / "daemon.log").open("w") as log:
        daemon = start_daemon(config, log, env=env)
    terminal = Terminal()
    try:
        wait_for(lambda: sim.streams_open == 1, 30, "the daemon's event stream")
        # One Oxen job done, so the next has a typical duration to be measured against.
        drop_job(tmp_path / "inbox", "sunrise.txt", "A sunrise")
        wait_for(lambda: len(sim.generations) == 1, 30, "sunrise at the provider")
        time.sleep(4)  # long enough to read as a typical duration
        sim.call_soon(partial(sim.finish, next(iter(sim.generations))))
        wait_for(lambda: job_states(database) == ["completed"], 30, "sunrise delivered")
        drop_job(tmp_path / "inbox", "moonrise.txt", "A moonrise")
        drop_job(tmp_path / "inbox", "long-render.json", json.dumps(slow))

        watch = f"{sys.executable} -m dropreel watch --config {config}"
        terminal.type(f"{watch}; echo WATCH-EXIT=$?", "Enter")
        terminal.wait_for(r"oxen\s+stream up since \d\d:\d\d:\d\d", "Oxen's stream")
        terminal.wait_for(r"lumenfall\s+no stream: polling every 60s", "lumenfall's polls")
        terminal.wait_for(r"moonrise\s+queued at oxen", "the Oxen job")
        terminal.wait_for(r"\d+s of ~\d+s\s+moonrise", "its time against the typical")
        first = int(terminal.wait_for(r"\s([1-9]\d?)%\s+long-render\s", "progress", 45)[1])
        rising = rf"\s({'|'.join(str(p) for p in range(first + 1, 101))})%\s+long-render\s"
        second = int(terminal.wait_for(rising, "progress rising", 45)[1])
        assert 0 < first < second
        print(terminal.screen())  # the README's screen

        plain = dropreel("watch", "--config", str(config), env=env)
        assert plain.returncode == 0, plain.stderr
        print(plain.stdout)  # off a terminal: one plain snapshot
        lines = plain.stdout.splitlines()
        assert lines[0].startswith("dropreel watch  ")
        assert lines[0].endswith(f"daemon running (pid {daemon.pid})")
        assert re.search(r"\n  oxen\s+stream up since ", plain.stdout)
        assert re.search(
            r"\[#*\.*\]\s+\d+%  long-render\s+running \(\d+%\) at lumenfall", plain.stdout
        )
        assert "\x1b" not in plain.stdout
        assert lines[-1] == "3 jobs on watch: 2 waiting, 1 delivered"

        terminal.type("q")
        terminal.wait_for("WATCH-EXIT=0", "watch ending on q")
        assert "q or Ctrl-C quits" not in terminal.screen(), "the screen was not restored"
        assert not list((tmp_path / "state" / "watching").glob("*.json")), "its note is left"
        stty_shows_a_normal_terminal(terminal)

        terminal.type("clear", "Enter")
        terminal.type(f"{watch} 2> {tmp_path / 'ctrl-c.err'}; echo WATCH-EXIT=$?", "Enter")
        terminal.wait_for("q or Ctrl-C quits", "watch again")
        terminal.type("C-c")
        terminal.wait_for("WATCH-EXIT=0", "watch ending on Ctrl-C")
        assert (tmp_path / "ctrl-c.err").read_text() == ""
        stty_shows_a_normal_terminal(terminal)
    finally:
        terminal.close()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0


def test_watch_names_what_is_missing_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "dropreel.toml"
    config.write_text("")
    result = dropreel("watch", "--once", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr == (
        f"dropreel: no database at {tmp_path / 'state' / 'dropreel.sqlite3'} "
        "(has the daemon run with this config?)\n"
    )
