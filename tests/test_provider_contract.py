"""One contract, every provider kind: the same behaviours against the simulator's Oxen and
`/v1/videos` dialects, through a real daemon."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dropreel.config import Settings
from dropreel_simulator.oxen import Simulator

from .daemon_harness import db_rows, drop_job, run_daemon, settings_for
from .test_assets import PNG


@dataclass
class Dialect:
    """How one provider kind shows in the simulator's records."""

    kind: str
    sim: Simulator

    @property
    def create(self) -> str:
        return "enqueue" if self.kind == "oxen" else "video-create"

    @property
    def download(self) -> str:
        return "download" if self.kind == "oxen" else "video-download"

    @property
    def cancel(self) -> str:
        return "cancel" if self.kind == "oxen" else "video-cancel"

    def created(self) -> list[tuple[dict[str, Any], str]]:
        """Every generation made, with the body of the request that made it."""
        if self.kind == "oxen":
            return [(body, g) for body, ids in self.sim.enqueued for g in ids]
        return list(self.sim.videos.created)

    def content(self, generation_id: str) -> bytes:
        return self.sim.content_for(generation_id, self.sim.options.result_bytes)

    def lose_next_answer(self) -> None:
        """The next create makes its generation, and its answer never arrives intact."""
        if self.kind == "oxen":
            self.sim.options.fail_after_create.append(502)
        else:
            self.sim.videos.options.drop_create_answers = 1

    def never_finish(self) -> None:
        if self.kind == "oxen":
            self.sim.options.hold = True
        else:
            self.sim.videos.options.complete_after_s = (3600.0, 3600.0)

    def cancelled(self) -> int:
        if self.kind == "oxen":
            return sum(g.status == "cancelled" for g in self.sim.generations.values())
        return sum(v.cancelled for v in self.sim.videos.videos.values())

    def image_sent(self, body: dict[str, Any]) -> bool:
        if self.kind == "oxen":
            return str(body.get("input_image", "")).startswith("data:image/png;base64,")
        return bool(body.get("input_reference") == ("cat.png", "image/png", PNG))


@pytest.fixture(params=["oxen", "openai-videos"])
def dialect(request: pytest.FixtureRequest, simulator: Simulator) -> Iterator[Dialect]:
    yield Dialect(request.param, simulator)


def settings(tmp_path: Path, dialect: Dialect, **sections: Any) -> Settings:
    base = dialect.sim.base_url + ("" if dialect.kind == "oxen" else "/v1")
    return settings_for(
        tmp_path,
        dialect.sim,
        **{
            "providers.p": {"kind": dialect.kind, "base_url": base, "poll_interval_s": 0.2},
            "jobs": {"provider": "p"},
            **sections,
        },
    )


def job_states(settings: Settings) -> list[str]:
    return [r["state"] for r in db_rows(settings.database_path, "SELECT state FROM jobs")]


async def test_a_job_is_submitted_once_and_its_result_delivered(
    tmp_path: Path, dialect: Dialect
) -> None:
    config = settings(tmp_path, dialect)
    drop_job(tmp_path / "inbox", "a.txt", "a calm lake")
    await run_daemon(config)
    [(body, generation_id)] = dialect.created()
    assert body["prompt"] == "a calm lake" and dialect.sim.count(dialect.create) == 1
    assert (tmp_path / "outbox" / "a.mp4").read_bytes() == dialect.content(generation_id)
    assert job_states(config) == ["completed"]


async def test_a_refused_request_fails_the_job_with_the_providers_reason(
    tmp_path: Path, dialect: Dialect
) -> None:
    config = settings(tmp_path, dialect)
    drop_job(tmp_path / "inbox", "b.json", json.dumps({"prompt": "p", "model": "bad-model"}))
    await run_daemon(config)
    assert dialect.created() == []
    reason = json.loads((tmp_path / "failed" / "b.json.error.json").read_text())["reason"]
    assert "refused by the provider" in reason and "bad-model" in reason.lower()


async def test_a_throttled_request_is_sent_again_after_retry_after(
    tmp_path: Path, dialect: Dialect
) -> None:
    dialect.sim.options.fail_next[dialect.create] = [(429, {"Retry-After": "1"})]
    config = settings(tmp_path, dialect)
    drop_job(tmp_path / "inbox", "c.txt", "throttled once")
    await run_daemon(config)
    assert dialect.sim.count(dialect.create) == 2 and len(dialect.created()) == 1
    assert job_states(config) == ["completed"]


async def test_a_lost_answer_ends_with_exactly_one_paid_generation_delivered(
    tmp_path: Path, dialect: Dialect
) -> None:
    dialect.lose_next_answer()
    config = settings(tmp_path, dialect)
    drop_job(tmp_path / "inbox", "d.txt", "the answer is lost")
    await run_daemon(config)
    [(_, generation_id)] = dialect.created()
    assert (tmp_path / "outbox" / "d.mp4").read_bytes() == dialect.content(generation_id)
    assert job_states(config) == ["completed"]


async def test_a_refused_download_is_fetched_again(tmp_path: Path, dialect: Dialect) -> None:
    dialect.sim.options.fail_next[dialect.download] = [(403, {})]
    config = settings(tmp_path, dialect)
    drop_job(tmp_path / "inbox", "e.txt", "the first download is refused")
    await run_daemon(config)
    [(_, generation_id)] = dialect.created()
    assert dialect.sim.count(dialect.download) == 2
    assert (tmp_path / "outbox" / "e.mp4").read_bytes() == dialect.content(generation_id)


async def test_a_generation_past_its_deadline_is_cancelled_at_the_provider(
    tmp_path: Path, dialect: Dialect
) -> None:
    dialect.never_finish()
    config = settings(tmp_path, dialect, jobs={"provider": "p", "deadline_s": 1.0})
    drop_job(tmp_path / "inbox", "f.txt", "never finishes")
    await run_daemon(config)
    assert dialect.sim.count(dialect.cancel) == 1 and dialect.cancelled() == 1
    [generation] = db_rows(config.database_path, "SELECT error FROM generations")
    assert "no result within the job deadline" in generation["error"]


async def test_a_local_image_is_sent_as_the_providers_image_input(
    tmp_path: Path, dialect: Dialect
) -> None:
    config = settings(tmp_path, dialect)
    inbox = tmp_path / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "cat.png").write_bytes(PNG)
    drop_job(inbox, "g.json", json.dumps({"prompt": "p", "dropreel": {"image": "cat.png"}}))
    await run_daemon(config)
    [(body, _)] = dialect.created()
    assert dialect.image_sent(body)
    assert job_states(config) == ["completed"]
