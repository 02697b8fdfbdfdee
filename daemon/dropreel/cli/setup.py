"""Setting up, before there is a config to read: `init`, `install-unit`, `completion`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from argcomplete.shell_integration import shellcode

from dropreel.install.starter import initialise, summary
from dropreel.install.unit import UNIT_FOLDER, install_unit, this_unit


def _init(args: argparse.Namespace) -> int:
    print(summary(initialise(args.directory, args.config)))
    return 0


def _install_unit(args: argparse.Namespace) -> int:
    text = this_unit(args.config)
    if args.print:
        sys.stdout.write(text)
        return 0
    written = install_unit(text, args.path or UNIT_FOLDER)
    print(f"{written}: installed\nnext: systemctl daemon-reload && systemctl enable --now dropreel")
    return 0


def _completion(args: argparse.Namespace) -> int:
    sys.stdout.write(shellcode(["dropreel"], shell=args.shell))
    return 0


SETUP_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "init": _init,
    "install-unit": _install_unit,
    "completion": _completion,
}
