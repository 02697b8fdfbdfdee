"""Claiming: a judged file recorded as jobs, then moved out of the inbox (a crash at any point
leaves it recoverable), or refused into failed/ with its reason."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from dropreel.fs.moves import move_durably, move_to_failed, place_in_failed
from dropreel.fs.naming import (
    displayable,
    manifest_name,
    numbered_stem,
    preset_stem,
    printable,
    safe_stem,
)
from dropreel.intake.batches import BatchRow, row_source, row_stem
from dropreel.intake.jobs import JobRequest
from dropreel.intake.presets import Preset
from dropreel.lifecycle import JobState
from dropreel.state.records import Claim, Rejected
from dropreel.state.store import Store

log = structlog.get_logger("dropreel.inbox")


def new_job_id() -> str:
    """Sortable by creation time, unique without coordination."""
    return f"{time.time_ns() // 1_000_000:011x}{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class InboxFolders:
    inbox: Path
    accepted: Path
    failed: Path
    outbox: Path


class Claims:
    """Records judged files as jobs and keeps them, or refuses them; counts both."""

    def __init__(
        self,
        folders: InboxFolders,
        store: Store,
        on_accepted: Callable[[str], Awaitable[None]],
    ) -> None:
        self._folders = folders
        self._store = store
        self._on_accepted = on_accepted
        self._reserved_stems: set[str] = set()
        self.accepted_count = 0
        self.rejected_count = 0

    async def accept_batch(self, path: Path, rows: list[BatchRow], preset: Preset | None) -> None:
        """Record every row at once (a crash keeps all or none), keep the batch file, then
        accept each good row as a job of its own; each bad row goes to failed/ alone."""
        shown = displayable(str(path.relative_to(self._folders.inbox)))
        kept = self._folders.accepted / f"{new_job_id()}-{printable(path.name)}"
        base, last = safe_stem(path.name), rows[-1].number
        folder = preset.name if preset else None
        claims: list[Claim] = []
        refused: list[Rejected] = []
        try:
            for row in rows:
                stem = preset_stem(folder, row_stem(base, row.number, last))
                source = row_source(shown, row.number)
                if row.request is None:
                    refused.append(await self._refused_row(path, row, stem, source))
                    continue
                request = row.request
                claims.append(
                    Claim(
                        new_job_id(),
                        source,
                        displayable(str(path)),
                        str(kept),
                        await self._free_stem(stem),
                        dict(request.body),
                        request.provider,
                    )
                )
            await self._store.begin_batch_claim(claims, refused)
        finally:
            self._reserved_stems.difference_update(c.stem for c in claims)
        self.rejected_count += len(refused)
        try:
            await anyio.to_thread.run_sync(move_durably, path, kept)
        except OSError as exc:
            # The file stays in the inbox and is judged again at the next scan.
            for claim in claims:
                reason = f"could not move the batch out of the inbox: {exc}"
                await self._store.set_job_state(claim.job_id, JobState.FAILED, error=reason)
            log.error("cannot claim a batch file", file=shown, error=str(exc))
            return
        await self._store.accept_claimed([c.job_id for c in claims])
        self.accepted_count += len(claims)
        log.info("batch accepted", file=shown, jobs=len(claims), refused=len(refused))
        for claim, row in zip(claims, (r for r in rows if r.request is not None), strict=True):
            self._log_accepted(claim.job_id, claim.source_name, claim.stem, row.unchecked)
            await self._on_accepted(claim.job_id)

    async def _refused_row(self, path: Path, row: BatchRow, stem: str, source: str) -> Rejected:
        """A batch's bad row: kept in failed/ as a file of its own, with its reason."""
        reason = row.problem or "refused"
        kept_name = printable(stem) + path.suffix.lower()
        try:
            placed: str | None = str(
                await anyio.to_thread.run_sync(
                    lambda: place_in_failed(
                        self._folders.failed,
                        kept_name,
                        row.text.encode("utf-8", "surrogateescape"),
                        reason,
                        original_name=source,
                    )
                )
            )
        except OSError as exc:
            placed = None
            log.error("cannot keep a refused row in failed/", file=source, error=str(exc))
        log.warning("batch row rejected", file=source, reason=reason)
        return Rejected(new_job_id(), source, displayable(str(path)), placed, stem, reason)

    async def accept(
        self, path: Path, request: JobRequest, unchecked: str | None, preset: Preset | None
    ) -> None:
        job_id = new_job_id()
        shown = displayable(str(path.relative_to(self._folders.inbox)))
        # A preset's jobs deliver into its own folder of the outbox.
        stem = await self._free_stem(
            preset_stem(preset.name if preset else None, safe_stem(path.name))
        )
        kept = self._folders.accepted / f"{job_id}-{printable(path.name)}"
        image = path.parent / request.image if request.image else None
        kept_image = self._folders.accepted / f"{job_id}-{printable(image.name)}" if image else None
        try:
            await self._store.begin_claim(
                job_id=job_id,
                source_name=shown,
                source_path=displayable(str(path)),
                kept_path=str(kept),
                stem=stem,
                request=dict(request.body),
                provider=request.provider,
                image_source=str(image) if image else None,
                image_path=str(kept_image) if kept_image else None,
            )
        finally:
            self._reserved_stems.discard(stem)
        try:
            await anyio.to_thread.run_sync(move_durably, path, kept)
        except OSError as exc:
            # The file stays in the inbox and is judged again at the next scan.
            await self._store.set_job_state(
                job_id, JobState.FAILED, error=f"could not move the file out of the inbox: {exc}"
            )
            log.error("cannot claim a job file", file=shown, error=str(exc))
            return
        if image is not None and kept_image is not None:
            try:
                # The image goes with the job that names it, and is kept beside its file.
                await anyio.to_thread.run_sync(move_durably, image, kept_image)
            except OSError as exc:
                reason = f"could not move its image {image.name} out of the inbox: {exc}"
                await self._store.set_job_state(job_id, JobState.FAILED, error=reason)
                log.error("cannot claim a job's image", file=shown, error=str(exc))
                return
        await self._store.set_job_state(job_id, JobState.ACCEPTED)
        self.accepted_count += 1
        self._log_accepted(job_id, shown, stem, unchecked)
        await self._on_accepted(job_id)

    @staticmethod
    def _log_accepted(job_id: str, shown: str, stem: str, unchecked: str | None) -> None:
        if unchecked is None:
            log.info("job accepted", job_id=job_id, file=shown, stem=stem)
        else:
            log.warning(
                "job accepted without checking it against its model's schema",
                job_id=job_id,
                file=shown,
                stem=stem,
                not_validated=unchecked,
            )

    async def _free_stem(self, stem: str) -> str:
        """A stem no job and no manifest has; reserved until its claim is recorded, as files
        are claimed several at once."""
        n = 1
        while True:
            candidate = numbered_stem(stem, n)
            manifest = self._folders.outbox / manifest_name(candidate)
            if (
                candidate not in self._reserved_stems
                and not manifest.exists()
                and not await self._store.stem_taken(candidate)
                and candidate not in self._reserved_stems
            ):
                self._reserved_stems.add(candidate)
                return candidate
            n += 1

    async def reject(self, path: Path, reason: str) -> None:
        job_id = new_job_id()
        shown = displayable(str(path.relative_to(self._folders.inbox)))
        try:
            kept = await anyio.to_thread.run_sync(
                lambda: move_to_failed(path, self._folders.failed, reason, original_name=shown)
            )
        except OSError as exc:
            log.error("cannot move a refused job file", file=shown, reason=reason, error=str(exc))
            return
        await self._store.record_rejected(
            job_id=job_id,
            source_name=shown,
            source_path=displayable(str(path)),
            kept_path=str(kept),
            stem=safe_stem(path.name),
            reason=reason,
        )
        self.rejected_count += 1
        log.warning("job file rejected", job_id=job_id, file=shown, reason=reason)
