"""`dropreel watch`'s screen drawn with rich: the same Screen the plain text shows, with
real progress bars and colour. Every cell is a Text, so nothing a job file names is ever
read as markup."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from dropreel.ops.report import terminal_safe
from dropreel.ops.standing import Standing
from dropreel.ops.watch_view import BAR_WIDTH, HEADER, Screen, WatchRow

# Where a person should look first stands out.
_STYLES = {
    Standing.PARKED: "bold red",
    Standing.BLOCKED: "bold red",
    Standing.HOOK_GAVE_UP: "red",
    Standing.FAILED: "red",
    Standing.THROTTLED: "yellow",
    Standing.WAITING: "cyan",
    Standing.DELIVERING: "cyan",
    Standing.PARTLY_DELIVERED: "yellow",
    Standing.DELIVERED: "green",
    Standing.CANCELLED: "dim",
}
# Lines around the jobs table: title, two headings and the table's, summary, footer.
_FRAME_LINES = 6


def rows_that_fit(screen_height: int, streams: int, events: int) -> int:
    """How many one-line job rows fit under the streams and above the events."""
    return max(1, screen_height - _FRAME_LINES - streams - events - 1)


def drawn(screen: Screen, *, hidden: int = 0, footer: str = "q or Ctrl-C quits") -> RenderableType:
    """The screen as rich renders it; `hidden` jobs did not fit."""
    streams = Table.grid(padding=(0, 2))
    for name, text in screen.streams:
        streams.add_row(Text(name, style="bold"), _text(text))
    jobs = Table(box=None, padding=(0, 1), expand=True, header_style="bold")
    for heading in HEADER:
        wide = heading == "REASON"
        jobs.add_column(heading, no_wrap=not wide, ratio=1 if wide else None, overflow="fold")
    for row in screen.rows:
        jobs.add_row(
            _text(row.short_id),
            Text(row.state.value, style=_STYLES[row.state]),
            _progress(row),
            _text(row.name),
            _text(row.reason),
        )
    more = [Text(f"... and {hidden} more", style="dim")] if hidden else []
    events = Table.grid(padding=(0, 2))
    for at, name, what in screen.events:
        events.add_row(_text(at), _text(name), _text(what))
    return Group(
        Text(screen.title, style="bold"),
        streams,
        jobs if screen.rows else Text("no jobs on watch", style="dim"),
        *more,
        Text("last events", style="bold"),
        events if screen.events else Text("none yet", style="dim"),
        _text(screen.summary),
        Text(footer, style="dim"),
    )


def _progress(row: WatchRow) -> RenderableType:
    if row.percent is None:
        return _text(row.timing)
    cell = Table.grid(padding=(0, 1))
    cell.add_row(
        ProgressBar(total=100, completed=row.percent, width=BAR_WIDTH), Text(f"{row.percent:>3}%")
    )
    return cell


def _text(value: str) -> Text:
    return Text(terminal_safe(value))
