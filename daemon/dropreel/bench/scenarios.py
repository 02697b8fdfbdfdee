"""Each benchmark scenario: a fresh simulator, a fresh daemon, figures out."""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio

from dropreel.bench.harness import (
    BENCH_KEY,
    FLOOR_KEY,
    DaemonProcess,
    FloorProcess,
    drop_files,
    requests_by,
    wait_until,
    write_config,
)
from dropreel.bench.peer import PEER_KEY, run_peer
from dropreel.state.reading import read_only_uri
from dropreel_simulator.oxen import Simulator, SimulatorOptions, running_simulator

RESULT_BYTES = 4 * 1024


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _latency_figures(latencies_s: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in latencies_s]
    return {
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
    }


def _held_simulator() -> Simulator:
    return Simulator(SimulatorOptions(hold=True, result_bytes=RESULT_BYTES, seed=7))


def _submitted(database: Path) -> int:
    if not database.exists():
        return 0
    with sqlite3.connect(read_only_uri(database), uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM generations").fetchone()[0])


def latency(root: Path, *, rate: float, count: int, consumer: str = "dropreel") -> dict[str, Any]:
    """Completions released at `rate` per second: event emitted -> hook process running, and
    the consumer's CPU per completion (its threads included, hook processes excluded)."""
    root.mkdir(parents=True)
    simulator = _held_simulator()
    with running_simulator(simulator):
        process: DaemonProcess | FloorProcess
        if consumer == "dropreel":
            config = write_config(
                root,
                simulator,
                submit={"concurrency": 16},
                delivery={"concurrency": 16},
                hooks={"concurrency": 16},
            )
            process = daemon = DaemonProcess(root, config)
        else:
            process = FloorProcess(root, simulator.base_url, "completions", count)
        try:
            if consumer == "dropreel":
                daemon.wait_ready()
                files = {f"job-{n:05}.txt": f"latency {n}" for n in range(count)}
                drop_files(root / "inbox", root / "staging", files)
                database = root / "state" / "dropreel.sqlite3"
                wait_until(lambda: _submitted(database) == count, 300, "every submission")
            else:
                wait_until((root / "submitted").exists, 300, "every submission")
            time.sleep(0.5)  # let the submissions' tail settle before counting CPU
            cpu_before = process.cpu_s()
            simulator.call_soon(lambda: simulator.release_held(rate))
            wait_until(lambda: len(process.hook_times()) >= count, count / rate + 300, "every hook")
            cpu_s = process.cpu_s() - cpu_before
            hooks = process.hook_times()
            completed = {g: simulator.generations[g].completed_at for g in hooks}
            latencies = [hooks[g] - completed[g] for g in hooks]  # type: ignore[operator]
            span_s = max(hooks.values()) - min(c for c in completed.values() if c is not None)
            # The whole job's requests, POST included, as the peer's are counted.
            key = BENCH_KEY if consumer == "dropreel" else FLOOR_KEY
            cost = requests_by(simulator, key)
        finally:
            process.stop()
    return {
        "consumer": consumer,
        "rate_per_s": rate,
        "completions": count,
        **_latency_figures(latencies),
        "cpu_ms_per_completion": round(cpu_s / count * 1000, 3),
        "completions_per_s": round(count / span_s, 1),
        "requests_per_job": {k: round(v / count, 3) for k, v in sorted(cost.items())},
    }


def floor_ingest(root: Path, *, files: int) -> dict[str, Any]:
    """The floor's ingest: files dropped at once -> every one POSTed."""
    root.mkdir(parents=True)
    simulator = _held_simulator()
    inbox = root / "inbox"
    inbox.mkdir()
    with running_simulator(simulator):
        floor = FloorProcess(root, simulator.base_url, "ingest", files, inbox=str(inbox))
        try:
            time.sleep(1.0)  # the process is up and polling its inbox
            jobs = {f"bulk-{n:06}.json": f'{{"prompt": "bulk {n}"}}' for n in range(files)}
            dropped = drop_files(inbox, root / "staging", jobs)
            wait_until(lambda: (root / "done").exists(), 600, "every POST")
            last_post = max(
                r.at
                for r in list(simulator.requests)
                if r.kind == "enqueue" and r.client == FLOOR_KEY
            )
        finally:
            floor.stop()
    return {
        "files": files,
        "seconds": round(last_post - dropped, 3),
        "jobs_per_s": round(files / (last_post - dropped), 1),
    }


def peer(root: Path, *, rate: float, count: int, poll_s: float = 5.0) -> dict[str, Any]:
    """The documented poll loop on the same workload."""
    root.mkdir(parents=True)
    simulator = _held_simulator()
    hook_log = root / "hooks.log"
    with running_simulator(simulator):

        async def drive() -> None:
            submitted: list[str] = []
            bodies = [{"model": "m", "prompt": f"peer {n}"} for n in range(count)]
            async with anyio.create_task_group() as group:
                group.start_soon(
                    lambda: run_peer(
                        simulator.base_url,
                        bodies,
                        workdir=root / "out",
                        hook_log=hook_log,
                        poll_s=poll_s,
                        submitted=submitted,
                    )
                )
                with anyio.fail_after(120):
                    while len(submitted) < count:  # noqa: ASYNC110 - counting the peer's POSTs
                        await anyio.sleep(0.02)
                simulator.call_soon(lambda: simulator.release_held(rate))

        anyio.run(drive)
        hooks = {}
        for line in hook_log.read_text().splitlines():
            generation_id, _, stamp = line.partition(" ")
            hooks[generation_id] = float(stamp)
        latencies = [
            hooks[g] - simulator.generations[g].completed_at  # type: ignore[operator]
            for g in hooks
        ]
        cost = requests_by(simulator, PEER_KEY)
    return {
        "rate_per_s": rate,
        "completions": count,
        "poll_s": poll_s,
        **_latency_figures(latencies),
        "requests_per_job": {k: round(v / count, 3) for k, v in sorted(cost.items())},
    }


def ingest_and_outage(
    root: Path, *, files: int, outage_s: float, finish_during: int
) -> dict[str, Any]:
    """Many files at once, then a stream outage while they all wait."""
    root.mkdir(parents=True)
    simulator = _held_simulator()
    with running_simulator(simulator):
        config = write_config(root, simulator, submit={"concurrency": 16})
        daemon = DaemonProcess(root, config)
        try:
            daemon.wait_ready()
            jobs = {f"bulk-{n:06}.json": f'{{"prompt": "bulk {n}"}}' for n in range(files)}
            dropped = drop_files(root / "inbox", root / "staging", jobs)
            wait_until(lambda: len(simulator.enqueued) == files, 600, "every POST")
            last_post = max(r.at for r in simulator.requests if r.kind == "enqueue")
            database = root / "state" / "dropreel.sqlite3"
            wait_until(lambda: _submitted(database) == files, 120, "every answer recorded")
            ingest = {
                "files": files,
                "seconds": round(last_post - dropped, 3),
                "jobs_per_s": round(files / (last_post - dropped), 1),
            }

            outage_started = time.time()
            simulator.options.refuse_events_with = 503
            simulator.call_soon(simulator.drop_streams)
            # Some finish while the stream is down: their events are lost.
            some = list(simulator.generations)[:finish_during]
            simulator.call_soon(lambda: simulator.release_held(max(1.0, finish_during / 2), some))
            time.sleep(outage_s)
            simulator.options.refuse_events_with = None
            reconnected = time.time()
            wait_until(
                lambda: any(
                    r.kind == "list" and r.at > reconnected and r.streams_open
                    for r in list(simulator.requests)
                ),
                120,
                "the reconcile",
            )
            wait_until(
                lambda: len(daemon.hook_times()) >= finish_during,
                120,
                "the finished ones delivered",
            )
            during = requests_by(simulator, BENCH_KEY, since=outage_started)
        finally:
            daemon.stop()
    return {
        "ingest": ingest,
        "outage": {
            "seconds": outage_s,
            "pending": files,
            "finished_during": finish_during,
            "requests": dict(sorted(during.items())),
            "status_requests": sum(during.get(k, 0) for k in ("list", "get", "record")),
        },
    }


def _seed_database(database: Path, generation_ids: list[str]) -> None:
    """A database holding one submitted job per generation, each still waiting."""
    from dropreel.state.store import Store

    async def create() -> None:
        async with Store.open(database):
            pass

    anyio.run(create)
    now = time.time()
    with sqlite3.connect(database) as db:
        db.executemany(
            "INSERT INTO jobs (job_id, source_name, source_path, kept_path, stem, request, state,"
            " created_at, updated_at, post_started_at, submitted_at)"
            " VALUES (?, ?, '/seeded', NULL, ?, ?, 'submitted', ?, ?, ?, ?)",
            (
                (
                    f"seed{n:08}",
                    f"seed-{n}.txt",
                    f"seed-{n}",
                    '{"prompt": "p", "model": "m"}',
                    now,
                    now,
                    now,
                    now,
                )
                for n in range(len(generation_ids))
            ),
        )
        db.executemany(
            "INSERT INTO generations (generation_id, job_id, idx, remote_status, phase,"
            " enqueued_at) VALUES (?, ?, 1, 'processing', 'waiting', ?)",
            ((g, f"seed{n:08}", now) for n, g in enumerate(generation_ids)),
        )


def _delivered(database: Path) -> int:
    with sqlite3.connect(read_only_uri(database), uri=True) as db:
        return int(
            db.execute("SELECT COUNT(*) FROM generations WHERE phase = 'done'").fetchone()[0]
        )


def match_cost_ns(pending: int, lookups: int = 200_000) -> float:
    """The in-memory match of an event to one of `pending` waiting generations."""
    from dropreel.lifecycle import Observation, RemoteStatus, Source
    from dropreel.tracking.matching import Matcher

    matcher = Matcher()
    ids = [f"{n:032x}" for n in range(pending)]
    for start in range(0, pending, 1000):
        matcher.register("job", [(i, RemoteStatus.PROCESSING) for i in ids[start : start + 1000]])
    events = [
        Observation(ids[(n * 7919) % pending], RemoteStatus.SUCCEEDED, Source.EVENT, "u")
        for n in range(lookups)
    ]
    started = time.perf_counter_ns()
    for observed in events:
        matcher.route(observed, keep_if_unknown=True)
    return (time.perf_counter_ns() - started) / lookups


def scale(root: Path, *, pending: int, events: int, rate: float = 1000.0) -> dict[str, Any]:
    """A daemon restarting with `pending` generations waiting, then `events` of them finishing."""
    root.mkdir(parents=True)
    simulator = _held_simulator()
    with running_simulator(simulator):
        generation_ids = simulator.seed_held(pending)
        for generation_id in generation_ids:
            simulator.generations[generation_id].owner = BENCH_KEY
        database = root / "state" / "dropreel.sqlite3"
        _seed_database(database, generation_ids)
        # Hooks off: this measures holding and matching, not process spawning.
        config = write_config(
            root, simulator, hooks={"on_complete": []}, delivery={"concurrency": 16}
        )
        daemon = DaemonProcess(root, config)
        try:
            ready_s = daemon.wait_ready()
            wait_until(
                lambda: any(r.kind == "list" for r in list(simulator.requests)),
                120,
                "the reconcile after connecting",
            )
            time.sleep(1.0)
            rss_ready = daemon.peak_rss_mb()
            cpu_before = daemon.cpu_s()
            chosen = generation_ids[:events]
            simulator.call_soon(lambda: simulator.release_held(rate, chosen))
            wait_until(
                lambda: _delivered(database) >= events,
                events / rate + 300,
                "the released generations",
            )
            cpu_per_event_ms = (daemon.cpu_s() - cpu_before) / events * 1000
            rss_peak = daemon.peak_rss_mb()
        finally:
            daemon.stop()
    return {
        "pending": pending,
        "ready_s": round(ready_s, 3),
        "peak_rss_mb_at_ready": round(rss_ready, 1),
        "peak_rss_mb": round(rss_peak, 1),
        "events": events,
        "daemon_cpu_ms_per_event": round(cpu_per_event_ms, 3),
        "match_ns_per_event": round(match_cost_ns(pending), 1),
    }
