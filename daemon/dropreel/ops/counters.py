"""What the daemon has done since it started: read by logs, status and metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Counters:
    posts: int = 0
    events_matched: int = 0
    downloads: int = 0
    download_bytes: int = 0
    hooks_run: int = 0
    hook_failures: int = 0
    webhooks_sent: int = 0
    webhook_failures: int = 0
    jobs_completed: int = 0
    jobs_failed: int = 0
