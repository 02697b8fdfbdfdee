"""`dropreel watch`: the jobs at work, live in a terminal until `q` or Ctrl-C; one plain
snapshot with `--once` or when the output is not a terminal. Reads the database read-only
and the daemon's live file; writes only its own short-lived note of what is on screen."""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import termios
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
from rich.console import Console
from rich.live import Live

from dropreel.cli.admin import daemon_words, database
from dropreel.cli.watch_screen import drawn, rows_that_fit
from dropreel.config import Settings
from dropreel.ops.board import jobs_on_watch
from dropreel.ops.live import LiveFacts, read_live
from dropreel.ops.watch_view import (
    Screen,
    WatchRow,
    plain_screen,
    screen,
    typical_durations,
    watch_rows,
    watched_ids,
)
from dropreel.ops.watching import NOTE_TTL_S, WATCHING_DIR, WatchNote, leave_note, remove_note

# Finished jobs stay on watch this long.
RECENT_S = 600.0
REFRESH_S = 1.0
EVENTS = 5


@dataclass(frozen=True, slots=True)
class Look:
    """What the database, the lock and the live file say now."""

    at: float
    rows: list[WatchRow]
    live: LiveFacts | None
    daemon: str | None
    events: list[tuple[float, str, str, str | None]]

    def screen(self, rows: list[WatchRow] | None = None, note: str | None = None) -> Screen:
        return screen(
            self.rows if rows is None else rows,
            self.live,
            self.daemon,
            self.events,
            now=self.at,
            note=note,
        )


async def look(settings: Settings) -> Look:
    now = time.time()
    async with database(settings) as store:
        jobs = await jobs_on_watch(store, finished_since=now - RECENT_S)
        typical = typical_durations(await store.recent_durations())
        events = await store.latest_history(EVENTS)
    live = await anyio.to_thread.run_sync(read_live, settings.state_dir)
    rows = watch_rows(jobs, typical, now=now)
    return Look(now, rows, live, daemon_words(settings), events)


def run_watch(settings: Settings, *, once: bool) -> int:
    if once:
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        print(anyio.run(watch_once, settings, width))
    else:
        anyio.run(watch_live, settings)
    return 0


async def watch_once(settings: Settings, width: int | None) -> str:
    """One plain snapshot."""
    return plain_screen((await look(settings)).screen(), width)


async def watch_live(settings: Settings) -> None:
    """Redraw about once a second until `q`, Ctrl-C or SIGTERM; the terminal is left as it
    was found."""
    console = Console()
    stop = anyio.Event()
    try:
        with (
            _keys_one_at_a_time() as keys,
            Live(console=console, screen=True, auto_refresh=False) as live,
        ):
            async with anyio.create_task_group() as group:
                group.start_soon(_stop_on_signals, stop)
                if keys is not None:
                    group.start_soon(_stop_on_q, keys, stop)
                while not stop.is_set():
                    now = await look(settings)
                    whole = now.screen()
                    room = rows_that_fit(console.size.height, len(whole.streams), len(whole.events))
                    on_screen = now.rows[:room]
                    noted = await anyio.to_thread.run_sync(
                        leave_note,
                        settings.state_dir,
                        WatchNote(tuple(watched_ids(on_screen)), time.time() + NOTE_TTL_S),
                    )
                    note = None if noted else _read_only_note(settings)
                    view = now.screen(on_screen, note)
                    live.update(drawn(view, hidden=len(now.rows) - len(on_screen)), refresh=True)
                    with anyio.move_on_after(REFRESH_S):
                        await stop.wait()
                group.cancel_scope.cancel()
    finally:
        remove_note(settings.state_dir)


def _read_only_note(settings: Settings) -> str:
    return (
        f"progress as last recorded: this user cannot write {settings.state_dir / WATCHING_DIR}"
        " to ask for fresher"
    )


async def _stop_on_signals(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop.set()
            return


async def _stop_on_q(fd: int, stop: anyio.Event) -> None:
    while not stop.is_set():
        key = await anyio.to_thread.run_sync(_key_within, fd, 0.2)
        if key in ("q", "Q"):
            stop.set()


def _key_within(fd: int, timeout_s: float) -> str | None:
    ready, _, _ = select.select([fd], [], [], timeout_s)
    return os.read(fd, 1).decode("ascii", "replace") if ready else None


@contextmanager
def _keys_one_at_a_time() -> Iterator[int | None]:
    """The terminal's input, each key as it is pressed and not echoed (Ctrl-C still
    interrupts); None if the input is not a terminal. Restored however we leave."""
    fd = sys.stdin.fileno()
    if not os.isatty(fd):
        yield None
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
