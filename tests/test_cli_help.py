"""Every command's --help ends with an example, and the shell completes commands."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropreel.cli.main import build_parser

from .test_e2e import daemon_env


def commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every command's parser, nested ones (`a b`) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from commands(sub)


def test_every_commands_help_shows_an_example_of_it() -> None:
    parsers = list(commands(build_parser()))
    assert len(parsers) >= 12
    for sub in parsers:
        text = sub.format_help()
        _, _, examples = text.partition("\nexample")
        assert any(f" {sub.prog}" in line for line in examples.splitlines()), (
            f"`{sub.prog} --help` shows no example of it:\n{text}"
        )


def complete(line: str, bin_dir: Path) -> list[str]:
    """What bash offers at the end of `line`, through the script `dropreel completion bash`
    prints."""
    script = (
        'source <(dropreel completion bash) && COMP_LINE="$1" && COMP_POINT=${#COMP_LINE} '
        '&& read -ra COMP_WORDS <<< "$1" && { [[ "$1" != *" " ]] || COMP_WORDS+=(""); } '
        "&& COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )) && _python_argcomplete dropreel "
        '&& printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = daemon_env(PATH=f"{bin_dir}:/usr/bin:/bin")
    result = subprocess.run(
        ["bash", "-c", script, "bash", line],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return sorted(result.stdout.split())


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_and_their_choices(tmp_path: Path) -> None:
    program = tmp_path / "dropreel"
    program.write_text(f'#!/bin/sh\nexec {sys.executable} -m dropreel "$@"\n')
    program.chmod(0o755)
    assert complete("dropreel s", tmp_path) == ["show", "simulate", "spend", "status", "submit"]
    assert complete("dropreel ins", tmp_path) == ["install-unit"]
    assert "fish" in complete("dropreel completion ", tmp_path)
    assert complete("dropreel run --unt", tmp_path) == ["--until-idle"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shells_script_hooks_dropreel(shell: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dropreel", "completion", shell],
        capture_output=True,
        text=True,
        env=daemon_env(),
        timeout=60,
        check=True,
    )
    hook = {
        "bash": "complete ",
        "zsh": "compdef _python_argcomplete dropreel",
        "fish": "complete --command dropreel",
    }
    assert hook[shell] in result.stdout
