"""Prometheus metrics: counters read from the daemon at scrape time, latencies as histograms."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dropreel.ops.counters import Counters


@dataclass(slots=True)
class Snapshot:
    """Figures the daemon refreshes every heartbeat (they come from the database)."""

    jobs_by_state: Mapping[str, int] = field(default_factory=dict)
    generations_by_phase: Mapping[str, int] = field(default_factory=dict)
    # Spent or reserved (estimates included) by period, "today" and "month"; the caps set.
    spend_usd: Mapping[str, float] = field(default_factory=dict)
    caps_usd: Mapping[str, float] = field(default_factory=dict)
    held_by_budget: int = 0


class _DaemonCollector(Collector):
    def __init__(
        self,
        counters: Counters,
        snapshot: Snapshot,
        live: Callable[[], Mapping[str, float]],
    ) -> None:
        self._counters = counters
        self._snapshot = snapshot
        self._live = live

    def collect(self) -> Iterator[Metric]:
        c = self._counters
        live = self._live()
        for name, help_text, value in (
            ("submissions", "POSTs sent to the provider", c.posts),
            ("events_matched", "completion events for our generations", c.events_matched),
            ("events_received", "event-stream events of any kind", live["events_received"]),
            ("stream_connects", "event-stream connections made", live["stream_connects"]),
            ("status_requests", "REST status look-ups (reconciles and polls)", live["polls"]),
            ("downloads", "results placed in the outbox", c.downloads),
            ("download_bytes", "bytes of results downloaded", c.download_bytes),
            ("hooks_run", "hook processes started", c.hooks_run),
            ("hook_failures", "hook runs that failed or timed out", c.hook_failures),
            ("webhooks_sent", "webhook attempts made", c.webhooks_sent),
            ("webhook_failures", "webhook attempts not answered 2xx", c.webhook_failures),
        ):
            yield CounterMetricFamily(f"dropreel_{name}", help_text, value=value)
        yield GaugeMetricFamily(
            "dropreel_stream_up", "1 while the event stream is connected", value=live["stream_up"]
        )
        yield GaugeMetricFamily(
            "dropreel_waiting_generations",
            "generations waiting at the provider",
            value=live["waiting"],
        )
        jobs = GaugeMetricFamily("dropreel_jobs", "jobs by state", labels=["state"])
        for state, count in sorted(self._snapshot.jobs_by_state.items()):
            jobs.add_metric([state], count)
        yield jobs
        phases = GaugeMetricFamily("dropreel_generations", "generations by phase", labels=["phase"])
        for phase, count in sorted(self._snapshot.generations_by_phase.items()):
            phases.add_metric([phase], count)
        yield phases
        yield from self._money()

    def _money(self) -> Iterator[Metric]:
        spend = GaugeMetricFamily(
            "dropreel_spend_usd",
            "US dollars spent or reserved (estimates included), by period",
            labels=["period"],
        )
        for period, usd in sorted(self._snapshot.spend_usd.items()):
            spend.add_metric([period], usd)
        yield spend
        caps = GaugeMetricFamily(
            "dropreel_budget_cap_usd", "the budget's caps in US dollars", labels=["period"]
        )
        for period, usd in sorted(self._snapshot.caps_usd.items()):
            caps.add_metric([period], usd)
        yield caps
        yield GaugeMetricFamily(
            "dropreel_budget_held_jobs",
            "jobs held because they would cross a cap",
            value=self._snapshot.held_by_budget,
        )


class Metrics:
    """The daemon's metrics; served over HTTP only when a port is configured."""

    def __init__(self, counters: Counters, live: Callable[[], Mapping[str, float]]) -> None:
        self.registry = CollectorRegistry()
        self.snapshot = Snapshot()
        self.registry.register(_DaemonCollector(counters, self.snapshot, live))
        self.event_to_hook = Histogram(
            "dropreel_event_to_hook_seconds",
            "from a generation's completion being seen to its hook starting",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "dropreel_job_duration_seconds",
            "from a job file being accepted to its manifest being written",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 86400),
            registry=self.registry,
        )
        self._finished_at: dict[str, float] = {}
        self._server: WSGIServer | None = None

    def generation_finished(self, generation_id: str) -> None:
        self._finished_at[generation_id] = time.monotonic()

    def hook_starting(self, generation_id: str) -> None:
        seen = self._finished_at.pop(generation_id, None)
        if seen is not None:
            self.event_to_hook.observe(time.monotonic() - seen)

    def hook_skipped(self, generation_id: str) -> None:
        self._finished_at.pop(generation_id, None)

    def serve(self, host: str, port: int) -> int:
        """Start the text endpoint in a thread; the port actually bound."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

    @property
    def serving(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
