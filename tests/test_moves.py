"""Moves across filesystems: crash-safe at every step, and a daemon whose every folder is
its own mount (as the shipped systemd unit lays them out)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dropreel.fs.moves as files
from dropreel.fs.moves import (
    finish_failed_moves,
    move_durably,
    move_to_failed,
    settle_move,
    sweep_move_temps,
)
from dropreel_simulator.oxen import Simulator

from .daemon_harness import drop_job, run_daemon, settings_for
from .mounts import mounted, needs_root


class Interrupted(Exception):
    """Stands in for a kill at one step of a move."""


def stop_at(step: str) -> object:
    def interrupt(reached: str) -> None:
        if reached == step:
            raise Interrupted(step)

    return interrupt


@needs_root
@pytest.mark.parametrize("step", ["copied", "linked", "placed"])
def test_a_move_across_filesystems_cut_at_any_step_ends_with_exactly_one_copy(
    tmp_path: Path, step: str
) -> None:
    inbox, accepted = tmp_path / "inbox", tmp_path / "state"
    with mounted(inbox, accepted):
        source = inbox / "job.json"
        source.write_text('{"prompt": "p"}')
        target = accepted / "0001-job.json"
        with pytest.raises(Interrupted):
            move_durably(source, target, interrupt=stop_at(step))  # type: ignore[arg-type]
        # What the next start does:
        sweep_move_temps(accepted)
        assert settle_move(source, target)
        assert not source.exists()
        assert target.read_text() == '{"prompt": "p"}'
        assert sorted(p.name for p in accepted.iterdir()) == ["0001-job.json"]


@needs_root
def test_a_new_file_under_the_same_name_is_never_mistaken_for_the_moved_one(
    tmp_path: Path,
) -> None:
    inbox, accepted = tmp_path / "inbox", tmp_path / "state"
    with mounted(inbox, accepted):
        source, target = inbox / "job.json", accepted / "0001-job.json"
        source.write_text("first")
        with pytest.raises(Interrupted):
            move_durably(source, target, interrupt=stop_at("placed"))  # type: ignore[arg-type]
        source.unlink()
        source.write_text("second, dropped later under the same name")
        assert settle_move(source, target)
        assert source.read_text().startswith("second") and target.read_text() == "first"


@needs_root
@pytest.mark.parametrize("step", ["copied", "linked", "placed"])
def test_a_refusal_across_filesystems_cut_at_any_step_is_finished_at_start(
    tmp_path: Path, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, failed = tmp_path / "inbox", tmp_path / "failed"
    with mounted(inbox, failed):
        source = inbox / "bad.json"
        source.write_text("{")
        real = files.move_durably
        monkeypatch.setattr(
            files,
            "move_durably",
            lambda s, t: real(s, t, interrupt=stop_at(step)),  # type: ignore[arg-type]
        )
        with pytest.raises(Interrupted):
            move_to_failed(source, failed, "not valid JSON", original_name="bad.json")
        monkeypatch.undo()
        finish_failed_moves(failed)
        if step == "copied":
            # Never placed: the file is still in the inbox, to be judged again; no trace left.
            assert source.read_text() == "{"
            assert list(failed.iterdir()) == []
            return
        assert not source.exists()
        assert sorted(p.name for p in failed.iterdir()) == ["bad.json", "bad.json.error.json"]
        assert json.loads((failed / "bad.json.error.json").read_text())["reason"] == (
            "not valid JSON"
        )


@needs_root
async def test_a_daemon_with_every_folder_on_its_own_filesystem_takes_refuses_and_delivers(
    tmp_path: Path, simulator: Simulator
) -> None:
    points = {name: tmp_path / f"mount-{name}" for name in ("inbox", "outbox", "failed", "state")}
    with mounted(*points.values()):
        settings = settings_for(
            tmp_path, simulator, paths={k: str(v / k) for k, v in points.items()}
        )
        inbox = settings.inbox_dir
        drop_job(inbox, "good.txt", "a cat")
        drop_job(inbox, "bad.json", "{")
        await run_daemon(settings)
        assert sorted(p.name for p in settings.outbox_dir.iterdir()) == [
            "good.mp4",
            "good.result.json",
        ]
        assert sorted(p.name for p in settings.failed_dir.iterdir()) == [
            "bad.json",
            "bad.json.error.json",
        ]
        assert [p.name.split("-", 1)[1] for p in settings.accepted_dir.iterdir()] == ["good.txt"]
        assert list(inbox.iterdir()) == []
