"""Who watches what: `dropreel watch` leaves a short-lived note in the state folder naming
the generations it has on screen, and the daemon asks for fresher progress of those alone.

A watcher that may not write the state folder (a member of the service's group) leaves no
note, and sees progress as the daemon last recorded it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

WATCHING_DIR = "watching"
# A note outlives its watcher by this much at most: a killed watch stops costing requests.
NOTE_TTL_S = 10.0


@dataclass(frozen=True, slots=True)
class WatchNote:
    generations: tuple[str, ...]
    until: float


def note_text(note: WatchNote) -> str:
    return json.dumps({"generations": list(note.generations), "until": note.until})


def parse_note(text: str) -> WatchNote | None:
    """The note in `text`; None if it is not one."""
    try:
        raw = json.loads(text)
        ids = raw["generations"]
        until = raw["until"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return None
    if isinstance(until, bool) or not isinstance(until, int | float):
        return None
    return WatchNote(tuple(ids), float(until))


def still_watched(notes: Iterable[WatchNote], now: float) -> set[str]:
    """The generations some note names that has not expired."""
    return {g for note in notes if note.until >= now for g in note.generations}


def leave_note(state_dir: Path, note: WatchNote, *, name: str | None = None) -> bool:
    """Write this watcher's note (replacing its last); False if this user may not."""
    folder = state_dir / WATCHING_DIR
    mine = name or f"{os.getpid()}.json"
    aside = folder / f".{mine}.tmp"
    try:
        folder.mkdir(exist_ok=True)
        aside.write_text(note_text(note), encoding="utf-8")
        aside.replace(folder / mine)
    except OSError:
        return False
    return True


def remove_note(state_dir: Path, *, name: str | None = None) -> None:
    try:
        (state_dir / WATCHING_DIR / (name or f"{os.getpid()}.json")).unlink()
    except OSError:
        pass


def read_watched(state_dir: Path, now: float) -> set[str]:
    """Every generation a watcher has on screen now; expired notes are removed where this
    user may (a watcher that was killed leaves its note behind)."""
    folder = state_dir / WATCHING_DIR
    try:
        paths = [p for p in folder.iterdir() if p.suffix == ".json" and p.name[0] != "."]
    except OSError:
        return set()
    notes = []
    for path in paths:
        try:
            note = parse_note(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        if note is not None and note.until < now:
            try:
                path.unlink()
            except OSError:
                pass
        elif note is not None:
            notes.append(note)
    return still_watched(notes, now)
