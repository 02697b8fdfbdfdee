"""Provider answers the simulator never gave: each is used or refused, and nothing paid is lost."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pydantic import SecretStr

from dropreel.delivery.download import Downloader, temp_name, write_manifest
from dropreel.errors import RangeNotSatisfiable, ReadStalled
from dropreel.providers.base import RemoteGeneration
from dropreel.providers.oxen.client import OxenClient, parse_generation
from dropreel.providers.oxen.events import interpret
from dropreel_simulator.oxen import Simulator

from .daemon_harness import drop_job, hook_argv, hook_lines, run_daemon, settings_for, until
from .mounts import mounted, needs_root
from .rows import generation_row, job_row
from .test_deliver import fetched, streamed

BAD_URLS = [
    "https://h/x.mp4\n",
    "http://h:99999/x.mp4",
    "https://h/" + "a" * 65536,
    "file:///etc/passwd",
    "http:///no-host",
    "",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_an_unusable_result_url_is_no_url_at_all(url: str) -> None:
    event = json.dumps({"generation_id": "g", "status": "succeeded", "url": url})
    observed = interpret("media_generation_completed", event)
    assert not isinstance(observed, str) and observed.result_url is None
    row = parse_generation({"generation_id": "g", "status": "succeeded", "result_url": url}, "x")
    assert row.result_url is None


def outputs(settings: Any) -> list[str]:
    return sorted(p.name for p in settings.outbox_dir.iterdir())


@pytest.mark.parametrize("event_url", ["", "https://h/x.mp4\n", "http://127.0.0.1:99999/x"])
async def test_a_success_without_a_usable_url_is_fetched_with_a_url_from_rest(
    tmp_path: Path, simulator: Simulator, event_url: str
) -> None:
    simulator.options.event_url_override = event_url
    settings = settings_for(tmp_path, simulator)
    drop_job(tmp_path / "inbox", "nourl.txt", "p")
    await run_daemon(settings)
    assert outputs(settings) == ["nourl.mp4", "nourl.result.json"]
    [generation_id] = simulator.generations
    assert (settings.outbox_dir / "nourl.mp4").read_bytes() == simulator.served_bytes(generation_id)


class AsksForMore:
    """A provider that makes more generations than the job asked for."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider, name)

    async def enqueue(self, body: Mapping[str, Any], **options: Any) -> list[RemoteGeneration]:
        made: list[RemoteGeneration] = await self._provider.enqueue(
            {**body, "num_generations": 2}, **options
        )
        return made


async def test_more_generations_than_asked_are_all_delivered_and_listed(
    tmp_path: Path, simulator: Simulator
) -> None:
    log = tmp_path / "hooks.log"
    settings = settings_for(tmp_path, simulator, hooks={"on_complete": hook_argv(log)})
    drop_job(tmp_path / "inbox", "more.txt", "one, please")
    await run_daemon(settings, provider_wrapper=AsksForMore)
    assert outputs(settings) == ["more-1.mp4", "more-2.mp4", "more.result.json"]
    manifest = json.loads((settings.outbox_dir / "more.result.json").read_text())
    assert sorted(g["generation_id"] for g in manifest["generations"]) == sorted(
        simulator.generations
    )
    assert len(hook_lines(log)) == 2


