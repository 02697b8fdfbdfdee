"""`dropreel install-unit`: the shipped systemd unit, made to start this installation."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from dropreel.errors import CommandError
from dropreel.install.shipped import UNIT, shipped_text

UNIT_FOLDER = Path("/etc/systemd/system")
DEFAULT_CONFIG = Path("/etc/dropreel/config.toml")

_EXEC_START = re.compile(r"^ExecStart=.*$", re.MULTILINE)


def unit_argument(text: str) -> str:
    """`text` as one word of a unit's command line (systemd.service(5), "Command lines")."""
    text = text.replace("%", "%%")  # a specifier otherwise
    if re.fullmatch(r"[\w./+:@=,%-]+", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_text(shipped: str, program: Path, config: Path) -> str:
    """The shipped unit, its ExecStart running `program` with the config file `config`."""
    command = f"ExecStart={unit_argument(str(program))} run --config {unit_argument(str(config))}"
    return _EXEC_START.sub(lambda _: command, shipped, count=1)


def installed_program() -> Path:
    """The `dropreel` script beside this Python (a venv's bin/), else where the unit expects
    it (`/opt/dropreel/bin/dropreel`, as the README installs it)."""
    beside = Path(sys.executable).parent / "dropreel"
    return beside if beside.is_file() else Path("/opt/dropreel/bin/dropreel")


def this_unit(config: Path | None) -> str:
    """The unit for this installation, reading `config` (the shipped unit's by default)."""
    return unit_text(shipped_text(UNIT), installed_program(), (config or DEFAULT_CONFIG).absolute())


def install_unit(text: str, target: Path) -> Path:
    """Write the unit to `target` (a folder gets `dropreel.service` in it) unless a different
    file is there; the path written."""
    if target.is_dir():
        target = target / UNIT
    try:
        with target.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        if _text_of(target) != text:
            raise CommandError(
                f"{target}: already exists and differs; move it aside (or compare it with "
                "`dropreel install-unit --print`)"
            ) from None
    except OSError as exc:
        raise CommandError(f"{target}: cannot write: {exc.strerror or exc}") from None
    return target


def _text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
