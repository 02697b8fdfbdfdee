"""Keeping the API key out of reach of everything the daemon starts or shows.

A key is checked when read: one line of printable ASCII, so no HTTP library can quote it back
in a header error. A hook gets an environment that neither holds the key nor names where it
lives. And the running daemon's own initial environment, which any process of the same user
can read at /proc/PID/environ, is rid of it by re-executing once with the key handed over on
an inherited pipe.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from dropreel.ops.redact import contains_secret

# Longer than any real key, and short enough to fit a pipe's buffer without a reader.
MAX_KEY_CHARS = 4096
# The pipe the key travels on across the re-exec, by file descriptor number.
HANDED_KEY_FD = "DROPREEL_HANDED_KEY_FD"
# systemd's LoadCredential= folder: it holds the key file.
_CREDENTIAL_VARIABLES = frozenset({"CREDENTIALS_DIRECTORY", HANDED_KEY_FD})
_PR_SET_DUMPABLE = 4


def key_problem(key: str) -> str | None:
    """Why `key` cannot be an API key (without quoting it), or None."""
    if not key:
        return "is empty"
    if len(key) > MAX_KEY_CHARS:
        return f"is longer than {MAX_KEY_CHARS} characters"
    lines = key.splitlines()
    if len(lines) > 1:
        return f"holds {len(lines)} lines; the key must be one line"
    for position, char in enumerate(key, start=1):
        if not char.isascii():
            return f"holds a non-ASCII character at position {position}"
        if not char.isprintable() or char.isspace():
            return f"holds a space or control character at position {position}"
    return None


@dataclass(frozen=True, slots=True)
class KeySources:
    """The key and where it came from: nothing here may reach a hook's environment."""

    key: str
    env_name: str
    file: Path | None = None

    def reveals(self, name: str, value: str) -> bool:
        """Whether this environment variable holds the key or says where to find it."""
        if name == self.env_name or name in _CREDENTIAL_VARIABLES:
            return True
        named = [self.key, str(self.file) if self.file is not None else ""]
        return contains_secret(value, named)

    def scrub(self, environ: Mapping[str, str]) -> dict[str, str]:
        """`environ` without any variable that reveals the key."""
        return {k: v for k, v in environ.items() if not self.reveals(k, v)}


def take_handed_key(environ: dict[str, str] | os._Environ[str]) -> str | None:
    """The key handed over by `reexec_without_key`, if this process was started that way."""
    fd_text = environ.pop(HANDED_KEY_FD, None)
    if fd_text is None:
        return None
    fd = int(fd_text)
    with os.fdopen(fd, "rb") as pipe:
        return pipe.read(MAX_KEY_CHARS + 1).decode("ascii")


def reexec_without_key(sources: KeySources, environ: Mapping[str, str]) -> NoReturn:
    """Start this same command again (same pid) with the key out of its environment."""
    reader, writer = os.pipe()
    os.write(writer, sources.key.encode("ascii"))
    os.close(writer)
    os.set_inheritable(reader, True)
    env = sources.scrub(environ)
    env[HANDED_KEY_FD] = str(reader)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)  # noqa: S606 - ourselves


def make_undumpable() -> None:
    """No core dump, and no other non-root process of this user may read our memory."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
