"""The inbox: notice job files, read them safely, and claim them as jobs or refuse them."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog
import watchfiles

from dropreel.errors import JobFileRejected
from dropreel.fs.moves import FILE_KINDS, move_durably, move_to_failed
from dropreel.fs.naming import (
    displayable,
    manifest_name,
    numbered_stem,
    preset_stem,
    printable,
    safe_stem,
)
from dropreel.intake.assets import MAX_IMAGE_BYTES, AssetWaits, image_problem, is_asset_name
from dropreel.intake.jobs import (
    MAX_JOB_FILE_BYTES,
    JobRequest,
    Routes,
    is_candidate_name,
    is_ignored_name,
    parse_job_file,
)
from dropreel.intake.presets import Preset
from dropreel.intake.writers import StabilityWatch, open_for_writing
from dropreel.lifecycle import JobState
from dropreel.state.store import Store
from dropreel.validation.checker import RequestChecker
from dropreel.validation.problems import joined

log = structlog.get_logger("dropreel.inbox")


class _NotYet(Exception):
    """The file is still settling (recently written); look again later."""


class _Vanished(Exception):
    """The file went away before we could take it."""


# Files claimed at once in a scan: enough for their commits to share a disk write.
_CLAIMS_AT_ONCE = 16


def new_job_id() -> str:
    """Sortable by creation time, unique without coordination."""
    return f"{time.time_ns() // 1_000_000:011x}{secrets.token_hex(3)}"


def read_job_file(
    path: Path,
    *,
    settle_s: float,
    now: float,
    unchanged_long_enough: Callable[[os.stat_result], bool] = lambda _: True,
    max_bytes: int = MAX_JOB_FILE_BYTES,
) -> bytes:
    """A job file's bytes (or an image's); refuses anything that is not a small regular file.

    A file another process still has open for writing is left for later; where that cannot
    be asked, `unchanged_long_enough` decides.
    """
    name = path.name
    _check_entry(path, settle_s=settle_s, now=now)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _Vanished from None
    except OSError as exc:
        raise JobFileRejected(name, f"cannot read: {exc.strerror}") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise JobFileRejected(name, "not a regular file")
        writing = open_for_writing(fd)
        if writing or (writing is None and not unchanged_long_enough(opened)):
            raise _NotYet
        chunks: list[bytes] = []
        remaining = max_bytes + 1
        while remaining > 0 and (chunk := os.read(fd, min(remaining, 1 << 16))):
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise JobFileRejected(name, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def _check_entry(path: Path, *, settle_s: float, now: float) -> None:
    """Refuse what is not a small regular file; leave what was written too recently."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise _Vanished from None
    kind = stat.S_IFMT(info.st_mode)
    if kind != stat.S_IFREG:
        raise JobFileRejected(path.name, f"not a regular file ({FILE_KINDS.get(kind, 'special')})")
    if info.st_size > MAX_JOB_FILE_BYTES:
        raise JobFileRejected(
            path.name, f"file is {info.st_size} bytes; the limit is {MAX_JOB_FILE_BYTES}"
        )
    if now - info.st_mtime < settle_s:
        raise _NotYet


@dataclass(frozen=True, slots=True)
class InboxFolders:
    inbox: Path
    accepted: Path
    failed: Path
    outbox: Path


