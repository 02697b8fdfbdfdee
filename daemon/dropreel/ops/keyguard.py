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

# Longer than any real key; a few keys together still fit a pipe's buffer without a reader.
MAX_KEY_CHARS = 4096
_MAX_HANDED_BYTES = 60_000
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
    """Every provider's key and where each came from: none may reach a hook's environment."""

    keys: tuple[str, ...]
    env_names: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()

    def reveals(self, name: str, value: str) -> bool:
        """Whether this environment variable holds a key or says where to find one."""
        if name in self.env_names or name in _CREDENTIAL_VARIABLES:
            return True
        return contains_secret(value, [*self.keys, *(str(f) for f in self.files)])

    def scrub(self, environ: Mapping[str, str]) -> dict[str, str]:
        """`environ` without any variable that reveals the key."""
        return {k: v for k, v in environ.items() if not self.reveals(k, v)}


def take_handed_keys(environ: dict[str, str] | os._Environ[str]) -> dict[str, str] | None:
    """The keys (by provider) handed over by `reexec_without_keys`, if this process was
    started that way."""
    fd_text = environ.pop(HANDED_KEY_FD, None)
    if fd_text is None:
        return None
    fd = int(fd_text)
    with os.fdopen(fd, "rb") as pipe:
        text = pipe.read(_MAX_HANDED_BYTES).decode("ascii")
    # A key holds no space (see key_problem): "name key" per line cannot be misread.
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def reexec_without_keys(
    keys: Mapping[str, str], sources: KeySources, environ: Mapping[str, str]
) -> NoReturn:
    """Start this same command again (same pid) with the keys out of its environment."""
    reader, writer = os.pipe()
    os.write(writer, "".join(f"{name} {key}\n" for name, key in keys.items()).encode("ascii"))
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
