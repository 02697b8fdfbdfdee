"""The README's opening commands are the contract with a new user: keep them true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def opening_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"\A# dropreel\n\n```bash\n(.*?)```", text, re.DOTALL)
    assert match, "the README must open with its title and a bash block"
    return match.group(1).strip().splitlines()


def test_the_readme_opens_with_exactly_two_commands() -> None:
    demo, tests = opening_commands()
    assert demo == "python -m pip install . && python -m dropreel demo"
    assert tests == "python -m pip install -e '.[test]' && python -m pytest"


def test_ci_runs_the_readmes_test_command() -> None:
    _, tests = opening_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests in ci


def test_the_demo_command_runs_the_whole_pipeline() -> None:
    demo, _ = opening_commands()
    run_part = demo.split("&&")[1].split()
    assert run_part[:3] == ["python", "-m", "dropreel"]
    result = subprocess.run(
        [sys.executable, *run_part[1:]], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in (
        "sunrise.mp4",
        "city-at-night-1.mp4",
        "city-at-night-2.mp4",
        "ocean.result.json",
        "broken.json.error.json",
        "unknown-model.json.error.json",
        "refused by the provider: Model not found: bad-model-name",
        "not valid JSON",
        "requests to Oxen: 5 POST, 1 event stream, 5 downloads, 0 status polls while the "
        "stream was up",
        "requests to Lumenfall: 2 POST",
        "0 single look-ups, 2 downloads",
        "harbour.mp4",
        "still-life-lumenfall.mp4",
        "portrait-oxen.mp4",
        "1/1 delivered, $1.20",
    ):
        assert expected in out, f"{expected!r} missing from the demo's output:\n{out}"
    assert out.count(": succeeded /") == 7, "one hook run per generation"
