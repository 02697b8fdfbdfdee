"""Real tmpfs mounts for tests that need a filesystem of their own (root only)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextmanager
def mounted(*points: Path, size: str = "64m") -> Iterator[None]:
    """A real tmpfs at each point: every one a filesystem of its own."""
    done: list[Path] = []
    try:
        for point in points:
            point.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], check=True
            )
            done.append(point)
        yield
    finally:
        for point in done:
            subprocess.run(["umount", "-l", str(point)], check=False)
