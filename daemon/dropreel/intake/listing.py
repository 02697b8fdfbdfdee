"""Which files in the inbox (and in each preset's folder of it) wait to be taken; other
folders are left alone and reported once."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from pathlib import Path

import structlog

from dropreel.fs.naming import displayable
from dropreel.intake.assets import is_asset_name
from dropreel.intake.jobs import is_ignored_name

log = structlog.get_logger("dropreel.inbox")


class InboxListing:
    """Lists the inbox's waiting files by their path in it (`clip.txt`, `portrait/clip.txt`)."""

    def __init__(self, inbox: Path, presets: Collection[str]) -> None:
        self._inbox = inbox
        self._presets = frozenset(presets)
        # Folders in the inbox that are no preset's: left alone, and reported once.
        self._strays: set[str] = set()

    def waiting_names(self) -> list[str]:
        """Files in the inbox and its presets' folders (`clip.txt`, `portrait-8s/clip.txt`)
        that are (or will be) job files to take. Images are not: they wait for a job to name
        them. Other folders are left alone."""
        names = list(self._files_in(self._inbox, ""))
        for preset in self._presets:
            try:
                names.extend(self._files_in(self._inbox / preset, f"{preset}/"))
            except FileNotFoundError:
                self._inbox.joinpath(preset).mkdir(exist_ok=True)
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
        folders = [self._inbox / name for name in self._presets]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        return folders
