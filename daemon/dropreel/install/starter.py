"""`dropreel init`: the folders and a commented starter config, made from the shipped example."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

from dropreel.errors import CommandError
from dropreel.install.shipped import EXAMPLE_CONFIG, shipped_text

CONFIG_NAME = "dropreel.toml"

_HEADER = (
    "# Written by `dropreel init`: [paths] points at the folders it made; every other value\n"
    "# is the default, as in the example config this was made from.\n#\n"
)
_TABLE = re.compile(r"\[(?P<name>[^\]]+)\]")
_STRING_KEY = re.compile(r'(?P<key>[A-Za-z0-9_-]+)\s*=\s*"[^"]*"\s*(?P<comment>#.*)?')


@dataclass(frozen=True)
class Initialised:
    """What `init` did: the folders by their `paths` key, those it made, and the config."""

    folders: dict[str, Path]
    created: tuple[Path, ...]
    config: Path


def toml_string(text: str) -> str:
    """`text` as a TOML basic string; ValueError if it is not Unicode text (a path's stray
    bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not UTF-8: a TOML file cannot name it") from None
    escaped = "".join(
        "\\" + char
        if char in '"\\'
        # TOML allows no control character but tab in a basic string.
        else f"\\u{ord(char):04X}"
        if (ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F
        else char
        for char in text
    )
    return f'"{escaped}"'


def example_folders(example: str, directory: Path) -> dict[str, Path]:
    """The example config's `[paths]` folders, placed under `directory`."""
    paths: dict[str, str] = tomllib.loads(example)["paths"]
    return {key: directory / value for key, value in paths.items()}


def starter_config(example: str, folders: dict[str, Path]) -> str:
    """The example config with its `[paths]` values replaced by `folders`, comments kept."""
    table = ""
    lines = [_HEADER]
    for line in example.splitlines(keepends=True):
        if header := _TABLE.match(line):
            table = header["name"]
        entry = _STRING_KEY.fullmatch(line.rstrip("\n"))
        if table == "paths" and entry and entry["key"] in folders:
            comment = f"  {entry['comment']}" if entry["comment"] else ""
            line = f"{entry['key']} = {toml_string(str(folders[entry['key']]))}{comment}\n"
        lines.append(line)
    return "".join(lines)


def initialise(directory: Path, config: Path | None) -> Initialised:
    """Make the example's folders under `directory` (those already there are fine) and write
    the starter config to `config` (default `directory/dropreel.toml`), never over a file."""
    directory = directory.resolve()
    config = (config or directory / CONFIG_NAME).absolute()
    if config.exists() or config.is_symlink():
        raise CommandError(f"{config}: already exists; init never overwrites a config")
    example = shipped_text(EXAMPLE_CONFIG)
    folders = example_folders(example, directory)
    try:
        text = starter_config(example, folders)
    except ValueError as exc:
        raise CommandError(f"{directory}: {exc}") from None
    created = tuple(folder for folder in folders.values() if _make_folder(folder))
    _make_folder(config.parent)
    try:
        with config.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise CommandError(f"{config}: cannot write: {exc.strerror or exc}") from None
    return Initialised(folders=folders, created=created, config=config)


def _make_folder(folder: Path) -> bool:
    """Make `folder` unless it is there; whether it was made."""
    if folder.is_dir():
        return False
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise CommandError(f"{folder}: cannot create the folder: {exc.strerror or exc}") from None
    return True


def summary(done: Initialised) -> str:
    """What `init` did and what to do next, for a person."""
    config = shlex.quote(str(done.config))
    return "\n".join(
        [
            *(
                f"{folder}: {'made' if folder in done.created else 'already there'}"
                for folder in done.folders.values()
            ),
            f"{done.config}: written (commented; [paths] points at the folders above)",
            "",
            "next:",
            "  1. the key:  export OXEN_API_KEY=...  (or set api_key_file in the config;",
            "               under systemd the unit hands it over as a credential)",
            f"  2. check:    dropreel check-config --config {config}",
            f"  3. run:      dropreel run --config {config}",
            f"  4. service:  dropreel install-unit --config {config}",
            '               (README: "Run it as a service")',
        ]
    )
