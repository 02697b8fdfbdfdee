"""`python -m dropreel.bench [--smoke] [--json PATH]`: the benchmark, dropreel beside the floor
(a minimal consumer doing the same durable work) and the peer (the documented poll loop)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dropreel.bench import scenarios
from dropreel.bench.table import render

# "Flooded": every held completion released at once.
FLOOD = 1_000_000.0

FULL: dict[str, Any] = {
    "latency": [(10.0, 100), (100.0, 1000), (FLOOD, 3000)],
    "floor": [(100.0, 1000), (FLOOD, 3000)],
    "peer": (10.0, 100),
    "ingest": {"files": 10_000, "outage_s": 60.0, "finish_during": 100},
    "scale": {"pending": 100_000, "events": 10_000},
}
SMOKE: dict[str, Any] = {
    "latency": [(10.0, 20), (100.0, 100), (FLOOD, 200)],
    "floor": [(100.0, 100), (FLOOD, 200)],
    "peer": (10.0, 20),
    "ingest": {"files": 300, "outage_s": 3.0, "finish_during": 10},
    "scale": {"pending": 5_000, "events": 300},
}


def run(plan: dict[str, Any], workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    results["latency"] = [
        scenarios.latency(workdir / f"latency-{int(rate)}", rate=rate, count=count)
        for rate, count in plan["latency"]
    ]
    results["floor"] = [
        scenarios.latency(workdir / f"floor-{int(rate)}", rate=rate, count=count, consumer="floor")
        for rate, count in plan["floor"]
    ]
    rate, count = plan["peer"]
    results["peer"] = scenarios.peer(workdir / "peer", rate=rate, count=count)
    results.update(scenarios.ingest_and_outage(workdir / "ingest", **plan["ingest"]))
    results["floor_ingest"] = scenarios.floor_ingest(
        workdir / "floor-ingest", files=plan["ingest"]["files"]
    )
    results["scale"] = scenarios.scale(workdir / "scale", **plan["scale"])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dropreel.bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="small and quick (for CI)")
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dropreel-bench-") as workdir:
        results = run(SMOKE if args.smoke else FULL, Path(workdir))
    results["mode"] = "smoke" if args.smoke else "full"
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(render(results))
    print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
