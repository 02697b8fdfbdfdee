"""The benchmark's table: dropreel beside the documented poll loop, targets marked."""

from __future__ import annotations

from typing import Any

# (what, target, figure path): the goals on this 2-core machine.
TARGET_P99_MS = {100.0: 10.0, 1000.0: 50.0}


def _costs(requests: dict[str, float]) -> str:
    shown = {k: v for k, v in requests.items() if v}
    return ", ".join(f"{kind} {value:g}" for kind, value in shown.items()) or "-"


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def render(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = [("", "dropreel", "peer: GET every 5 s")]
    peer = results["peer"]
    for run in results["latency"]:
        rate = run["rate_per_s"]
        figure = f"{run['p50_ms']} / {run['p99_ms']} / {run['max_ms']} ms"
        target = TARGET_P99_MS.get(rate)
        if target is not None:
            figure += f"  (p99 <= {target:g} ms: {_mark(run['p99_ms'] <= target)})"
        other = ""
        if rate == peer["rate_per_s"]:
            other = f"{peer['p50_ms']} / {peer['p99_ms']} / {peer['max_ms']} ms"
        rows.append(
            (f"event -> hook p50/p99/max @ {rate:g}/s ({run['completions']})", figure, other)
        )
        polls = sum(run["requests_per_job"].get(k, 0) for k in ("get", "list", "record"))
        rows.append(
            (
                f"requests per job @ {rate:g}/s",
                _costs(run["requests_per_job"]) + f"  (0 polls: {_mark(polls == 0)})",
                _costs(peer["requests_per_job"]) if rate == peer["rate_per_s"] else "",
            )
        )
    ingest = results["ingest"]
    rows.append(
        (
            f"ingest: {ingest['files']} files at once -> all POSTed",
            f"{ingest['jobs_per_s']} jobs/s in {ingest['seconds']} s  "
            f"(>= 1000/s: {_mark(ingest['jobs_per_s'] >= 1000)})",
            "",
        )
    )
    outage = results["outage"]
    rows.append(
        (
            f"{outage['seconds']:g} s stream outage, {outage['pending']} pending, "
            f"{outage['finished_during']} finish meanwhile",
            f"{outage['status_requests']} status requests ({_costs(outage['requests'])})",
            f"~{outage['pending'] * outage['seconds'] / 5:.0f} GETs (one per pending per 5 s)",
        )
    )
    scale = results["scale"]
    rows.append(
        (
            f"{scale['pending']} pending: start-up to READY",
            f"{scale['ready_s']} s  (<= 2 s: {_mark(scale['ready_s'] <= 2)})",
            "",
        )
    )
    rows.append(
        (
            f"{scale['pending']} pending: peak RSS",
            f"{scale['peak_rss_mb']} MB (at ready {scale['peak_rss_mb_at_ready']} MB)  "
            f"(<= 150 MB: {_mark(scale['peak_rss_mb'] <= 150)})",
            "",
        )
    )
    rows.append(
        (
            f"{scale['pending']} pending: per event",
            f"match {scale['match_ns_per_event']} ns; whole daemon "
            f"{scale['daemon_cpu_ms_per_event']} ms CPU (download, records, manifest)",
            "",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [f"{a.ljust(widths[0])}  {b.ljust(widths[1])}  {c}".rstrip() for a, b, c in rows]
    lines.insert(1, "-" * len(lines[0]))
    header = (
        f"dropreel benchmark ({results['mode']}) on {results['machine']['cpus']} CPUs, "
        f"Python {results['machine']['python']}, {results['started']}"
    )
    return header + "\n\n" + "\n".join(lines)
