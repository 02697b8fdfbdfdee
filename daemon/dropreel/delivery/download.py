"""Delivery: stream a result into the outbox safely, and write a job's manifest."""

from __future__ import annotations

import json
import math
import os
import re
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from dropreel.errors import ConnectionLost, MalformedAnswer, RangeNotSatisfiable, ReadStalled
from dropreel.fs.moves import link_no_clobber, same_content
from dropreel.fs.naming import extension_for, manifest_name, media_name, preset_of
from dropreel.lifecycle import HOOK_STATUS, RemoteStatus
from dropreel.providers.base import Provider, ResultStream
from dropreel.state.records import GenerationRow, JobRow

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def temp_name(generation_id: str) -> str:
    """A hidden partial-download name; generation ids come from the server, so cleaned."""
    return f".dropreel-{_UNSAFE_ID.sub('_', generation_id)[:80]}.part"


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


class Downloader:
    """Fetches results into the outbox: temp file, fsync, no-clobber link into place."""

    def __init__(
        self,
        provider: Provider,
        outbox: Path,
        *,
        min_bytes_per_s: float = 0.0,
        stall_window_s: float = 60.0,
    ) -> None:
        self._provider = provider
        self._outbox = outbox
        self._min_bytes_per_s = min_bytes_per_s
        self._stall_window_s = stall_window_s

    async def download(
        self, job: JobRow, generation: GenerationRow, count: int, *, within_s: float = math.inf
    ) -> Callable[[], Path]:
        """Fetch one succeeded generation's bytes within `within_s`; what then places them
        (blocking: it makes them durable, checks their length and links them into the outbox,
        whose own sync is left to the caller, so that one sync can cover several files)."""
        url = generation.result_url
        if not url:
            raise MalformedAnswer(f"generation {generation.generation_id} has no usable result URL")
        temp = self._outbox / temp_name(generation.generation_id)
        offset = _resumable_size(temp)
        finish: Callable[[], None] | None = None
        with anyio.fail_after(max(within_s, 0.001)):
            try:
                content_type, finish = await self._transfer(url, temp, offset)
            except RangeNotSatisfiable as refused:
                if refused.total is None or refused.total != offset:
                    temp.unlink(missing_ok=True)  # not the file the server has: start over
                    raise
                # A kill after the last byte, before the file was placed: it is complete.
                content_type = None
        extension = extension_for(url, content_type)
        desired = media_name(job.stem, generation.idx, count, extension)

        def place() -> Path:
            if finish is not None:
                finish()
            return link_no_clobber(
                temp,
                self._outbox,
                desired,
                is_ours=lambda existing: same_content(existing, temp),
                sync_folder=False,
            )

        return place

    async def _transfer(
        self, url: str, temp: Path, offset: int
    ) -> tuple[str | None, Callable[[], None]]:
        """Append the rest of the result to `temp`; the Content-Type, and what makes it
        durable and checks its length (blocking: run it off the event loop)."""
        async with self._provider.open_download(url, offset=offset) as response:
            if offset and response.status_code != 206:
                offset = 0  # the server ignored our Range: start over
            expected = _expected_length(response, offset)
            content_type: str | None = response.headers.get("content-type")
            sink = _Sink(temp, append=bool(offset))
            pace = _Pace(self._min_bytes_per_s, self._stall_window_s)
            try:
                # Raw: the bytes as served, never expanded by a Content-Encoding.
                async for chunk in response.chunks():
                    pace.add(len(chunk))
                    await sink.add(chunk)
            except BaseException:
                # Keep every byte received: the next attempt resumes after them.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(sink.close)
                raise
        total = offset + sink.written

        def finish() -> None:
            sink.close(durable=True)
            if expected is not None and total != expected:
                raise ConnectionLost("result download", f"ended at {total} of {expected} bytes")

        return content_type, finish


def _resumable_size(temp: Path) -> int:
    """Bytes already fetched into our partial file; anything else at its name is removed."""
    try:
        info = temp.lstat()
    except FileNotFoundError:
        return 0
    if stat.S_ISREG(info.st_mode):
        return info.st_size
    temp.unlink()  # a link or another thing planted at our name: never followed
    return 0


class DownloadStalled(ReadStalled):
    """The server sends, but too slowly to ever finish: cut, and resumed later."""


