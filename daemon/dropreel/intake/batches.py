"""Batch files: `*.jsonl` (one request object a line) and `*.csv` (a header row, then one
request a row) make one job each line or row; a bad one is refused alone."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dropreel.errors import JobFileRejected
from dropreel.fs.moves import place_in_failed
from dropreel.fs.naming import printable
from dropreel.intake.jobs import (
    OPTIONS_KEY,
    JobRequest,
    Routes,
    job_text,
    object_from_text,
    request_from_body,
)
from dropreel.intake.presets import Preset
from dropreel.state.records import JobRow

BATCH_SUFFIXES = (".jsonl", ".csv")
MAX_BATCH_FILE_BYTES = 16 * 1024 * 1024
MAX_BATCH_ROWS = 10_000
# A row's job names its batch and its number, as `shots.csv:7`.
_ROW_SOURCE = re.compile(r"(?s)(.*\.(?:jsonl|csv)):([0-9]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One line (JSONL) or row (CSV) of a batch: its request, or why it has none."""

    number: int
    # The row as it was written (a CSV row with its header), to keep beside a refusal.
    text: str
    request: JobRequest | None = None
    problem: str | None = None
    # Why its request could not be checked against its model's schema, if it could not.
    unchecked: str | None = None
    # "line 7" (JSONL) or "row 7" (CSV): how a reason names it.
    where: str = ""


def is_batch_name(name: str) -> bool:
    return name.lower().endswith(BATCH_SUFFIXES)


def row_source(batch: str, number: int) -> str:
    """How a row's job names where it came from: `shots.csv:7`."""
    return f"{batch}:{number}"


def batch_of(source_name: str) -> tuple[str, int] | None:
    """(batch, row number) if a job came from a batch's row, else None."""
    found = _ROW_SOURCE.fullmatch(source_name)
    return (found.group(1), int(found.group(2))) if found else None


def refused_row(failed: Path, job: JobRow, reason: str) -> Path:
    """A batch row's job refused after it was taken: its request kept in failed/ as a job
    file of its own (`<stem>.json`), with the reason beside it."""
    body = {**(job.request or {}), OPTIONS_KEY: {"provider": job.provider}}
    content = json.dumps(body, ensure_ascii=False, indent=2) + "\n"
    return place_in_failed(
        failed,
        printable(job.stem) + ".json",
        content.encode("utf-8", "surrogateescape"),
        reason,
        original_name=job.source_name,
    )


def row_stem(stem: str, number: int, last: int) -> str:
    """`<stem>-<row>`, zero-padded so the rows of a batch sort in order."""
    return f"{stem}-{number:0{len(str(last))}d}"


def parse_batch(
    name: str, data: bytes, routes: Routes, preset: Preset | None = None
) -> list[BatchRow]:
    """Each row of a batch file; JobFileRejected if the file as a whole cannot be read."""
    text = job_text(name, data, MAX_BATCH_FILE_BYTES)
    rows = _csv_rows(name, text) if name.lower().endswith(".csv") else _jsonl_rows(text)
    if not rows:
        raise JobFileRejected(name, "no rows: a batch needs one request a line (or a row)")
    if len(rows) > MAX_BATCH_ROWS:
        raise JobFileRejected(
            name, f"{len(rows)} rows; a batch may hold {MAX_BATCH_ROWS}: split it"
        )
    return [_request_of(name, row, routes, preset) for row in rows]


def _request_of(
    name: str, row: tuple[int, str, dict[str, Any] | str], routes: Routes, preset: Preset | None
) -> BatchRow:
    number, text, value = row
    where = f"{'line' if name.lower().endswith('.jsonl') else 'row'} {number}"
    if isinstance(value, str):
        return BatchRow(number, text, problem=f"{where}: {value}", where=where)
    options = value.get(OPTIONS_KEY)
    if isinstance(options, dict) and "image" in options:
        problem = f"{where}: images are for job files, not batch rows"
        return BatchRow(number, text, problem=problem, where=where)
    try:
        request = request_from_body(name, value, routes, preset)
    except JobFileRejected as exc:
        return BatchRow(number, text, problem=f"{where}: {exc.reason}", where=where)
    return BatchRow(number, text, request, where=where)


def _jsonl_rows(text: str) -> list[tuple[int, str, dict[str, Any] | str]]:
    rows: list[tuple[int, str, dict[str, Any] | str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, line, object_from_text("", line, "json")))
        except JobFileRejected as exc:
            rows.append((number, line, exc.reason))
    return rows


def _csv_rows(name: str, text: str) -> list[tuple[int, str, dict[str, Any] | str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise JobFileRejected(name, f"not valid CSV: {exc}") from None
    columns = [c.strip() for c in header or []]
    if "prompt" not in columns:
        raise JobFileRejected(name, "the header row has no `prompt` column")
    if len(set(columns)) != len(columns) or "" in columns:
        raise JobFileRejected(name, "the header row names a column twice, or one not at all")
    head_line = _csv_line(header or [])
    rows: list[tuple[int, str, dict[str, Any] | str]] = []
    number = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return rows
        except csv.Error as exc:
            raise JobFileRejected(name, f"not valid CSV at line {reader.line_num}: {exc}") from None
        if not any(c.strip() for c in cells):
            continue
        number += 1
        rows.append((number, head_line + _csv_line(cells), _csv_object(columns, cells)))


def _csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


def _csv_object(columns: list[str], cells: list[str]) -> dict[str, Any] | str:
    """A row's request: its non-empty cells as text, `dropreel.*` cells as options, and
    `num_generations` as a number."""
    if len(cells) > len(columns):
        return f"{len(cells)} cells, but the header names {len(columns)} columns"
    body: dict[str, Any] = {}
    for column, cell in zip(columns, cells, strict=False):
        if not cell.strip():
            continue
        if column.startswith(f"{OPTIONS_KEY}."):
            body.setdefault(OPTIONS_KEY, {})[column.removeprefix(f"{OPTIONS_KEY}.")] = cell
        elif column == "num_generations":
            if not cell.strip().isdigit():
                return f"num_generations must be a whole number 1-4, got {cell!r}"
            body[column] = int(cell)
        else:
            body[column] = cell
    return body
