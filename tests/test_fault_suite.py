"""Hundreds of jobs through the real daemon while faults fire and it is SIGKILLed again and again.

Every figure is checked against the simulator's own records: what was POSTed, what
generations exist, what bytes were served. The seed is printed; set DROPREEL_FAULT_SEED to
replay a run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from dropreel_simulator.oxen import Simulator, SimulatorOptions, running_simulator

from .daemon_harness import db_rows, hook_argv, hook_lines, write_config
from .test_e2e import daemon_env

pytestmark = pytest.mark.e2e

VALID_JOBS = 300
MALFORMED_JOBS = 6
KILLS = 22
# Written straight into the inbox under their final names, with a pause half-way.
SLOW_WRITES = 8
FOLDERS = ("inbox", "outbox", "failed", "state")
# The one reconcile a client owes after (re)connecting is not a poll of a healthy stream.
RECONCILE_GRACE_S = 3.0


def job_files() -> dict[str, str]:
    """Every job has a prompt of its own, so each POST can be traced back to its file."""
    files: dict[str, str] = {}
    for n in range(VALID_JOBS):
        prompt = f"fault suite job {n}"
        if n % 3 == 0:
            files[f"job-{n:03}.txt"] = prompt
        elif n % 3 == 1:
            count = 3 if n % 10 == 1 else 1
            files[f"job-{n:03}.json"] = json.dumps({"prompt": prompt, "num_generations": count})
        else:
            files[f"job-{n:03}.toml"] = f'prompt = "{prompt}"\nseconds = "4"\n'
    for n in range(MALFORMED_JOBS):
        files[f"broken-{n}.json"] = '{"prompt": "never closed'
    return files


class Faults(threading.Thread):
    """Fires provider faults at random until stopped."""

    def __init__(self, simulator: Simulator, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.simulator = simulator
        self.rng = rng
        self.stop = threading.Event()
        self.fired: Counter[str] = Counter()

    def run(self) -> None:
        actions = {
            "drop": self.drop,
            "throttle": lambda: self.fail_next("enqueue", 429, {"Retry-After": "0"}),
            "server-error": lambda: self.fail_next("enqueue", 503),
            "gateway": self.gateway,
            "cut-download": self.cut_download,
            "download-error": lambda: self.fail_next("download", 500),
            "noise": self.noise,
            "race": self.race,
            "stall": self.stall,
            "refuse-key": self.refuse_key,
        }
        while not self.stop.wait(self.rng.uniform(0.2, 0.8)):
            fault = self.rng.choice(sorted(actions))
            self.fired[fault] += 1
            actions[fault]()

    def drop(self) -> None:
        self.simulator.call_soon(self.simulator.drop_streams)

    def fail_next(self, kind: str, status: int, headers: dict[str, str] | None = None) -> None:
        self.simulator.options.fail_next.setdefault(kind, []).append((status, headers or {}))

    def gateway(self) -> None:
        # Created and billed, then answered with a gateway's error.
        self.simulator.options.fail_after_create.append(self.rng.choice([502, 504]))

    def cut_download(self) -> None:
        self.simulator.options.cut_downloads += 1

    def noise(self) -> None:
        self.simulator.options.noisy_events = not self.simulator.options.noisy_events

    def race(self) -> None:
        options = self.simulator.options
        options.complete_before_answer = not options.complete_before_answer

    def stall(self) -> None:
        # Longer than the daemon's idle timeout: it must notice on its own.
        self.simulator.options.stall_streams = True
        self.stop.wait(3.5)
        self.simulator.options.stall_streams = False

    def refuse_key(self) -> None:
        self.simulator.options.api_key = "not-the-daemons-key"
        self.stop.wait(0.5)
        self.simulator.options.api_key = None


@dataclass
class Run:
    """What happened, as the simulator recorded it."""

    root: Path
    folders: dict[str, Path]
    files: dict[str, str]
    options: SimulatorOptions
    simulator: Simulator
    kills: int
    faults: Counter[str]
    final_exit: int
    # Per round: the exit status of the second daemon started beside the first.
    second_daemons: list[int | None]

    @property
    def database(self) -> Path:
        return self.folders["state"] / "dropreel.sqlite3"


@contextmanager
def separate_mounts(root: Path) -> Iterator[dict[str, Path]]:
    """Inbox, outbox, failed and state each on a tmpfs of its own, as the shipped unit
    puts them on separate mounts; plain folders where mounting is not allowed (not root)."""
    mounted: list[Path] = []
    folders: dict[str, Path] = {}
    try:
        for name in FOLDERS:
            point = root / f"mount-{name}"
            point.mkdir()
            if os.geteuid() == 0:
                subprocess.run(
                    ["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", str(point)], check=True
                )
                mounted.append(point)
            folders[name] = point / name
            folders[name].mkdir()
        if mounted:
            devices = {folder.stat().st_dev for folder in folders.values()}
            assert len(devices) == len(FOLDERS), "every folder on a filesystem of its own"
        yield folders
    finally:
        for point in mounted:
            subprocess.run(["umount", "-l", str(point)], check=False)


class SlowWriter(threading.Thread):
    """Writes job files into the inbox under their final names the way `cat > x.txt` does:
    half the text, a pause of seconds with the file still open, then the rest."""

    def __init__(self, inbox: Path, files: dict[str, str], rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.inbox = inbox
        self.files = files
        self.pauses = [rng.uniform(1.5, 3.0) for _ in files]

    def run(self) -> None:
        for (name, text), pause in zip(self.files.items(), self.pauses, strict=True):
            with (self.inbox / name).open("w", encoding="utf-8") as handle:
                handle.write(text[: len(text) // 2])
                handle.flush()
                time.sleep(pause)
                handle.write(text[len(text) // 2 :])


def beside(log: Path) -> Path:
    """The log of the daemon started beside the one logging to `log` (run-03.log)."""
    return log.with_name(log.name.replace("run-", "beside-"))


def start_pair(
    command: list[str], log: Path
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """Two daemons on one state folder, started together (as two operators might)."""
    with log.open("w") as first_log, beside(log).open("w") as second_log:
        first = subprocess.Popen(
            command, stdout=first_log, stderr=subprocess.STDOUT, env=daemon_env()
        )
        second = subprocess.Popen(
            command, stdout=second_log, stderr=subprocess.STDOUT, env=daemon_env()
        )
    return first, second


def refusal(pair: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]) -> int | None:
    """Wait for one of the two to refuse and exit; its exit status (None if neither did)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for process in pair:
            if (status := process.poll()) is not None:
                return status
        time.sleep(0.05)
    return None