class _Pace:
    """Cuts a transfer whose rate over a whole window falls under a floor. No I/O."""

    def __init__(
        self,
        min_bytes_per_s: float,
        window_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._floor = min_bytes_per_s * window_s
        self._window_s = window_s
        self._monotonic = monotonic
        self._started = monotonic()
        self._bytes = 0

    def add(self, size: int) -> None:
        self._bytes += size
        now = self._monotonic()
        if now - self._started < self._window_s:
            return
        if self._bytes < self._floor:
            raise DownloadStalled(
                "result download",
                f"download too slow: {self._bytes} bytes in {now - self._started:.0f}s "
                f"(floor {self._floor / self._window_s:g} bytes/s)",
            )
        self._started, self._bytes = now, 0


class _Sink:
    """A partial download's file, written off the event loop in as few thread trips as fit."""

    FLUSH_AT = 1 << 20

    def __init__(self, path: Path, *, append: bool) -> None:
        self._path = path
        self._append = append
        self._fd: int | None = None
        self._buffer = bytearray()
        self.written = 0

    async def add(self, chunk: bytes) -> None:
        self._buffer += chunk
        self.written += len(chunk)
        if len(self._buffer) >= self.FLUSH_AT:
            await anyio.to_thread.run_sync(self._flush)

    def _open(self) -> int:
        # Never follow a link at our name, and never write into a file someone else made.
        nofollow = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        if self._append:
            return os.open(self._path, nofollow | os.O_APPEND)
        self._path.unlink(missing_ok=True)
        return os.open(self._path, nofollow | os.O_CREAT | os.O_EXCL, 0o644)

    def _flush(self) -> int:
        if self._fd is None:
            self._fd = self._open()
        with memoryview(self._buffer) as view:
            written = 0
            while written < len(view):
                written += os.write(self._fd, view[written:])
        self._buffer.clear()
        return self._fd

    def close(self, *, durable: bool = False) -> None:
        try:
            fd = self._flush()
            if durable:
                os.fsync(fd)
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _expected_length(response: ResultStream, offset: int) -> int | None:
    if response.status_code == 206:
        content_range = response.headers.get("content-range", "")
        total = content_range.rpartition("/")[2]
        if total.isdigit():
            return int(total)
        length = response.headers.get("content-length")
        return offset + int(length) if length and length.isdigit() else None
    length = response.headers.get("content-length")
    # Raw bytes are counted, so Content-Length holds whatever the Content-Encoding.
    return int(length) if length and length.isdigit() else None


def generation_outcome(generation: GenerationRow) -> str:
    """succeeded | failed | cancelled, as hooks and manifests report it."""
    if generation.remote_status is RemoteStatus.SUCCEEDED and not generation.output_path:
        return "failed"  # succeeded at the provider, but we could not deliver it
    return HOOK_STATUS.get(generation.remote_status, "failed")


def manifest(job: JobRow, generations: Sequence[GenerationRow]) -> dict[str, Any]:
    """The record of a finished job, as written to `<stem>.result.json`."""
    request: Mapping[str, Any] = job.request or {}
    return {
        "job_id": job.job_id,
        "source_file": job.source_name,
        "kept_at": job.kept_path,
        "request": dict(request),
        "provider": job.provider,
        "preset": preset_of(job.stem),
        "model": request.get("model"),
        "cost_usd": total_cost(generations),
        "created_at": iso(job.created_at),
        "submitted_at": iso(job.submitted_at),
        "generations": [
            {
                "index": g.idx,
                "generation_id": g.generation_id,
                "status": generation_outcome(g),
                "file": Path(g.output_path).name if g.output_path else None,
                "path": g.output_path,
                "error": g.error,
                "cost_usd": g.cost_usd,
                "cost_is_estimate": g.cost_is_estimate,
                "enqueued_at": iso(g.enqueued_at),
                "completed_at": iso(g.completed_at),
                "delivered_at": iso(g.delivered_at),
            }
            for g in generations
        ],
    }


def total_cost(generations: Sequence[GenerationRow]) -> float | None:
    """What the job's generations cost as far as the provider said; None if it said nothing."""
    known = [g.cost_usd for g in generations if g.cost_usd is not None]
    return round(sum(known), 6) if known else None


def write_manifest(
    outbox: Path, job: JobRow, generations: Sequence[GenerationRow], *, sync_folder: bool = True
) -> Path:
    """Write the manifest atomically; never replaces another job's manifest. Without
    `sync_folder`, the caller syncs the outbox (one sync for the result and its manifest)."""
    body = json.dumps(manifest(job, generations), indent=2, ensure_ascii=False) + "\n"
    temp = outbox / f".dropreel-{job.job_id}.result.tmp"
    temp.unlink(missing_ok=True)  # a leftover, or a link planted at our name: never followed
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(temp, flags, 0o644), "w", encoding="utf-8") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())

    def ours(existing: Path) -> bool:
        try:
            return bool(json.loads(existing.read_text("utf-8")).get("job_id") == job.job_id)
        except (OSError, ValueError, AttributeError):
            return False

    # An earlier run may have written this manifest and crashed before recording it.
    return link_no_clobber(
        temp, outbox, manifest_name(job.stem), is_ours=ours, sync_folder=sync_folder
    )
