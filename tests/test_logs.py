from __future__ import annotations

import io
import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from dropreel.ops.logs import configure_logging, encode_journal, journal_fields, under_journald


def decode_journal(data: bytes) -> dict[str, str]:
    """journald's native protocol, read back."""
    fields: dict[str, str] = {}
    while data:
        line, _, rest = data.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            data = rest
        else:
            (size,) = struct.unpack("<Q", rest[:8])
            fields[line.decode()] = rest[8 : 8 + size].decode()
            data = rest[8 + size + 1 :]
    return fields


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    configure_logging("info", "json", io.StringIO())


def test_an_event_becomes_journal_fields() -> None:
    fields = journal_fields(
        {
            "event": "job completed",
            "level": "warning",
            "timestamp": "t",
            "job_id": "j1",
            "generation-id": "g1",
            "duration_s": 1.5,
        }
    )
    assert fields == {
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "dropreel",
        "JOB_ID": "j1",
        "GENERATION_ID": "g1",
        "DURATION_S": "1.5",
        "MESSAGE": "job completed job_id=j1 generation-id=g1 duration_s=1.5",
    }


def test_values_with_newlines_carry_their_length() -> None:
    encoded = encode_journal({"MESSAGE": "one\ntwo", "PRIORITY": "6"})
    assert encoded == b"MESSAGE\n" + struct.pack("<Q", 7) + b"one\ntwo\nPRIORITY=6\n"
    assert decode_journal(encoded) == {"MESSAGE": "one\ntwo", "PRIORITY": "6"}


def test_journald_is_recognised_by_the_stream_systemd_gave_us(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as stream:
        info = (tmp_path / "stream").stat()
        assert under_journald({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}, stream)
        assert not under_journald({"JOURNAL_STREAM": "1:2"}, stream)
        assert not under_journald({}, stream)


def test_under_systemd_lines_reach_the_journal_with_their_fields(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal:
        journal.bind(path)
        journal.settimeout(5)
        configure_logging("info", "journald", journal_socket=path)
        structlog.get_logger("t").bind(job_id="j1").error("hook gave up", error="exit 3\nboom")
        fields = decode_journal(journal.recv(65536))
    assert fields["PRIORITY"] == "3"
    assert fields["JOB_ID"] == "j1"
    assert fields["ERROR"] == "exit 3\nboom"
    assert fields["MESSAGE"].startswith("hook gave up job_id=j1")


def test_off_a_terminal_each_line_is_json_with_its_context() -> None:
    out = io.StringIO()
    configure_logging("info", "auto", out)
    log = structlog.get_logger("t").bind(job_id="j1", generation_id="g1")
    log.info("delivered", path="/out/a.mp4")
    log.debug("not shown at info")
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["event"] == "delivered" and record["level"] == "info"
    assert (record["job_id"], record["generation_id"]) == ("j1", "g1")
