"""Job files and names that once crashed the daemon, at the time and at every restart."""

from __future__ import annotations

import os
from pathlib import Path

from dropreel.lifecycle import JobState
from dropreel.state.store import Store
from dropreel_simulator.oxen import Simulator

from .daemon_harness import drop_job, run_daemon, settings_for


def drop_bytes(inbox: Path, name: bytes, data: bytes) -> None:
    """A file whose name is raw bytes (perhaps not UTF-8), written aside then renamed in."""
    inbox.mkdir(parents=True, exist_ok=True)
    aside = inbox / ".incoming.tmp"
    aside.write_bytes(data)
    aside.rename(inbox / os.fsdecode(name))


async def test_hostile_values_and_names_are_used_or_refused_and_the_daemon_carries_on(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, simulator)
    inbox = settings.inbox_dir
    drop_job(inbox, "date.toml", 'prompt = "p"\nwhen = 2026-11-22')
    drop_job(inbox, "digits.json", '{"prompt": "p", "seed": ' + "9" * 5000 + "}")
    drop_job(inbox, "lone.json", '{"prompt": "a \\ud83c cat"}')
    drop_job(inbox, "nan.json", '{"prompt": "p", "seed": NaN}')
    drop_bytes(inbox, b"bom.json", b'\xef\xbb\xbf{"prompt": "with a byte-order mark"}')
    drop_bytes(inbox, b"caf\xe9.txt", b"a Latin-1 name")
    drop_bytes(inbox, ("l" * 240 + ".txt").encode(), b"a long name")
    await run_daemon(settings)
    await run_daemon(settings)  # and the next start is as calm

    async with Store.open(settings.database_path, read_only=True) as store:
        jobs = {job.source_name: job for job in await store.jobs()}
    refused = {name for name, job in jobs.items() if job.state is JobState.FAILED}
    assert refused == {"date.toml", "digits.json", "lone.json", "nan.json"}
    completed = {name for name, job in jobs.items() if job.state is JobState.COMPLETED}
    assert completed == {"bom.json", "caf\\xe9.txt", "l" * 240 + ".txt"}
    assert simulator.count("enqueue") == 3
    outputs = {p.name for p in settings.outbox_dir.iterdir()}
    assert {"bom.mp4", "caf_xe9.mp4"} <= outputs
    assert all(len(name.encode()) <= 255 for name in outputs)
    assert list(inbox.iterdir()) == []
