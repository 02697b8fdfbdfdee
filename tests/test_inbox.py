from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from dropreel.fs.moves import finish_failed_moves
from dropreel.intake.inbox import Inbox, InboxFolders
from dropreel.lifecycle import JobState
from dropreel.state.store import Store
from tests.test_assets import PNG


class Dropbox:
    def __init__(self, root: Path, store: Store) -> None:
        self.folders = InboxFolders(
            inbox=root / "inbox",
            accepted=root / "state" / "accepted",
            failed=root / "failed",
            outbox=root / "outbox",
        )
        for folder in (self.folders.inbox, self.folders.outbox):
            folder.mkdir(parents=True)
        self.store = store
        self.accepted: list[str] = []

        async def on_accepted(job_id: str) -> None:
            self.accepted.append(job_id)

        self.inbox = Inbox(self.folders, store, routes="m", settle_s=0.0, on_accepted=on_accepted)

    def drop(self, name: str, data: bytes | str) -> Path:
        path = self.folders.inbox / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def failed_reason(self, name: str) -> str:
        sidecar = json.loads((self.folders.failed / f"{name}.error.json").read_text())
        assert isinstance(sidecar["reason"], str)
        return sidecar["reason"]


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Dropbox]:
    async with Store.open(tmp_path / "state" / "db.sqlite3") as store:
        yield Dropbox(tmp_path, store)


async def test_a_good_file_is_moved_to_accepted_and_recorded(box: Dropbox) -> None:
    box.drop("sunset.json", '{"prompt": "a sunset", "num_generations": 2}')
    await box.inbox.scan()
    assert list(box.folders.inbox.iterdir()) == []
    (kept,) = box.folders.accepted.iterdir()
    assert kept.name.endswith("-sunset.json")
    assert kept.read_text() == '{"prompt": "a sunset", "num_generations": 2}'
    (job,) = await box.store.jobs()
    assert job.state is JobState.ACCEPTED and job.stem == "sunset"
    assert job.request == {"prompt": "a sunset", "num_generations": 2, "model": "m"}
    assert box.accepted == [job.job_id]


async def test_in_progress_and_hidden_names_are_left_alone(box: Dropbox) -> None:
    for name in (".hidden.json", "a.json.tmp", "b.part", "c.swp", "d.txt~"):
        box.drop(name, "{")
    await box.inbox.scan()
    assert len(list(box.folders.inbox.iterdir())) == 5
    assert await box.store.jobs() == []


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("broken.json", '{"prompt": ', "not valid JSON"),
        ("list.json", "[1]", "expected an object"),
        ("empty.txt", "\n", "empty prompt"),
        ("many.json", '{"prompt": "p", "num_generations": 9}', "num_generations"),
        ("binary.txt", b"\x89PNG\x00\x01", "not UTF-8"),
        ("huge.txt", b"x" * (1024 * 1024 + 1), "the limit is"),
        ("video.mp4", b"\x00\x00", "not a job file"),
    ],
)
async def test_a_bad_file_goes_to_failed_with_its_reason(
    box: Dropbox, name: str, data: bytes | str, reason: str
) -> None:
    original = box.drop(name, data).read_bytes()
    await box.inbox.scan()
    assert (box.folders.failed / name).read_bytes() == original
    assert reason in box.failed_reason(name)
    (job,) = await box.store.jobs()
    assert job.state is JobState.FAILED and job.error is not None and reason in job.error


async def test_special_files_are_refused_not_followed(box: Dropbox, tmp_path: Path) -> None:
    target = tmp_path / "secret.json"
    target.write_text('{"prompt": "should not be read through a link"}')
    (box.folders.inbox / "link.json").symlink_to(target)
    os.mkfifo(box.folders.inbox / "pipe.json")
    await box.inbox.scan()
    assert "symbolic link" in box.failed_reason("link.json")
    assert "FIFO" in box.failed_reason("pipe.json")
    assert (box.folders.failed / "link.json").is_symlink()
    assert target.exists(), "the link's target is never touched"
    assert box.accepted == []


async def test_a_folder_that_is_no_presets_is_left_alone_and_reported_once(box: Dropbox) -> None:
    (box.folders.inbox / "dir.json").mkdir()
    (box.folders.inbox / "dir.json" / "inner.txt").write_text("not taken")
    with capture_logs() as logs:
        await box.inbox.scan()
        await box.inbox.scan()
    assert (box.folders.inbox / "dir.json" / "inner.txt").read_text() == "not taken"
    assert await box.store.jobs() == []
    reports = [e for e in logs if e.get("folder") == "dir.json"]
    assert len(reports) == 1 and "no preset" in reports[0]["event"]


