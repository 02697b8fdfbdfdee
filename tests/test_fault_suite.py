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
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from dropreel.simulator import Simulator, SimulatorOptions, running_simulator

from .daemon_harness import hook_argv, hook_lines, write_config
from .test_e2e import daemon_env

pytestmark = pytest.mark.e2e

VALID_JOBS = 300
MALFORMED_JOBS = 6
KILLS = 22
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


def rows(database: Path, sql: str) -> list[sqlite3.Row]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        return list(db.execute(sql))


@dataclass
class Run:
    """What happened, as the simulator recorded it."""

    root: Path
    files: dict[str, str]
    options: SimulatorOptions
    simulator: Simulator
    kills: int
    faults: Counter[str]
    final_exit: int

    @property
    def database(self) -> Path:
        return self.root / "state" / "dropreel.sqlite3"


def run_with_kills(root: Path, seed: int) -> Run:
    """Feed every job file in while faults fire and the daemon is SIGKILLed KILLS times."""
    rng = random.Random(seed)
    options = SimulatorOptions(
        complete_after_s=(0.05, 1.5), result_bytes=24 * 1024, keepalive_s=0.5, seed=seed
    )
    files = job_files()
    names = list(files)
    rng.shuffle(names)
    staging, inbox = root / "staging", root / "inbox"
    staging.mkdir()
    inbox.mkdir()
    for name, text in files.items():
        (staging / name).write_text(text, encoding="utf-8")
    with running_simulator(Simulator(options)) as sim:
        config = write_config(
            root,
            sim,
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
        faults.start()
        batch = -(-len(names) // KILLS)
        try:
            for round_ in range(KILLS):
                with (root / f"run-{round_:02}.log").open("w") as log:
                    process = subprocess.Popen(
                        command, stdout=log, stderr=subprocess.STDOUT, env=daemon_env()
                    )
                    for name in names[round_ * batch : (round_ + 1) * batch]:
                        (staging / name).rename(inbox / name)
                    time.sleep(rng.uniform(0.5, 2.0))
                    process.send_signal(signal.SIGKILL)
                    process.wait(timeout=30)
        finally:
            faults.stop.set()
            faults.join()
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
    return Run(root, files, options, sim, KILLS, faults.fired, final.returncode)


def check_no_file_lost(run: Run) -> None:
    kept = list((run.root / "state" / "accepted").iterdir())
    failed = [p for p in (run.root / "failed").iterdir() if not p.name.endswith(".error.json")]
    assert len(kept) == VALID_JOBS and len(failed) == MALFORMED_JOBS
    assert list((run.root / "inbox").iterdir()) == []
    for path in failed:
        sidecar = run.root / "failed" / f"{path.name}.error.json"
        assert "not valid JSON" in json.loads(sidecar.read_text())["reason"]


def check_each_job_posted_at_most_once(run: Run) -> Counter[str]:
    posts_per_prompt = Counter(str(body["prompt"]) for body, _ in run.simulator.enqueued)
    assert max(posts_per_prompt.values()) == 1
    return posts_per_prompt


def check_every_job_accounted_for(run: Run, posted: Counter[str]) -> Counter[str]:
    jobs = rows(run.database, "SELECT * FROM jobs WHERE request IS NOT NULL")
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
    jobs = {j["job_id"]: j for j in rows(run.database, "SELECT * FROM jobs")}
    owner = {
        g["generation_id"]: g["job_id"] for g in rows(run.database, "SELECT * FROM generations")
    }
    assert set(owner) == set(run.simulator.generations), "every paid generation is known"
    for body, ids in run.simulator.enqueued:
        for generation_id in ids:
            assert json.loads(jobs[owner[generation_id]]["request"])["prompt"] == body["prompt"]
    outbox = run.root / "outbox"
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


def test_sigkill_at_random_under_faults_loses_nothing_and_pays_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("DROPREEL_FAULT_SEED", random.randrange(1_000_000)))
    print(f"fault suite seed {seed}")
    run = run_with_kills(tmp_path, seed)
    assert run.final_exit == 0, (tmp_path / "final.log").read_text()[-3000:]
    assert run.kills >= 20
    check_no_file_lost(run)
    posted = check_each_job_posted_at_most_once(run)
    states = check_every_job_accounted_for(run, posted)
    check_every_generation_delivered_intact(run)
    # Every generation's hook ran, at least once: a kill mid-hook runs it again.
    hook_runs = Counter(r["generation_id"] for r in hook_lines(tmp_path / "hooks.log"))
    assert set(hook_runs) == set(run.simulator.generations)
    assert run.simulator.polls_while_streaming(after_connect_grace_s=RECONCILE_GRACE_S) == 0
    print(
        f"fault suite: seed {seed}, {run.kills} SIGKILLs, {len(run.files)} files, "
        f"{len(run.simulator.enqueued)} POSTs creating {len(run.simulator.generations)} "
        f"generations, states {dict(states)}, hooks repeated after a kill: "
        f"{sum(n - 1 for n in hook_runs.values())}, faults {dict(run.faults)}, "
        f"requests {run.simulator.counts()}"
    )
