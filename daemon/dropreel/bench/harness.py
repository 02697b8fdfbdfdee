"""A daemon under test: a real subprocess with its own config, readiness and resource figures."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dropreel.config import toml_text
from dropreel_simulator.oxen import Simulator

BENCH_KEY = "bench-dropreel-key"
FLOOR_KEY = "bench-floor-key"
# Writes "<generation id> <epoch seconds>" as the hook runs; bash reads the clock itself
# ($EPOCHREALTIME), so no second process skews the figure.
HOOK = 'printf "%s %s\\n" "$DROPREEL_GENERATION_ID" "$EPOCHREALTIME" >> "$BENCH_HOOK_LOG"'


def write_config(root: Path, simulator: Simulator, **sections: dict[str, Any]) -> Path:
    tables: dict[str, dict[str, Any]] = {
        # The daemon's own cost is measured here, not the request ceiling a real provider needs.
        "oxen": {"base_url": simulator.base_url, "max_requests_per_s": 1_000_000},
        "inbox": {"settle_s": 0.0},
        "hooks": {"on_complete": ["/bin/bash", "-c", HOOK]},
        "log": {"level": "warning"},
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    config = root / "dropreel.toml"
    config.write_text(toml_text(tables), encoding="utf-8")
    return config


class DaemonProcess:
    """`dropreel run` as a child process, told apart from the peer by its API key."""

    def __init__(self, root: Path, config: Path) -> None:
        self.root = root
        self.hook_log = root / "hooks.log"
        self._notify_path = str(root / "notify.sock")
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(self._notify_path)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DROPREEL_", "OXEN_"))}
        env.update(
            OXEN_API_KEY=BENCH_KEY,
            NOTIFY_SOCKET=self._notify_path,
            BENCH_HOOK_LOG=str(self.hook_log),
        )
        self._log = (root / "daemon.log").open("w")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dropreel", "run", "--config", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.ready_after_s: float | None = None

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        """Seconds from spawning the process to its READY=1."""
        deadline = time.monotonic() + timeout_s
        while self.ready_after_s is None:
            self._notify.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self._notify.recv(4096).decode()
            except TimeoutError:
                raise RuntimeError("the daemon did not become ready") from None
            if "READY=1" in message.split("\n"):
                self.ready_after_s = time.monotonic() - self.started
        # Nobody reads it from here on: stop listening rather than let messages pile up.
        self._notify.close()
        return self.ready_after_s

    def peak_rss_mb(self) -> float:
        return _status_kb(self.process.pid, "VmHWM") / 1024

    def cpu_s(self) -> float:
        return process_cpu_s(self.process.pid)

    def hook_times(self) -> dict[str, float]:
        return hook_times(self.hook_log)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._notify.close()
        self._log.close()
        return int(self.process.returncode)


def process_cpu_s(pid: int) -> float:
    """CPU time of a process, every thread included, its children excluded (utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hook_times(log: Path) -> dict[str, float]:
    """When each generation's hook started, by the hook's own clock."""
    if not log.exists():
        return {}
    times: dict[str, float] = {}
    for line in log.read_text().splitlines():
        generation_id, _, stamp = line.partition(" ")
        times.setdefault(generation_id, float(stamp))
    return times


class FloorProcess:
    """The floor consumer (bench/floor.py) as a child process, with its own key."""

    def __init__(self, root: Path, base_url: str, mode: str, count: int, **extra: str) -> None:
        self.root = root
        self.hook_log = root / "hooks.log"
        root.mkdir(parents=True, exist_ok=True)
        options = [f"--{k.replace('_', '-')}={v}" for k, v in extra.items()]
        env = {**os.environ, "BENCH_HOOK_LOG": str(self.hook_log)}
        self._log = (root / "floor.log").open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dropreel.bench.floor",
                mode,
                f"--base-url={base_url}",
                f"--key={FLOOR_KEY}",
                f"--root={root}",
                f"--count={count}",
                *options,
                f"--hook={json.dumps(['/bin/bash', '-c', HOOK])}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def cpu_s(self) -> float:
        return process_cpu_s(self.process.pid)

    def hook_times(self) -> dict[str, float]:
        return hook_times(self.hook_log)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def wait_until(condition: Any, timeout_s: float, what: str, step_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(step_s)


def drop_files(inbox: Path, staging: Path, files: dict[str, str]) -> float:
    """Write job files aside, then rename them all into the inbox; when the renames began."""
    staging.mkdir(parents=True, exist_ok=True)
    inbox.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (staging / name).write_text(text, encoding="utf-8")
    started = time.time()
    for name in files:
        (staging / name).rename(inbox / name)
    return started


def requests_by(simulator: Simulator, client: str, since: float = 0.0) -> dict[str, int]:
    """One client's requests by kind; downloads count for whoever created the generation."""
    counts: dict[str, int] = {}
    generations = simulator.generations
    for record in list(simulator.requests):
        if record.at < since:
            continue
        owner = record.client
        if record.kind == "download" and record.generation_id in generations:
            owner = generations[record.generation_id].owner
        if owner == client:
            counts[record.kind] = counts.get(record.kind, 0) + 1
    return counts
