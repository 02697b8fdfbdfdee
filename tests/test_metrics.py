from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import anyio
import httpx
from prometheus_client.parser import text_string_to_metric_families

from dropreel_simulator.oxen import Simulator

from .daemon_harness import run_daemon, settings_for, until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def samples(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


async def test_the_metrics_endpoint_is_scraped_while_the_daemon_runs(
    tmp_path: Path, simulator: Simulator
) -> None:
    port = free_port()
    settings = settings_for(
        tmp_path,
        simulator,
        metrics={"port": port},
        service={"heartbeat_s": 0.05},
        hooks={"on_complete": [sys.executable, "-c", "pass"]},
        budget={"daily_usd": 50},
    )
    (tmp_path / "inbox").mkdir()
    # Two of 4 s at $0.30/s (the simulator's price) are estimated at $2.40; b's is unknown.
    a = {"prompt": "p", "num_generations": 2, "seconds": "4"}
    (tmp_path / "inbox" / "a.json").write_text(json.dumps(a))
    (tmp_path / "inbox" / "b.txt").write_text("p")
    stop = anyio.Event()
    scraped: dict[str, float] = {}

    async def scrape_when_done() -> None:
        async with httpx.AsyncClient() as http:

            async def figures() -> dict[str, float]:
                response = await http.get(f"http://127.0.0.1:{port}/metrics")
                return samples(response.text)

            await until(lambda: len(list((tmp_path / "outbox").glob("*.result.json"))) == 2)
            with anyio.fail_after(20):
                # The job gauges follow the heartbeat: scrape until they have caught up.
                while (latest := await figures()).get("dropreel_jobs{state=completed}") != 2:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            scraped.update(latest)
        stop.set()

    async with anyio.create_task_group() as group:
        group.start_soon(scrape_when_done)
        await run_daemon(settings, until_idle=False, stop=stop)

    assert scraped["dropreel_submissions_total"] == 2
    assert scraped["dropreel_events_matched_total"] == 3
    assert scraped["dropreel_stream_connects_total"] == 1
    assert scraped["dropreel_stream_up"] == 1
    assert scraped["dropreel_status_requests_total"] == 0
    assert scraped["dropreel_downloads_total"] == 3
    assert scraped["dropreel_download_bytes_total"] == 3 * simulator.options.result_bytes
    assert scraped["dropreel_event_to_hook_seconds_count"] == 3
    assert scraped["dropreel_job_duration_seconds_count"] == 2
    assert scraped["dropreel_hook_failures_total"] == 0
    assert scraped["dropreel_waiting_generations"] == 0
    assert scraped["dropreel_spend_usd{period=today}"] == 2.4
    assert scraped["dropreel_spend_usd{period=month}"] == 2.4
    assert scraped["dropreel_budget_cap_usd{period=today}"] == 50
    assert scraped["dropreel_budget_held_jobs"] == 0
    with socket.socket() as probe:
        probe.settimeout(2)
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the endpoint closes with the daemon"


async def test_metrics_are_off_by_default(tmp_path: Path, simulator: Simulator) -> None:
    settings = settings_for(tmp_path, simulator)
    assert settings.metrics.port == 0
    daemon = await run_daemon(settings)
    assert not daemon.metrics.serving
