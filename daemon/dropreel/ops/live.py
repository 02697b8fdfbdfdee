"""The daemon's live facts, for `dropreel watch`: what only the running daemon knows (is each
provider's stream up, since when), published at every heartbeat as a small JSON file in the
state folder. Replaced whole, never edited in place, so a reader sees one version or the
next; readable by whoever may read the database (a member of the service's group)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

LIVE_NAME = "live.json"


@dataclass(frozen=True, slots=True)
class ProviderFacts:
    """How the daemon learns of one provider's completions, as of now."""

    # A push stream (Oxen); without one the provider is polled.
    streams: bool
    # Whether the stream is up (always False without one).
    up: bool
    # Since when the stream has been up or down (or polling, without a stream).
    since: float
    poll_interval_s: float
    # Look-ups made to learn progress of generations someone watches.
    progress_asks: int = 0


@dataclass(frozen=True, slots=True)
class LiveFacts:
    pid: int
    written_at: float
    heartbeat_s: float
    providers: Mapping[str, ProviderFacts] = field(default_factory=dict)
    waiting: int = 0
    downloading: int = 0
    hooking: int = 0

    def fresh(self, now: float) -> bool:
        """Written recently enough to be the daemon's word now: a few heartbeats."""
        return now - self.written_at <= max(3 * self.heartbeat_s, 10.0)


def live_text(facts: LiveFacts) -> str:
    return json.dumps(asdict(facts), sort_keys=True)


def parse_live(text: str) -> LiveFacts | None:
    """The facts in `text`; None if it is not a file this dropreel wrote."""
    try:
        raw = json.loads(text)
        providers = {
            str(name): ProviderFacts(**facts) for name, facts in dict(raw.pop("providers")).items()
        }
        return LiveFacts(providers=providers, **raw)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def publish_live(state_dir: Path, facts: LiveFacts) -> None:
    """Replace the live file with `facts`: written aside, then renamed over it."""
    aside = state_dir / f".{LIVE_NAME}.{os.getpid()}.tmp"
    # 0644 less the umask, like the database itself: who may read one may read the other.
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(live_text(facts))
    aside.replace(state_dir / LIVE_NAME)


def read_live(state_dir: Path) -> LiveFacts | None:
    """The last facts published; None if there are none or they cannot be read."""
    try:
        text = (state_dir / LIVE_NAME).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return parse_live(text)
