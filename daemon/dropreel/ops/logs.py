"""Log set-up: JSON lines off a terminal, colour on one, native journald fields under systemd."""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from dropreel.ops.redact import redact, stored_text

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
# syslog priorities, as journald stores them.
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}
JOURNAL_SOCKET = "/run/systemd/journal/socket"
_FIELD_NAME = re.compile(r"[^A-Z0-9_]")


def under_journald(environ: Mapping[str, str], stream: TextIO) -> bool:
    """Whether `stream` is the journal connection systemd gave us (JOURNAL_STREAM=dev:inode)."""
    expected = environ.get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def journal_fields(event: MutableMapping[str, Any]) -> dict[str, str]:
    """An event as journal fields: MESSAGE and PRIORITY, and each key as an upper-case field."""
    level = str(event.pop("level", "info"))
    message = str(event.pop("event", ""))
    event.pop("timestamp", None)  # the journal stamps every entry itself
    fields = {"PRIORITY": str(_PRIORITY.get(level, 6)), "SYSLOG_IDENTIFIER": "dropreel"}
    rendered = [message]
    for key, value in event.items():
        name = _FIELD_NAME.sub("_", key.upper()).lstrip("_") or "FIELD"
        fields[name] = str(value)
        rendered.append(f"{key}={value}")
    fields["MESSAGE"] = " ".join(rendered)
    return fields


def encode_journal(fields: Mapping[str, str]) -> bytes:
    """journald's native protocol: KEY=value lines; values with newlines carry a length."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def mask_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Every value as text fit to log: the key masked wherever it hides, failure text bounded
    (a traceback is kept whole)."""
    for key, value in event.items():
        if key == "exception":
            event[key] = redact(str(value))
        elif isinstance(value, str | BaseException):
            event[key] = stored_text(str(value))
    return event


def _render_for_journal(_: Any, __: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    return {"fields": journal_fields(event)}


class JournalLogger:
    """Sends each entry to journald as one datagram; falls back to stderr if it cannot."""

    def __init__(self, address: str = JOURNAL_SOCKET, fallback: TextIO | None = None) -> None:
        self._address = address
        self._fallback = fallback or sys.stderr
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def msg(self, fields: Mapping[str, str]) -> None:
        try:
            self._socket.sendto(encode_journal(fields), self._address)
        except OSError:
            print(fields.get("MESSAGE", ""), file=self._fallback, flush=True)

    debug = info = warning = warn = error = critical = exception = log = msg

    def close(self) -> None:
        self._socket.close()


# The journal connection in use, closed when logging is configured anew.
_journal: JournalLogger | None = None


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    journal_socket: str = JOURNAL_SOCKET,
) -> None:
    """Configure structlog for the whole process; safe to call more than once."""
    global _journal
    out = stream or sys.stderr
    env = os.environ if environ is None else environ
    if _journal is not None:
        _journal.close()
        _journal = None
    if fmt == "journald" or (fmt == "auto" and under_journald(env, out)):
        journal = _journal = JournalLogger(journal_socket, fallback=out)
        final: structlog.types.Processor = _render_for_journal
        factory: Any = lambda *_: journal  # noqa: E731 - one shared logger
    else:
        use_console = fmt == "console" or (fmt == "auto" and out.isatty())
        final = (
            structlog.dev.ConsoleRenderer(colors=True)
            if use_console
            else structlog.processors.JSONRenderer()
        )
        factory = structlog.PrintLoggerFactory(file=out)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_secrets,
            final,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level.lower(), 20)),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library; keep their chatter out of our stream.
    logging.getLogger("httpx").setLevel(logging.WARNING)