async def test_hostile_names_stay_inside_failed(box: Dropbox) -> None:
    box.drop("evil\nname\x1b.json", "{")
    await box.inbox.scan()
    names = sorted(p.name for p in box.folders.failed.iterdir())
    assert names == ["evil_name_.json", "evil_name_.json.error.json"]
    sidecar = json.loads((box.folders.failed / "evil_name_.json.error.json").read_text())
    assert sidecar["file"] == "evil\nname\x1b.json"


async def test_a_name_clash_in_failed_keeps_both_files(box: Dropbox) -> None:
    box.drop("bad.json", "{1")
    await box.inbox.scan()
    box.drop("bad.json", "{2")
    await box.inbox.scan()
    assert (box.folders.failed / "bad.json").read_text() == "{1"
    assert (box.folders.failed / "bad_2.json").read_text() == "{2"
    assert "not valid JSON" in box.failed_reason("bad_2.json")


async def test_a_reused_name_gets_its_own_output_stem(box: Dropbox) -> None:
    box.drop("cat.txt", "a cat")
    await box.inbox.scan()
    box.drop("cat.txt", "another cat")
    await box.inbox.scan()
    stems = [j.stem for j in await box.store.jobs()]
    assert stems == ["cat", "cat_2"]


async def test_a_file_still_being_written_is_left_to_settle(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "db.sqlite3") as store:
        box = Dropbox(tmp_path, store)
        accepted: list[str] = []

        async def on_accepted(job_id: str) -> None:
            accepted.append(job_id)

        inbox = Inbox(box.folders, store, routes="m", settle_s=60, on_accepted=on_accepted)
        path = box.drop("fresh.json", '{"prompt": ')
        assert await inbox.scan() is True
        assert path.exists() and accepted == []
        old = time.time() - 120
        path.write_text('{"prompt": "done now"}')
        os.utime(path, (old, old))
        assert await inbox.scan() is False
        assert len(accepted) == 1


def test_a_refusal_cut_short_by_a_crash_is_finished_at_start_up(tmp_path: Path) -> None:
    failed = tmp_path / "failed"
    failed.mkdir()
    # Killed after the move, before the reason was put in place:
    (failed / "moved.json").write_text("{")
    (failed / ".moved.json.error.pending").write_text('{"reason": "not valid JSON"}')
    # Killed before the move: the file is still in the inbox and will be judged again.
    (failed / ".unmoved.json.error.pending").write_text('{"reason": "x"}')
    finish_failed_moves(failed)
    assert sorted(p.name for p in failed.iterdir()) == ["moved.json", "moved.json.error.json"]
    assert json.loads((failed / "moved.json.error.json").read_text())["reason"] == (
        "not valid JSON"
    )


async def test_a_file_arriving_just_after_the_first_scan_is_not_missed(tmp_path: Path) -> None:
    """The gap between the start-up scan and the watch taking hold raises no event."""
    async with Store.open(tmp_path / "db.sqlite3") as store:
        box = Dropbox(tmp_path, store)

        class ArrivesDuringStartUp(Inbox):
            scans = 0

            async def scan(self) -> bool:
                unsettled = await super().scan()
                self.scans += 1
                if self.scans == 1:
                    box.drop("late.txt", "arrived in the gap")
                return unsettled

        accepted: list[str] = []

        async def on_accepted(job_id: str) -> None:
            accepted.append(job_id)

        inbox = ArrivesDuringStartUp(
            box.folders, store, routes="m", settle_s=0.0, on_accepted=on_accepted
        )
        stop = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: inbox.watch(stop, force_polling=False, rescan_interval_s=3600))
            with anyio.fail_after(10):
                while not accepted:  # noqa: ASYNC110 - the watcher works in its own thread
                    await anyio.sleep(0.02)
            stop.set()
        assert len(accepted) == 1


async def test_files_claimed_together_never_share_a_stem(box: Dropbox) -> None:
    # Six stems, each twice (.txt and .TXT), all claimed at the same time.
    spellings = ["same.txt", "SAME.txt", "Same.txt", "sAme.txt", "saMe.txt", "samE.txt"]
    spellings += [name.replace(".txt", ".TXT") for name in spellings]
    for name in spellings:
        box.drop(name, f"prompt for {name}")
    await box.inbox.scan()
    jobs = await box.store.jobs()
    assert all(j.state is JobState.ACCEPTED for j in jobs) and len(jobs) == 12
    stems = sorted(j.stem for j in jobs)
    assert len(set(stems)) == 12 and stems.count("same_2") == 1, stems


async def test_an_image_over_the_job_file_limit_is_read_under_its_own(box: Dropbox) -> None:
    image = PNG + b"\0" * (2 * 1024 * 1024)  # 2 MiB: over a job file's limit, not an image's
    box.drop("big.png", image)
    box.drop("still.json", '{"prompt": "p", "dropreel": {"image": "big.png"}}')
    await box.inbox.scan()
    (job,) = await box.store.jobs()
    assert job.state is JobState.ACCEPTED, job.error