class Inbox:
    """Claims job files from the inbox folder."""

    def __init__(
        self,
        folders: InboxFolders,
        store: Store,
        *,
        routes: Routes | str,
        settle_s: float,
        on_accepted: Callable[[str], Awaitable[None]],
        stable_s: float = 0.0,
        asset_wait_s: float = 60.0,
        checker: RequestChecker | None = None,
        presets: Mapping[str, Preset] | None = None,
    ) -> None:
        self._folders = folders
        self._store = store
        self._routes = Routes.single(routes) if isinstance(routes, str) else routes
        self._settle_s = settle_s
        self._stability = StabilityWatch(stable_s)
        self._asset_waits = AssetWaits(asset_wait_s)
        self._reserved_stems: set[str] = set()
        self._on_accepted = on_accepted
        self._checker = checker
        self._presets = dict(presets or {})
        # Folders in the inbox that are no preset's: left alone, and reported once.
        self._strays: set[str] = set()
        self._scan_lock = anyio.Lock()
        self.accepted_count = 0
        self.rejected_count = 0

    def waiting_names(self) -> list[str]:
        """Files in the inbox and its presets' folders (`clip.txt`, `portrait-8s/clip.txt`)
        that are (or will be) job files to take. Images are not: they wait for a job to name
        them. Other folders are left alone."""
        names = list(self._files_in(self._folders.inbox, ""))
        for preset in self._presets:
            try:
                names.extend(self._files_in(self._folders.inbox / preset, f"{preset}/"))
            except FileNotFoundError:
                self._folders.inbox.joinpath(preset).mkdir(exist_ok=True)
        return sorted(names)

    def _files_in(self, folder: Path, prefix: str) -> Iterator[str]:
        with os.scandir(folder) as entries:
            for entry in entries:
                if is_ignored_name(entry.name):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if not (prefix == "" and entry.name in self._presets):
                        self._report_stray(prefix + entry.name)
                    continue
                if not is_asset_name(entry.name):
                    yield prefix + entry.name

    def _report_stray(self, folder: str) -> None:
        if folder not in self._strays:
            self._strays.add(folder)
            log.warning(
                "a folder in the inbox is no preset's: left alone",
                folder=displayable(folder),
                presets=sorted(self._presets),
            )

    def preset_folders(self) -> list[Path]:
        """Each preset's folder in the inbox, made if missing."""
        folders = [self._folders.inbox / name for name in self._presets]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        return folders

    def asset_wait_due(self) -> float | None:
        """When (monotonic) a job waiting for its image must be looked at again, if any."""
        return self._asset_waits.next_due()

    async def scan(self) -> bool:
        """Take every file in the inbox now; True if some were left to settle."""
        async with self._scan_lock:
            names = await anyio.to_thread.run_sync(self.waiting_names)
            left: list[str] = []
            limiter = anyio.CapacityLimiter(_CLAIMS_AT_ONCE)

            async def take(name: str) -> None:
                async with limiter:
                    if not await self._take(name):
                        left.append(name)

            # Several at once: their commits share one write to the disk (see Store).
            async with anyio.create_task_group() as group:
                for name in names:
                    group.start_soon(take, name)
            return bool(left)

    async def _read(self, name: str, max_bytes: int) -> bytes:
        """A file of the inbox, once its writer is done with it (see read_job_file)."""
        return await anyio.to_thread.run_sync(
            lambda: read_job_file(
                self._folders.inbox / name,
                settle_s=self._settle_s,
                now=time.time(),
                unchanged_long_enough=lambda info: self._stability.settled(
                    name, info, time.monotonic()
                ),
                max_bytes=max_bytes,
            )
        )

    async def _take(self, name: str) -> bool:
        path = self._folders.inbox / name
        shown = displayable(name)
        folder, _, _ = name.rpartition("/")
        preset = self._presets.get(folder)
        try:
            data = await self._read(name, MAX_JOB_FILE_BYTES)
            if not is_candidate_name(path.name):
                raise JobFileRejected(
                    shown, "not a job file: the name must end .json, .toml or .txt"
                )
            request = parse_job_file(shown, data, self._routes, preset)
            unchecked = await self._check(shown, request)
            # An image lies beside the job file that names it.
            image = f"{folder}/{request.image}" if folder and request.image else request.image
            if image is not None and not await self._image_ready(name, image):
                return True  # waits for its image; the watch comes back at the deadline
        except _NotYet:
            return False
        except _Vanished:
            self._stability.forget(name)
            return True
        except JobFileRejected as rejected:
            self._stability.forget(name)
            self._asset_waits.forget(name)
            await self._reject(path, rejected.reason)
            return True
        self._stability.forget(name)
        self._asset_waits.forget(name)
        await self._accept(path, request, unchecked, preset)
        return True

    async def _check(self, shown: str, request: JobRequest) -> str | None:
        """Refuse a request its model would not take, before it is paid for; why it could
        not be checked, if it could not."""
        if self._checker is None:
            return None  # turned off in the config (jobs.check_schema)
        verdict = await self._checker.check(request.provider, request.body)
        if verdict.problems:
            raise JobFileRejected(
                shown,
                f"{request.model} at {request.provider} would not take it: "
                + joined(verdict.problems),
            )
        return verdict.unchecked

    async def _image_ready(self, job_file: str, image: str) -> bool:
        """Whether the image a job names is in the inbox and usable; False while it has not
        arrived (within inbox.asset_wait_s). Raises JobFileRejected saying why it cannot be
        used, or that it never came."""
        try:
            data = await self._read(image, MAX_IMAGE_BYTES)
        except _Vanished:
            if self._asset_waits.expired(job_file, time.monotonic()):
                raise JobFileRejected(
                    job_file,
                    f"dropreel.image {image!r} did not arrive in the inbox within "
                    f"{self._asset_waits.wait_s:g}s",
                ) from None
            return False
        except JobFileRejected as refused:
            raise JobFileRejected(job_file, f"dropreel.image {refused.reason}") from None
        problem = image_problem(displayable(image), data)
        if problem is not None:
            raise JobFileRejected(job_file, f"dropreel.image: {problem}")
        return True

    async def _accept(
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
        await self._on_accepted(job_id)

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

    async def _reject(self, path: Path, reason: str) -> None:
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

    async def watch(
        self, stop: anyio.Event, *, force_polling: bool, rescan_interval_s: float
    ) -> None:
        """Watch the inbox until `stop`, through any outage of the folder itself.

        A folder that is removed, unmounted or made unreadable while we run is reported once,
        made again if it is simply gone, and watched again every `rescan_interval_s`: the
        rest of the daemon (delivery, hooks) carries on meanwhile.
        """
        failing = False
        while not stop.is_set():
            try:
                await self._watch(
                    stop, force_polling=force_polling, rescan_interval_s=rescan_interval_s
                )
                return
            except OSError as exc:
                if not failing:
                    log.error(
                        "the inbox cannot be read; trying again",
                        inbox=str(self._folders.inbox),
                        error=exc.strerror or str(exc),
                        retry_every_s=rescan_interval_s,
                    )
                failing = True
            with anyio.move_on_after(rescan_interval_s):
                await stop.wait()
            if stop.is_set():
                return
            with contextlib.suppress(OSError):
                await anyio.to_thread.run_sync(
                    lambda: self._folders.inbox.mkdir(parents=True, exist_ok=True)
                )
                await anyio.to_thread.run_sync(self.preset_folders)
            if failing and await anyio.to_thread.run_sync(self._readable):
                failing = False

    def _readable(self) -> bool:
        try:
            self.waiting_names()
        except OSError:
            return False
        log.info("the inbox can be read again", inbox=str(self._folders.inbox))
        return True

    async def _watch(
        self, stop: anyio.Event, *, force_polling: bool, rescan_interval_s: float
    ) -> None:
        """Scan at start, on every change in the folder (or a preset's), and now and then."""
        presets = await anyio.to_thread.run_sync(self.preset_folders)
        unsettled = await self.scan()
        last_scan = time.monotonic()
        # A file dropped after that scan but before the watch took hold raises no event:
        # the first wake-up (within rust_timeout of the watch starting) scans once more.
        watching_since_scan = False
        async for changes in watchfiles.awatch(
            self._folders.inbox,
            *presets,
            watch_filter=None,
            debounce=400,
            step=20,
            recursive=False,
            stop_event=stop,
            rust_timeout=max(50, int(self._settle_s * 1000)) if unsettled else 1000,
            yield_on_timeout=True,
            force_polling=force_polling,
        ):
            now = time.monotonic()
            asset_due = self.asset_wait_due()
            due = now - last_scan >= rescan_interval_s or (
                asset_due is not None and now >= asset_due
            )
            if changes or unsettled or due or not watching_since_scan:
                unsettled = await self.scan()
                last_scan = time.monotonic()
                watching_since_scan = True