def run_with_kills(root: Path, folders: dict[str, Path], seed: int) -> Run:
    """Feed every job file in while faults fire and the daemon is SIGKILLed KILLS times."""
    rng = random.Random(seed)
    options = SimulatorOptions(
        complete_after_s=(0.05, 1.5), result_bytes=24 * 1024, keepalive_s=0.5, seed=seed
    )
    files = job_files()
    slow = {n: t for n, t in files.items() if n.endswith(".txt")}
    slow = dict(rng.sample(sorted(slow.items()), SLOW_WRITES))
    names = [n for n in files if n not in slow]
    rng.shuffle(names)
    inbox = folders["inbox"]
    staging = inbox.parent / "staging"  # on the inbox's filesystem: a rename drops a file
    staging.mkdir()
    for name in names:
        (staging / name).write_text(files[name], encoding="utf-8")
    with running_simulator(Simulator(options)) as sim:
        config = write_config(
            root,
            sim,
            paths={name: str(path) for name, path in folders.items()},
            hooks={"on_complete": hook_argv(root / "hooks.log")},
            events={"idle_timeout_s": 3.0},
            poll={"interval_s": 0.5},
            submit={"concurrency": 8},
            delivery={"concurrency": 8},
            # The reconcile owed after each connect must fit in RECONCILE_GRACE_S; the
            # request ceiling is pinned by tests of its own.
            oxen={"max_requests_per_s": 1000},
        )
        command = [sys.executable, "-m", "dropreel", "run", "--config", str(config)]
        faults = Faults(sim, rng)
        writer = SlowWriter(inbox, slow, rng)
        faults.start()
        writer.start()
        batch = -(-len(names) // KILLS)
        second_daemons: list[int | None] = []
        try:
            for round_ in range(KILLS):
                pair = start_pair(command, root / f"run-{round_:02}.log")
                second_daemons.append(refusal(pair))
                for name in names[round_ * batch : (round_ + 1) * batch]:
                    (staging / name).rename(inbox / name)
                time.sleep(rng.uniform(0.5, 2.0))
                for process in pair:
                    if process.poll() is None:
                        process.send_signal(signal.SIGKILL)
                    process.wait(timeout=30)
        finally:
            faults.stop.set()
            faults.join()
            writer.join()
        sim.options.fail_next.clear()
        sim.options.fail_after_create.clear()
        sim.options.cut_downloads = 0
        sim.options.complete_before_answer = False
        with (root / "final.log").open("w") as log:
            final = subprocess.run(
                [*command, "--until-idle"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=daemon_env(),
                timeout=240,
                check=False,
            )
    return Run(
        root, folders, files, options, sim, KILLS, faults.fired, final.returncode, second_daemons
    )


def check_no_file_lost(run: Run) -> None:
    kept = list((run.folders["state"] / "accepted").iterdir())
    failed_dir = run.folders["failed"]
    failed = [p for p in failed_dir.iterdir() if not p.name.endswith(".error.json")]
    assert len(kept) == VALID_JOBS and len(failed) == MALFORMED_JOBS
    assert list(run.folders["inbox"].iterdir()) == []
    for path in failed:
        sidecar = failed_dir / f"{path.name}.error.json"
        assert "not valid JSON" in json.loads(sidecar.read_text())["reason"]


def check_each_job_posted_at_most_once(run: Run) -> Counter[str]:
    posts_per_prompt = Counter(str(body["prompt"]) for body, _ in run.simulator.enqueued)
    assert max(posts_per_prompt.values()) == 1
    # Whole prompts only: a file still being written was never taken half-way.
    whole = {f"fault suite job {n}" for n in range(VALID_JOBS)}
    assert set(posts_per_prompt) <= whole, set(posts_per_prompt) - whole
    return posts_per_prompt


def check_one_daemon_per_state_folder(run: Run) -> None:
    """In every round the second daemon refused to start, in one line, and left."""
    assert all(status not in (None, 0) for status in run.second_daemons), run.second_daemons
    for log in sorted(run.root.glob("run-*.log")):
        first, second = log.read_text(), beside(log).read_text()
        refusal = second if "already running" in second else first
        assert len(refusal.strip().splitlines()) == 1, refusal
        assert "Traceback" not in first + second


def check_every_job_accounted_for(run: Run, posted: Counter[str]) -> Counter[str]:
    jobs = db_rows(run.database, "SELECT * FROM jobs WHERE request IS NOT NULL")
    assert Counter(j["source_name"] for j in jobs) == Counter(
        {name: 1 for name in run.files if not name.startswith("broken")}
    )
    states = Counter(j["state"] for j in jobs)
    assert set(states) <= {"completed", "needs_attention"}
    for job in jobs:
        if job["state"] == "needs_attention":
            assert json.loads(job["request"])["prompt"] not in posted, "parked yet created"
    return states


def check_every_generation_delivered_intact(run: Run) -> None:
    jobs = {j["job_id"]: j for j in db_rows(run.database, "SELECT * FROM jobs")}
    owner = {
        g["generation_id"]: g["job_id"] for g in db_rows(run.database, "SELECT * FROM generations")
    }
    assert set(owner) == set(run.simulator.generations), "every paid generation is known"
    for body, ids in run.simulator.enqueued:
        for generation_id in ids:
            assert json.loads(jobs[owner[generation_id]]["request"])["prompt"] == body["prompt"]
    outbox = run.folders["outbox"]
    expected: set[str] = set()
    for job in jobs.values():
        if job["state"] != "completed":
            continue
        manifest = json.loads(Path(job["manifest_path"]).read_text())
        assert manifest["job_id"] == job["job_id"]
        expected.add(Path(job["manifest_path"]).name)
        for entry in manifest["generations"]:
            assert entry["status"] == "succeeded", entry
            served = run.simulator.content_for(entry["generation_id"], run.options.result_bytes)
            assert (outbox / entry["file"]).read_bytes() == served
            expected.add(entry["file"])
    assert {p.name for p in outbox.iterdir()} == expected, "no strays, no duplicates"


def check_run(run: Run) -> tuple[Counter[str], Counter[str]]:
    """Every promise, checked against the simulator's records and the folders' contents."""
    assert run.final_exit == 0, (run.root / "final.log").read_text()[-3000:]
    assert run.kills >= 20
    check_one_daemon_per_state_folder(run)
    check_no_file_lost(run)
    posted = check_each_job_posted_at_most_once(run)
    states = check_every_job_accounted_for(run, posted)
    check_every_generation_delivered_intact(run)
    # Every generation's hook ran, at least once: a kill mid-hook runs it again.
    hook_runs = Counter(r["generation_id"] for r in hook_lines(run.root / "hooks.log"))
    assert set(hook_runs) == set(run.simulator.generations)
    assert run.simulator.polls_while_streaming(after_connect_grace_s=RECONCILE_GRACE_S) == 0
    return states, hook_runs


def test_sigkill_at_random_under_faults_loses_nothing_and_pays_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("DROPREEL_FAULT_SEED", random.randrange(1_000_000)))
    print(f"fault suite seed {seed}")
    with separate_mounts(tmp_path) as folders:
        run = run_with_kills(tmp_path, folders, seed)
        states, hook_runs = check_run(run)
    print(
        f"fault suite: seed {seed}, {run.kills} SIGKILLs, {len(run.files)} files, "
        f"{len(run.simulator.enqueued)} POSTs creating {len(run.simulator.generations)} "
        f"generations, states {dict(states)}, hooks repeated after a kill: "
        f"{sum(n - 1 for n in hook_runs.values())}, faults {dict(run.faults)}, "
        f"requests {run.simulator.counts()}"
    )
