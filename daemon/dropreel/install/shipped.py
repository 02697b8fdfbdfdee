"""The files the wheel ships beside the code: the example config and the systemd unit.

The top-level `config.example.toml` and `systemd/dropreel.service` are the same files, kept
where a reader of the repository looks for them; a test holds the copies identical.
"""

from __future__ import annotations

from importlib import resources

EXAMPLE_CONFIG = "config.example.toml"
UNIT = "dropreel.service"


def shipped_text(name: str) -> str:
    """The text of a file shipped in this package."""
    return resources.files("dropreel.install").joinpath(name).read_text(encoding="utf-8")
