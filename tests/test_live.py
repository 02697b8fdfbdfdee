"""What the daemon and `dropreel watch` tell each other through the state folder: the
daemon's live facts (replaced whole at each heartbeat) and the watchers' notes of what is on
their screens (until they expire)."""

from __future__ import annotations

from pathlib import Path

from dropreel.ops.live import LiveFacts, ProviderFacts, parse_live, publish_live, read_live
from dropreel.ops.watching import (
    WatchNote,
    leave_note,
    note_text,
    parse_note,
    read_watched,
    remove_note,
    still_watched,
)

NOW = 1_800_000_000.0


def test_the_live_file_is_replaced_whole_and_read_back(tmp_path: Path) -> None:
    assert read_live(tmp_path) is None
    facts = LiveFacts(
        pid=7,
        written_at=NOW,
        heartbeat_s=2.0,
        providers={"oxen": ProviderFacts(streams=True, up=False, since=NOW, poll_interval_s=5.0)},
        waiting=3,
    )
    publish_live(tmp_path, facts)
    assert read_live(tmp_path) == facts
    assert [p.name for p in tmp_path.iterdir()] == ["live.json"]
    for garbage in ("", "[]", '{"pid": 1}', '{"providers": {"x": 1}}'):
        assert parse_live(garbage) is None


def test_watchers_notes_name_what_is_on_screen_until_they_expire(tmp_path: Path) -> None:
    note = WatchNote(("v1", "v2"), until=NOW + 10)
    assert parse_note(note_text(note)) == note
    for garbage in (
        "",
        "{}",
        '{"generations": [1], "until": 1}',
        '{"generations": [], "until": true}',
    ):
        assert parse_note(garbage) is None
    assert still_watched([note, WatchNote(("v3",), until=NOW - 1)], NOW) == {"v1", "v2"}

    assert read_watched(tmp_path, NOW) == set()
    assert leave_note(tmp_path, note, name="a.json")
    assert leave_note(tmp_path, WatchNote(("v3",), until=NOW - 1), name="b.json")
    assert read_watched(tmp_path, NOW) == {"v1", "v2"}
    assert sorted(p.name for p in (tmp_path / "watching").iterdir()) == ["a.json"], "expired"
    remove_note(tmp_path, name="a.json")
    assert read_watched(tmp_path, NOW) == set()


def test_a_watcher_that_may_not_write_the_state_folder_leaves_no_note(tmp_path: Path) -> None:
    # A file where the folder would be: nothing can be written under it, whoever we are.
    (tmp_path / "watching").write_text("")
    assert not leave_note(tmp_path, WatchNote(("v1",), until=NOW + 10))
