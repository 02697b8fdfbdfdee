"""The wheel carries what `init` and `install-unit` need, and the licence."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parent.parent
LEFT_OUT = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")


def source_copy(target: Path) -> Path:
    """The working tree without what a build or a test run leaves in it."""
    return Path(shutil.copytree(ROOT, target / "src", ignore=LEFT_OUT))


def test_the_wheel_ships_the_example_config_the_unit_and_the_licence(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "out"),
            str(source_copy(tmp_path)),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "out").glob("dropreel-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        shipped = {
            "dropreel/install/config.example.toml": "config.example.toml",
            "dropreel/install/dropreel.service": "systemd/dropreel.service",
        }
        for inside, top_level in shipped.items():
            assert archive.read(inside) == (ROOT / top_level).read_bytes(), inside
        (licence,) = [name for name in names if ".dist-info/" in name and name.endswith("/LICENSE")]
        assert archive.read(licence) == (ROOT / "LICENSE").read_bytes()
