"""The shipped files and `dropreel install-unit`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dropreel.errors import CommandError
from dropreel.install.shipped import EXAMPLE_CONFIG, UNIT, shipped_text
from dropreel.install.unit import install_unit, unit_argument, unit_text

from .test_e2e import dropreel

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize(
    ("shipped", "top_level"),
    [(EXAMPLE_CONFIG, "config.example.toml"), (UNIT, "systemd/dropreel.service")],
)
def test_the_files_in_the_repository_are_the_ones_shipped(shipped: str, top_level: str) -> None:
    assert shipped_text(shipped) == (ROOT / top_level).read_text(encoding="utf-8"), (
        f"daemon/dropreel/install/{shipped} is what the wheel ships; {top_level} is where "
        "readers look: change both"
    )


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("/opt/dropreel/bin/dropreel", "/opt/dropreel/bin/dropreel"),
        ("/home/a b/venv/bin/dropreel", '"/home/a b/venv/bin/dropreel"'),
        ("/srv/100%/config.toml", "/srv/100%%/config.toml"),
        ('/x/"q"\\', '"/x/\\"q\\"\\\\"'),
    ],
)
def test_a_path_becomes_one_word_of_a_unit_command_line(text: str, word: str) -> None:
    assert unit_argument(text) == word


def test_the_unit_starts_the_program_and_config_given() -> None:
    shipped = shipped_text(UNIT)
    text = unit_text(shipped, Path("/venv/bin/dropreel"), Path("/srv/reels/dropreel.toml"))
    assert "ExecStart=/venv/bin/dropreel run --config /srv/reels/dropreel.toml\n" in text
    assert [line for line in text.splitlines() if line not in shipped.splitlines()] == [
        "ExecStart=/venv/bin/dropreel run --config /srv/reels/dropreel.toml"
    ]


def test_install_unit_writes_once_and_refuses_a_different_file(tmp_path: Path) -> None:
    assert install_unit("[Unit]\n", tmp_path) == tmp_path / "dropreel.service"
    assert install_unit("[Unit]\n", tmp_path / "dropreel.service") == tmp_path / UNIT
    with pytest.raises(CommandError, match="already exists and differs; move it aside"):
        install_unit("[Unit]\nDescription=newer\n", tmp_path)
    assert (tmp_path / UNIT).read_text() == "[Unit]\n"


def test_the_command_prints_or_installs_the_unit_for_this_installation(tmp_path: Path) -> None:
    printed = dropreel("install-unit", "--print", "--config", str(tmp_path / "c.toml"))
    program = Path(sys.executable).parent / "dropreel"
    expected = program if program.is_file() else Path("/opt/dropreel/bin/dropreel")
    assert f"ExecStart={expected} run --config {tmp_path / 'c.toml'}\n" in printed.stdout
    installed = dropreel("install-unit", str(tmp_path), "--config", str(tmp_path / "c.toml"))
    assert installed.returncode == 0, installed.stderr
    assert (tmp_path / UNIT).read_text() == printed.stdout
    assert "systemctl daemon-reload && systemctl enable --now dropreel" in installed.stdout