class AnswersTwice:
    """A provider whose answer names the same generation twice."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider, name)

    async def enqueue(self, body: Mapping[str, Any], **options: Any) -> list[RemoteGeneration]:
        made: list[RemoteGeneration] = await self._provider.enqueue(body, **options)
        return made + made


async def test_duplicate_ids_in_an_answer_are_one_generation(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, simulator)
    drop_job(tmp_path / "inbox", "twice.txt", "p")
    await run_daemon(settings, provider_wrapper=AnswersTwice)
    assert outputs(settings) == ["twice.mp4", "twice.result.json"]


async def test_a_gzip_encoded_result_is_stored_as_served(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.gzip_downloads = True
    simulator.options.result_bytes = 1024 * 1024
    settings = settings_for(tmp_path, simulator)
    drop_job(tmp_path / "inbox", "zipped.txt", "p")
    await run_daemon(settings)
    [generation_id] = simulator.generations
    stored = (settings.outbox_dir / "zipped.mp4").read_bytes()
    assert stored == simulator.served_bytes(generation_id)
    assert len(stored) < 100_000, "never expanded"


def downloader_for(outbox: Path, handler: Any, **pace: float) -> Downloader:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = OxenClient(http, base_url="https://hub.test", api_key=SecretStr("k"), idle_timeout_s=1)
    outbox.mkdir(exist_ok=True)
    return Downloader(client, outbox, **pace)


def job_and_generation() -> tuple[Any, Any]:
    return job_row(stem="cat"), generation_row(
        generation_id="g1", idx=1, result_url="https://cdn.test/r.mp4"
    )


async def test_a_complete_part_answered_416_on_resume_is_placed(tmp_path: Path) -> None:
    body = b"a complete paid video"
    (tmp_path / temp_name("g1")).write_bytes(body)

    def s3(request: httpx.Request) -> httpx.Response:
        assert request.headers["range"] == f"bytes={len(body)}-"
        return httpx.Response(416, headers={"content-range": f"bytes */{len(body)}"})

    path = await fetched(downloader_for(tmp_path, s3), *job_and_generation(), 1)
    assert path.read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.mp4"]


async def test_a_part_that_is_not_the_servers_file_starts_over(tmp_path: Path) -> None:
    (tmp_path / temp_name("g1")).write_bytes(b"x" * 50)

    def s3(request: httpx.Request) -> httpx.Response:
        return httpx.Response(416, headers={"content-range": "bytes */10"})

    with pytest.raises(RangeNotSatisfiable):
        await fetched(downloader_for(tmp_path, s3), *job_and_generation(), 1)
    assert not (tmp_path / temp_name("g1")).exists()


async def test_a_trickling_download_is_cut_and_what_came_is_kept(tmp_path: Path) -> None:
    async def trickle() -> Any:
        for _ in range(100):
            await anyio.sleep(0.05)
            yield b"x"

    def slow(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=trickle(), headers={"content-length": "100"})

    downloader = downloader_for(tmp_path, slow, min_bytes_per_s=1000, stall_window_s=0.3)
    with anyio.fail_after(10), pytest.raises(ReadStalled, match="download too slow"):
        await fetched(downloader, *job_and_generation(), 1)
    assert 0 < (tmp_path / temp_name("g1")).stat().st_size < 100


async def test_no_download_outlives_the_jobs_deadline(tmp_path: Path) -> None:
    async def forever() -> Any:
        while True:
            await anyio.sleep(0.01)
            yield b"x" * 1000

    def endless(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=forever())

    with anyio.fail_after(10), pytest.raises(TimeoutError):
        await fetched(downloader_for(tmp_path, endless), *job_and_generation(), 1, within_s=0.5)


async def test_links_planted_at_our_temporary_names_are_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / temp_name("g1")).symlink_to(victim)
    (outbox / ".dropreel-j1.result.tmp").symlink_to(victim)

    def served(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=streamed(b"the video"))

    job, generation = job_and_generation()
    path = await fetched(downloader_for(outbox, served), job, generation, 1)
    assert path.read_bytes() == b"the video"
    write_manifest(outbox, job, [generation])
    assert victim.read_text() == "precious"


@needs_root
async def test_a_full_outbox_at_manifest_time_waits_and_carries_on_once_space_returns(
    tmp_path: Path, simulator: Simulator
) -> None:
    outbox = tmp_path / "outbox"
    log = tmp_path / "hooks.log"
    settings = settings_for(tmp_path, simulator, hooks={"on_complete": hook_argv(log)})
    drop_job(tmp_path / "inbox", "full.txt", "p")

    async def make_room_once_stuck() -> None:
        await until(lambda: (outbox / "full.mp4").exists(), timeout_s=30)
        await anyio.sleep(0.5)  # the manifest fails (and is retried) meanwhile
        assert not (outbox / "full.result.json").exists()
        assert hook_lines(log) == [], "the last hook waits for its manifest"
        await anyio.run_process(["mount", "-o", "remount,size=1m", str(outbox)])

    # Room for the result's pages and nothing else: the manifest cannot be written.
    with mounted(outbox, size="32k"):
        async with anyio.create_task_group() as group:
            group.start_soon(make_room_once_stuck)
            await run_daemon(settings, timeout_s=60)
        assert sorted(p.name for p in outbox.iterdir()) == ["full.mp4", "full.result.json"]
        assert len(hook_lines(log)) == 1
