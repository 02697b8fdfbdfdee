"""The benchmark's smoke mode runs in CI: figures printed, never asserted (machines are noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dropreel.bench.scenarios import percentile

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("q", "expected"), [(50, 5), (99, 10), (100, 10), (10, 1), (1, 1)])
def test_percentiles_are_nearest_rank(q: float, expected: float) -> None:
    assert percentile([float(n) for n in range(10, 0, -1)], q) == expected


def test_the_smoke_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "dropreel.bench", "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(result.stdout)  # the figures, for whoever reads the CI log
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["mode"] == "smoke"
    assert [run["completions"] for run in figures["latency"]] == [20, 100, 200]
    assert [run["completions"] for run in figures["floor"]] == [100, 200]
    assert all(run["cpu_ms_per_completion"] > 0 for run in figures["floor"])
    assert figures["floor_ingest"]["files"] == 300
    assert figures["peer"]["completions"] == 20
    assert figures["ingest"]["files"] == 300
    assert figures["scale"]["pending"] == 5000
    assert "dropreel" in result.stdout and "peer: GET every 5 s" in result.stdout
    assert "floor: minimal consumer" in result.stdout and "x the floor" in result.stdout
