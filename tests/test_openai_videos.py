"""The openai-videos provider: what its answers mean, how it lists, and a daemon serving it
beside Oxen against the simulator's `/v1/videos` dialect."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pydantic import SecretStr

from dropreel.cli import admin
from dropreel.config import Settings
from dropreel.lifecycle import RemoteStatus
from dropreel.providers.openai_videos.answers import parse_video
from dropreel.providers.openai_videos.client import OpenAIVideosClient
from dropreel_simulator.oxen import Simulator

from .daemon_harness import (
    db_rows,
    drop_job,
    hook_argv,
    hook_lines,
    run_daemon,
    settings_for,
    until,
)
from .test_assets import JPEG, PNG, WEBP

CONTENT = "https://api.test/v1/videos/{id}/content"


def video(**fields: Any) -> dict[str, Any]:
    return {"id": "video_1", "object": "video", "status": "queued", **fields}


@pytest.mark.parametrize(
    ("payload", "status", "url", "error"),
    [
        (video(), RemoteStatus.QUEUED, None, None),
        (video(status="in_progress", progress=40), RemoteStatus.PROCESSING, None, None),
        (
            video(status="completed", output={"url": "https://media.test/a.mp4"}),
            RemoteStatus.SUCCEEDED,
            "https://media.test/a.mp4",
            None,
        ),
        # OpenAI: no output object, the file is served from the content endpoint.
        (
            video(status="completed"),
            RemoteStatus.SUCCEEDED,
            "https://api.test/v1/videos/video_1/content",
            None,
        ),
        (
            video(status="completed", output={"url": "not a url\n"}),
            RemoteStatus.SUCCEEDED,
            "https://api.test/v1/videos/video_1/content",
            None,
        ),
        (
            video(status="failed", error={"code": "CONTENT_POLICY_VIOLATION", "message": "no"}),
            RemoteStatus.FAILED,
            None,
            "CONTENT_POLICY_VIOLATION: no",
        ),
        (video(status="expired"), RemoteStatus.FAILED, None, "the provider says the video expired"),
        (video(status="cancelled"), RemoteStatus.CANCELLED, None, None),
    ],
)
def test_what_a_video_object_means(
    payload: dict[str, Any], status: RemoteStatus, url: str | None, error: str | None
) -> None:
    parsed = parse_video(payload, "GET", content_url=CONTENT)
    assert (parsed.status, parsed.result_url, parsed.error) == (status, url, error)


def test_cost_is_the_providers_figure_once_done_and_an_estimate_before() -> None:
    running = parse_video(
        video(status="in_progress", progress=140, metadata={"cost_estimate": 0.21}),
        "GET",
        content_url=CONTENT,
    )
    done = parse_video(
        video(status="completed", metadata={"cost": 2.4, "cost_estimate": 0.21}),
        "GET",
        content_url=CONTENT,
    )
    assert (running.progress, running.cost_usd, running.cost_is_estimate) == (100, 0.21, True)
    assert (done.cost_usd, done.cost_is_estimate) == (2.4, False)


async def test_pending_videos_are_learnt_a_page_at_a_time_not_one_by_one() -> None:
    videos = [video(id=f"video_{n:03}", status="in_progress") for n in range(250)]
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        after = request.url.params.get("after")
        start = next(i + 1 for i, v in enumerate(videos) if v["id"] == after) if after else 0
        page = videos[start : start + 100]
        return httpx.Response(
            200,
            json={"data": page, "has_more": start + 100 < 250, "last_id": page[-1]["id"]},
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        client = OpenAIVideosClient(
            http, name="lf", base_url="https://api.test/v1", api_key=SecretStr("k")
        )
        pending = {f"video_{n:03}" for n in range(0, 250, 2)}
        listed = await client.listed(pending)
    assert listed is not None and set(listed) == pending
    assert [r.url.path for r in requests] == ["/v1/videos"] * 3


def both_providers(tmp_path: Path, sim: Simulator, **sections: Any) -> Settings:
    return settings_for(
        tmp_path,
        sim,
        **{
            "providers.lumenfall": {
                "kind": "openai-videos",
                "base_url": sim.base_url + "/v1",
                "api_key_env": "LUMENFALL_API_KEY",
                "default_model": "sora-2-pro",
                "poll_interval_s": 0.2,
            },
            "hooks": {"on_complete": hook_argv(tmp_path / "hooks.log")},
            **sections,
        },
    )


def lumenfall_job(prompt: str, **fields: Any) -> str:
    return json.dumps(
        {"prompt": prompt, "seconds": "4", **fields, "dropreel": {"provider": "lumenfall"}}
    )


async def test_a_mixed_inbox_goes_to_both_providers_and_every_video_is_delivered(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = both_providers(tmp_path, simulator)
    inbox = tmp_path / "inbox"
    drop_job(inbox, "plain.txt", "a prompt for the default provider")
    drop_job(inbox, "oxen.json", json.dumps({"prompt": "to oxen", "num_generations": 2}))
    drop_job(inbox, "lumen.json", lumenfall_job("to lumenfall"))
    drop_job(inbox, "pair.json", lumenfall_job("two from lumenfall", num_generations=2))
    drop_job(inbox, "nowhere.json", json.dumps({"prompt": "x", "dropreel": {"provider": "zz"}}))

    await run_daemon(settings)

    outbox = tmp_path / "outbox"
    videos = simulator.videos
    assert len(simulator.enqueued) == 2 and len(videos.created) == 3
    # What each provider was sent: never dropreel's own table, never num_generations to
    # the videos API.
    assert all("dropreel" not in body for body, _ in [*simulator.enqueued, *videos.created])
    assert {body["prompt"] for body, _ in videos.created} == {"to lumenfall", "two from lumenfall"}
    [lumen] = [v for b, v in videos.created if b["prompt"] == "to lumenfall"]
    assert (outbox / "lumen.mp4").read_bytes() == videos.content(lumen)
    pair = [v for b, v in videos.created if b["prompt"] == "two from lumenfall"]
    for n, video_id in enumerate(pair, start=1):
        assert (outbox / f"pair-{n}.mp4").read_bytes() == videos.content(video_id)
    for stem in ("plain", "oxen", "lumen", "pair"):
        assert json.loads((outbox / f"{stem}.result.json").read_text())["generations"]
    assert len(hook_lines(tmp_path / "hooks.log")) == 1 + 2 + 1 + 2
    # Completions learnt from the listing: no look-up per pending video.
    assert simulator.count("video-get") == 0 and simulator.count("video-list") > 0
    # Results on the media host are fetched without the key.
    assert simulator.count("video-download") == 3 and videos.media_authorizations == []
    sidecar = json.loads((tmp_path / "failed" / "nowhere.json.error.json").read_text())
    assert "'zz' is not a configured provider (lumenfall, oxen)" in sidecar["reason"]
    costs = db_rows(settings.database_path, "SELECT cost_usd, cost_is_estimate FROM generations")
    assert sorted(r["cost_usd"] for r in costs if r["cost_usd"] is not None) == [1.2, 1.2, 1.2]
    assert not any(r["cost_is_estimate"] for r in costs)
    progress = db_rows(
        settings.database_path,
        "SELECT g.progress FROM generations g JOIN jobs j USING (job_id)"
        " WHERE j.provider = 'lumenfall'",
    )
    assert [r["progress"] for r in progress] == [100, 100, 100]
    manifest = json.loads((outbox / "pair.result.json").read_text())
    assert (manifest["provider"], manifest["cost_usd"]) == ("lumenfall", 2.4)
    assert [g["cost_usd"] for g in manifest["generations"]] == [1.2, 1.2]
    oxen = json.loads((outbox / "oxen.result.json").read_text())
    assert (oxen["provider"], oxen["cost_usd"]) == ("oxen", None)


async def test_a_create_whose_answer_is_lost_is_sent_again_and_replayed_not_billed_twice(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.videos.options.drop_create_answers = 1
    settings = both_providers(tmp_path, simulator)
    drop_job(tmp_path / "inbox", "lost.json", lumenfall_job("the answer is lost"))

    await run_daemon(settings)

    videos = simulator.videos
    assert len(videos.created) == 1 and videos.replays == 1
    assert simulator.count("video-create") == 2
    (job,) = db_rows(settings.database_path, "SELECT state FROM jobs")
    assert job["state"] == "completed"
    assert (tmp_path / "outbox" / "lost.mp4").read_bytes() == videos.content(videos.created[0][1])


async def test_a_video_served_from_the_content_endpoint_is_fetched_with_the_key(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.videos.options.result_style = "content"
    settings = both_providers(tmp_path, simulator, jobs={"provider": "lumenfall"})
    drop_job(tmp_path / "inbox", "openai.txt", "served by the API itself")

    await run_daemon(settings)

    ((body, video_id),) = simulator.videos.created
    assert body["model"] == "sora-2-pro"
    assert simulator.count("video-content") == 1
    assert (tmp_path / "outbox" / "openai.mp4").read_bytes() == simulator.videos.content(video_id)


async def test_a_refused_create_fails_the_job_with_the_providers_reason(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = both_providers(tmp_path, simulator)
    drop_job(tmp_path / "inbox", "bad.json", lumenfall_job("x", model="bad-model"))

    await run_daemon(settings)

    sidecar = json.loads((tmp_path / "failed" / "bad.json.error.json").read_text())
    assert "MODEL_NOT_FOUND" in sidecar["reason"] or "model not found" in sidecar["reason"]
    assert simulator.videos.created == []


def image_job(provider: str, image: str, prompt: str = "make it move") -> str:
    return json.dumps({"prompt": prompt, "dropreel": {"provider": provider, "image": image}})


async def test_a_local_image_goes_to_each_provider_as_its_image_input(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = both_providers(tmp_path, simulator)
    inbox = tmp_path / "inbox"
    (inbox).mkdir(parents=True)
    (inbox / "cat.png").write_bytes(PNG)
    (inbox / "dog.jpg").write_bytes(JPEG)
    (inbox / "unused.webp").write_bytes(WEBP)
    drop_job(inbox, "cat-video.json", image_job("lumenfall", "cat.png"))
    drop_job(inbox, "dog-video.json", image_job("oxen", "dog.jpg"))

    await run_daemon(settings)

    ((body, video_id),) = simulator.videos.created
    assert body["input_reference"] == ("cat.png", "image/png", PNG)
    assert body["prompt"] == "make it move" and "dropreel" not in body
    ((oxen_body, _),) = simulator.enqueued
    assert oxen_body["input_image"] == "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
    assert (tmp_path / "outbox" / "cat-video.mp4").read_bytes() == simulator.videos.content(
        video_id
    )
    kept = sorted(p.name.split("-", 1)[1] for p in (tmp_path / "state" / "accepted").iterdir())
    assert kept == ["cat-video.json", "cat.png", "dog-video.json", "dog.jpg"]
    # An image no job named stays where it is, and does not keep the daemon busy.
    assert sorted(p.name for p in inbox.iterdir()) == ["unused.webp"]


async def test_a_job_waits_for_its_image_then_is_refused_with_the_reason(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = both_providers(tmp_path, simulator, inbox={"asset_wait_s": 0.5})
    inbox = tmp_path / "inbox"
    drop_job(inbox, "never.json", image_job("lumenfall", "missing.png"))
    drop_job(inbox, "fake.json", image_job("oxen", "fake.png"))
    (inbox / "fake.png").write_text("this is a prompt, not a picture")

    await run_daemon(settings)

    never = json.loads((tmp_path / "failed" / "never.json.error.json").read_text())
    assert never["reason"] == "dropreel.image 'missing.png' did not arrive in the inbox within 0.5s"
    fake = json.loads((tmp_path / "failed" / "fake.json.error.json").read_text())
    assert fake["reason"] == "dropreel.image: fake.png is not a PNG, JPEG or WebP image"
    assert simulator.videos.created == [] and simulator.enqueued == []


async def test_an_image_that_arrives_after_its_job_is_used(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = both_providers(tmp_path, simulator, inbox={"asset_wait_s": 30})
    inbox = tmp_path / "inbox"
    drop_job(inbox, "late.json", image_job("lumenfall", "late.png"))

    async def image_later() -> None:
        await anyio.sleep(0.8)
        aside = inbox / ".late.png.tmp"
        aside.write_bytes(PNG)
        aside.rename(inbox / "late.png")

    async with anyio.create_task_group() as group:
        group.start_soon(image_later)
        # A job waiting for its image is not idle: the run lasts until it is delivered.
        await run_daemon(settings)

    ((body, _),) = simulator.videos.created
    assert body["input_reference"] == ("late.png", "image/png", PNG)
    assert (tmp_path / "outbox" / "late.mp4").exists()


async def test_cancel_reaches_the_jobs_own_provider_and_the_job_ends_cancelled(
    tmp_path: Path, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUMENFALL_API_KEY", "lf-cancel-key")
    simulator.videos.options.complete_after_s = (3600.0, 3600.0)
    settings = both_providers(tmp_path, simulator)
    drop_job(tmp_path / "inbox", "long.json", lumenfall_job("takes an hour"))
    stop = anyio.Event()

    async def cancel_once_submitted() -> None:
        await until(lambda: len(simulator.videos.created) == 1)
        # Submitted as the daemon records it: the simulator creating the video comes first,
        # and a cancel in between is one of an unsent job.
        await until(
            lambda: (
                [r["state"] for r in db_rows(settings.database_path, "SELECT state FROM jobs")]
                == ["submitted"]
            )
        )
        [job] = db_rows(settings.database_path, "SELECT job_id FROM jobs")
        said = await admin.cancel(settings, job["job_id"])
        assert "asked the provider to cancel 1 generation" in said
        await until(
            lambda: (
                db_rows(settings.database_path, "SELECT state FROM jobs")[0]["state"] == "completed"
            )
        )
        stop.set()

    async with anyio.create_task_group() as group:
        group.start_soon(cancel_once_submitted)
        await run_daemon(settings, until_idle=False, stop=stop)

    assert simulator.count("video-cancel") == 1
    (video,) = simulator.videos.videos.values()
    assert video.cancelled
    manifest = json.loads((tmp_path / "outbox" / "long.result.json").read_text())
    assert [g["status"] for g in manifest["generations"]] == ["cancelled"]
