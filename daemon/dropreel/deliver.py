"""Delivery: stream a result into the outbox safely, and write a job's manifest."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import anyio
import httpx

from dropreel.errors import MalformedAnswer
from dropreel.files import link_no_clobber, same_content
from dropreel.lifecycle import HOOK_STATUS, RemoteStatus
from dropreel.naming import extension_for, manifest_name, media_name
from dropreel.provider import Provider
from dropreel.records import GenerationRow, JobRow

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

    def __init__(self, provider: Provider, outbox: Path) -> None:
        self._provider = provider
        self._outbox = outbox

    async def fetch(self, job: JobRow, generation: GenerationRow, count: int) -> Path:
        """Download one succeeded generation's result; return where it now lies."""
        if not generation.result_url:
            raise MalformedAnswer(f"generation {generation.generation_id} has no result URL")
        temp = self._outbox / temp_name(generation.generation_id)
        offset = temp.stat().st_size if temp.exists() else 0
        async with self._provider.open_download(generation.result_url, offset=offset) as response:
            if offset and response.status_code != 206:
                offset = 0  # the server ignored our Range: start over
            expected = _expected_length(response, offset)
            content_type = response.headers.get("content-type")
            sink = _Sink(temp, append=bool(offset))
            try:
                async for chunk in response.aiter_bytes(1 << 16):
                    await sink.add(chunk)
            except BaseException:
                # Keep every byte received: the next attempt resumes after them.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(sink.close)
                raise
        total = offset + sink.written
        extension = extension_for(generation.result_url, content_type)
        desired = media_name(job.stem, generation.idx, count, extension)

        def finish() -> Path:
            sink.close(durable=True)
            if expected is not None and total != expected:
                raise httpx.RemoteProtocolError(
                    f"download of {generation.generation_id} ended at {total} of {expected} bytes"
                )
            return link_no_clobber(
                temp, self._outbox, desired, is_ours=lambda existing: same_content(existing, temp)
            )

        # Small results take one trip to a worker thread: write, fsync, link into place.
        return await anyio.to_thread.run_sync(finish)


class _Sink:
    """A partial download's file, written off the event loop in as few thread trips as fit."""

    FLUSH_AT = 1 << 20

    def __init__(self, path: Path, *, append: bool) -> None:
        self._path = path
        self._mode = "ab" if append else "wb"
        self._handle: IO[bytes] | None = None
        self._buffer = bytearray()
        self.written = 0

    async def add(self, chunk: bytes) -> None:
        self._buffer += chunk
        self.written += len(chunk)
        if len(self._buffer) >= self.FLUSH_AT:
            await anyio.to_thread.run_sync(self._flush)

    def _flush(self) -> IO[bytes]:
        if self._handle is None:
            self._handle = self._path.open("ab" if self._mode == "ab" else "wb")
        self._handle.write(self._buffer)
        self._buffer.clear()
        return self._handle

    def close(self, *, durable: bool = False) -> None:
        try:
            handle = self._flush()
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


def _expected_length(response: httpx.Response, offset: int) -> int | None:
    if response.status_code == 206:
        content_range = response.headers.get("content-range", "")
        total = content_range.rpartition("/")[2]
        if total.isdigit():
            return int(total)
        length = response.headers.get("content-length")
        return offset + int(length) if length and length.isdigit() else None
    length = response.headers.get("content-length")
    if length and length.isdigit() and "content-encoding" not in response.headers:
        return int(length)
    return None


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
        "model": request.get("model"),
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
                "enqueued_at": iso(g.enqueued_at),
                "completed_at": iso(g.completed_at),
                "delivered_at": iso(g.delivered_at),
            }
            for g in generations
        ],
    }


def write_manifest(outbox: Path, job: JobRow, generations: Sequence[GenerationRow]) -> Path:
    """Write the manifest atomically; never replaces another job's manifest."""
    body = json.dumps(manifest(job, generations), indent=2, ensure_ascii=False) + "\n"
    temp = outbox / f".dropreel-{job.job_id}.result.tmp"
    with temp.open("w", encoding="utf-8") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())

    def ours(existing: Path) -> bool:
        try:
            return bool(json.loads(existing.read_text("utf-8")).get("job_id") == job.job_id)
        except (OSError, ValueError, AttributeError):
            return False

    # An earlier run may have written this manifest and crashed before recording it.
    return link_no_clobber(temp, outbox, manifest_name(job.stem), is_ours=ours)
