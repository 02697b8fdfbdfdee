"""The benchmark's table: dropreel beside the floor and the documented poll loop, with ratios
and targets marked."""

from __future__ import annotations

from typing import Any

# The goals on this 2-core machine: ratios to the floor, run side by side.
TARGET_P99_MS = {100.0: 25.0}
TARGET_CPU_RATIO = 1.5
TARGET_CAPACITY_RATIO = 0.7
TARGET_INGEST_RATIO = 0.6
FLOOD_AT = 100_000.0


def _costs(requests: dict[str, float]) -> str:
    shown = {k: v for k, v in requests.items() if v}
    return ", ".join(f"{kind} {value:g}" for kind, value in shown.items()) or "-"


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _rate(rate: float) -> str:
    return "flooded" if rate >= FLOOD_AT else f"{rate:g}/s"


def _latency(run: dict[str, Any]) -> str:
    return f"{run['p50_ms']} / {run['p99_ms']} / {run['max_ms']} ms"


def render(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = [
        ("", "dropreel", "floor: minimal consumer", "peer: GET every 5 s")
    ]
    peer = results["peer"]
    floors = {run["rate_per_s"]: run for run in results.get("floor", [])}
    for run in results["latency"]:
        rate = run["rate_per_s"]
        floor = floors.get(rate)
        figure = _latency(run)
        target = TARGET_P99_MS.get(rate)
        if target is not None:
            figure += f"  (p99 <= {target:g} ms: {_mark(run['p99_ms'] <= target)})"
        other = _latency(peer) if rate == peer["rate_per_s"] else ""
        rows.append(
            (
                f"event -> hook p50/p99/max @ {_rate(rate)} ({run['completions']})",
                figure,
                _latency(floor) if floor else "",
                other,
            )
        )
        if floor:
            ratio = run["cpu_ms_per_completion"] / max(floor["cpu_ms_per_completion"], 1e-9)
            rows.append(
                (
                    f"CPU per completion @ {_rate(rate)}",
                    f"{run['cpu_ms_per_completion']} ms  ({ratio:.2f}x the floor; "
                    f"<= {TARGET_CPU_RATIO:g}x: {_mark(ratio <= TARGET_CPU_RATIO)})",
                    f"{floor['cpu_ms_per_completion']} ms",
                    "",
                )
            )
            if rate >= FLOOD_AT:
                ratio = run["completions_per_s"] / max(floor["completions_per_s"], 1e-9)
                rows.append(
                    (
                        "capacity (completions/s, flooded)",
                        f"{run['completions_per_s']}/s  ({ratio:.2f}x the floor; "
                        f">= {TARGET_CAPACITY_RATIO:g}x: {_mark(ratio >= TARGET_CAPACITY_RATIO)})",
                        f"{floor['completions_per_s']}/s",
                        "",
                    )
                )
        polls = sum(run["requests_per_job"].get(k, 0) for k in ("get", "list", "record"))
        rows.append(
            (
                f"requests per job @ {_rate(rate)}",
                _costs(run["requests_per_job"]) + f"  (0 polls: {_mark(polls == 0)})",
                "",
                _costs(peer["requests_per_job"]) if rate == peer["rate_per_s"] else "",
            )
        )
    ingest = results["ingest"]
    floor_ingest = results.get("floor_ingest")
    ingest_figure = f"{ingest['jobs_per_s']} jobs/s in {ingest['seconds']} s"
    if floor_ingest:
        ratio = ingest["jobs_per_s"] / max(floor_ingest["jobs_per_s"], 1e-9)
        ingest_figure += (
            f"  ({ratio:.2f}x the floor; >= {TARGET_INGEST_RATIO:g}x: "
            f"{_mark(ratio >= TARGET_INGEST_RATIO)})"
        )
    rows.append(
        (
            f"ingest: {ingest['files']} files at once -> all POSTed",
            ingest_figure,
            f"{floor_ingest['jobs_per_s']} jobs/s" if floor_ingest else "",
            "",
        )
    )
    outage = results["outage"]
    rows.append(
        (
            f"{outage['seconds']:g} s stream outage, {outage['pending']} pending, "
            f"{outage['finished_during']} finish meanwhile",
            f"{outage['status_requests']} status requests ({_costs(outage['requests'])})",
            "",
            f"~{outage['pending'] * outage['seconds'] / 5:.0f} GETs (one per pending per 5 s)",
        )
    )
    scale = results["scale"]
    rows.append(
        (
            f"{scale['pending']} pending: start-up to READY",
            f"{scale['ready_s']} s  (<= 2 s: {_mark(scale['ready_s'] <= 2)})",
            "",
            "",
        )
    )
    rows.append(
        (
            f"{scale['pending']} pending: peak RSS",
            f"{scale['peak_rss_mb']} MB (at ready {scale['peak_rss_mb_at_ready']} MB)  "
            f"(<= 120 MB: {_mark(scale['peak_rss_mb'] <= 120)})",
            "",
            "",
        )
    )
    rows.append(
        (
            f"{scale['pending']} pending: per event",
            f"match {scale['match_ns_per_event']} ns; whole daemon "
            f"{scale['daemon_cpu_ms_per_event']} ms CPU (download, records, manifest)",
            "",
            "",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        f"{a.ljust(widths[0])}  {b.ljust(widths[1])}  {c.ljust(widths[2])}  {d}".rstrip()
        for a, b, c, d in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    header = (
        f"dropreel benchmark ({results['mode']}) on {results['machine']['cpus']} CPUs, "
        f"Python {results['machine']['python']}, {results['started']}"
    )
    return header + "\n\n" + "\n".join(lines)
