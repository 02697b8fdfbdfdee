"""The inbox: notice job files, judge them (their model's schema included), and hand them to
be claimed as jobs or refused."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

import anyio
import structlog
import watchfiles

from dropreel.errors import JobFileRejected
from dropreel.fs.naming import displayable
from dropreel.intake.assets import MAX_IMAGE_BYTES, AssetWaits, image_problem
from dropreel.intake.batches import MAX_BATCH_FILE_BYTES, BatchRow, is_batch_name, parse_batch
from dropreel.intake.claiming import Claims, InboxFolders, new_job_id
from dropreel.intake.jobs import (
    MAX_JOB_FILE_BYTES,
    JobRequest,
    Routes,
    is_candidate_name,
    parse_job_file,
)
from dropreel.intake.listing import InboxListing
from dropreel.intake.presets import Preset
from dropreel.intake.reading import NotYet, Vanished, read_job_file
from dropreel.intake.writers import StabilityWatch
from dropreel.state.store import Store
from dropreel.validation.checker import RequestChecker
from dropreel.validation.problems import joined

__all__ = ["Inbox", "InboxFolders", "new_job_id", "read_job_file"]

log = structlog.get_logger("dropreel.inbox")


# Files claimed at once in a scan: enough for their commits to share a disk write.
_CLAIMS_AT_ONCE = 16


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
        self._routes = Routes.single(routes) if isinstance(routes, str) else routes
        self._settle_s = settle_s
        self._stability = StabilityWatch(stable_s)
        self._asset_waits = AssetWaits(asset_wait_s)
        self._checker = checker
        self._presets = dict(presets or {})
        self._listing = InboxListing(folders.inbox, self._presets)
        self._claims = Claims(folders, store, on_accepted)
        self._scan_lock = anyio.Lock()

    @property
    def accepted_count(self) -> int:
        return self._claims.accepted_count

    @property
    def rejected_count(self) -> int:
        return self._claims.rejected_count

    def waiting_names(self) -> list[str]:
        """Files in the inbox and its presets' folders that wait to be taken."""
        return self._listing.waiting_names()

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
        preset = self._presets.get(name.rpartition("/")[0])
        try:
            judged = await self._judge(name, preset)
            if judged is None:
                return True  # waits for its image; the watch comes back at the deadline
        except NotYet:
            return False
        except Vanished:
            self._stability.forget(name)
            return True
        except JobFileRejected as rejected:
            self._stability.forget(name)
            self._asset_waits.forget(name)
            await self._claims.reject(path, rejected.reason)
            return True
        self._stability.forget(name)
        self._asset_waits.forget(name)
        if isinstance(judged, list):
            await self._claims.accept_batch(path, judged, preset)
        else:
            await self._claims.accept(path, *judged, preset)
        return True

    async def _judge(
        self, name: str, preset: Preset | None
    ) -> tuple[JobRequest, str | None] | list[BatchRow] | None:
        """A file's request and why it was not checked, if it was not (or a batch's rows);
        None while the image it names has not arrived. Raises JobFileRejected saying why
        the file cannot be taken."""
        path = self._folders.inbox / name
        shown = displayable(name)
        batch = is_batch_name(path.name)
        data = await self._read(name, MAX_BATCH_FILE_BYTES if batch else MAX_JOB_FILE_BYTES)
        if not is_candidate_name(path.name):
            raise JobFileRejected(
                shown, "not a job file: the name must end .json, .toml, .txt, .jsonl or .csv"
            )
        if batch:
            rows = parse_batch(shown, data, self._routes, preset)
            return [await self._checked_row(shown, row) for row in rows]
        request = parse_job_file(shown, data, self._routes, preset)
        unchecked = await self._check(shown, request)
        # An image lies beside the job file that names it.
        folder = name.rpartition("/")[0]
        image = f"{folder}/{request.image}" if folder and request.image else request.image
        if image is not None and not await self._image_ready(name, image):
            return None
        return request, unchecked

    async def _checked_row(self, shown: str, row: BatchRow) -> BatchRow:
        """A batch's row checked against its model's schema like a job file."""
        if row.request is None:
            return row
        try:
            unchecked = await self._check(shown, row.request)
        except JobFileRejected as refused:
            return replace(row, request=None, problem=f"{row.where}: {refused.reason}")
        return replace(row, unchecked=unchecked)

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
        except Vanished:
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
                await anyio.to_thread.run_sync(self._listing.preset_folders)
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
        presets = await anyio.to_thread.run_sync(self._listing.preset_folders)
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
