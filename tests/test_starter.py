"""`dropreel init`: the folders and the starter config made from the shipped example."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from dropreel.config import load_settings
from dropreel.errors import CommandError
from dropreel.install.shipped import EXAMPLE_CONFIG, shipped_text
from dropreel.install.starter import example_folders, initialise, starter_config, toml_string

from .test_e2e import dropreel

EXAMPLE = shipped_text(EXAMPLE_CONFIG)


@pytest.mark.parametrize(
    "text",
    ["/srv/dropreel", 'a "quoted" \\ path', "tab\there", "new\nline\r", "del\x7f bell\x07", "é🎬"],
)
def test_a_toml_string_reads_back_as_the_text(text: str) -> None:
    assert tomllib.loads(f"x = {toml_string(text)}")["x"] == text


def test_text_that_is_not_unicode_cannot_be_a_toml_string() -> None:
    with pytest.raises(ValueError, match="not UTF-8"):
        toml_string("/srv/\udcff")


def test_the_starter_is_the_example_with_its_folders_moved(tmp_path: Path) -> None:
    odd = tmp_path / 'reels "q" \\'
    folders = example_folders(EXAMPLE, odd)
    assert sorted(folders) == ["failed", "inbox", "outbox", "state"]
    starter = starter_config(EXAMPLE, folders)
    config = tmp_path / "elsewhere" / "dropreel.toml"
    config.parent.mkdir()
    config.write_text(starter)
    settings = load_settings(config, environ={})
    assert settings.folders() == {f"paths.{key}": odd / key for key in folders}
    # Every comment and every other line of the example is kept.
    changed = [line for line in starter.splitlines() if line not in EXAMPLE.splitlines()]
    assert len(changed) == 3 + 4, changed
    assert "# the SQLite database and accepted originals" in starter


def test_init_makes_the_missing_folders_and_keeps_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "waiting.txt").write_text("a job")
    done = initialise(tmp_path, None)
    assert done.config == tmp_path / "dropreel.toml"
    assert done.created == tuple(tmp_path / name for name in ("outbox", "failed", "state"))
    assert (tmp_path / "inbox" / "waiting.txt").read_text() == "a job"
    assert all(folder.is_dir() for folder in done.folders.values())


def test_init_never_overwrites_a_config_and_changes_nothing_then(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "dropreel.toml"
    config.parent.mkdir()
    config.write_text("# mine\n")
    with pytest.raises(CommandError, match=r"already exists; init never overwrites a config"):
        initialise(tmp_path / "reels", config)
    assert config.read_text() == "# mine\n"
    assert not (tmp_path / "reels").exists()


def test_the_init_command_says_what_it_did_and_what_comes_next(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "dropreel" / "config.toml"
    first = dropreel("init", str(tmp_path / "srv"), "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert f"{tmp_path / 'srv' / 'inbox'}: made" in first.stdout
    assert f"dropreel check-config --config {config}" in first.stdout
    assert f"dropreel install-unit --config {config}" in first.stdout
    assert load_settings(config, environ={}).inbox_dir == tmp_path / "srv" / "inbox"

    again = dropreel("init", str(tmp_path / "srv"), "--config", str(config))
    assert again.returncode == 1
    assert again.stderr == (f"dropreel: {config}: already exists; init never overwrites a config\n")


def test_init_names_a_folder_it_cannot_make(tmp_path: Path) -> None:
    (tmp_path / "outbox").write_text("a file where a folder should be")
    result = dropreel("init", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith(f"dropreel: {tmp_path / 'outbox'}: cannot create the folder:")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
