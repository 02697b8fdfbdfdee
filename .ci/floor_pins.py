"""Print `name==floor` for every dependency in pyproject.toml, to install the oldest versions
dropreel claims to work with and prove it.

    python .ci/floor_pins.py --extra test --without mypy ruff > floors.txt
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def floor_pin(requirement: Requirement) -> str:
    """`requirement` pinned to its lower bound (its `>=` version)."""
    floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    if len(floors) != 1:
        raise SystemExit(f"{PYPROJECT.name}: {requirement} has no single >= floor to pin")
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    marker = f"; {requirement.marker}" if requirement.marker else ""
    return f"{requirement.name}{extras}=={floors[0]}{marker}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", action="append", default=[], help="an optional group too")
    parser.add_argument("--without", nargs="*", default=[], help="names to leave out")
    args = parser.parse_args()
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra in args.extra:
        lines += project["optional-dependencies"][extra]
    for line in lines:
        requirement = Requirement(line)
        if requirement.name not in args.without:
            print(floor_pin(requirement))


if __name__ == "__main__":
    sys.exit(main())
