from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import anyio
import httpx
import pytest
from pydantic import SecretStr

from dropreel.delivery.download import Downloader, manifest, temp_name, write_manifest
from dropreel.errors import ConnectionLost
from dropreel.lifecycle import Phase, RemoteStatus
from dropreel.providers.oxen.client import OxenClient
from dropreel.state.records import GenerationRow, JobRow

from .rows import generation_row, job_row

BODY = bytes(range(256)) * 400


def job(stem: str = "cat") -> JobRow:
    return job_row(stem=stem, source_name=f"{stem}.json")


def generation(idx: int = 1, **changes: object) -> GenerationRow:
    return generation_row(generation_id=f"g{idx}", idx=idx, **changes)


async def fetched(
    downloader: Downloader,
    job: JobRow,
    generation: GenerationRow,
    count: int,
    *,
    within_s: float = math.inf,
) -> Path:
    """One result downloaded and placed in the outbox, where it now lies (delivery does the
    placing in its own worker-thread trip, beside the manifest)."""
    place = await downloader.download(job, generation, count, within_s=within_s)
    return await anyio.to_thread.run_sync(place)


@pytest.fixture
def requests() -> list[httpx.Request]:
    return []


async def streamed(body: bytes) -> AsyncIterator[bytes]:
    """A body as a server streams it (httpx reads a bytes body eagerly)."""
    for start in range(0, len(body), 4096):
        yield body[start : start + 4096]


def downloader(
    outbox: Path,
    requests: list[httpx.Request],
    *,
    body: bytes = BODY,
    ctype: str = "video/mp4",
    honour_range: bool = True,
    claimed_length: int | None = None,
) -> Downloader:
    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        start = 0
        if honour_range and "range" in request.headers:
            start = int(request.headers["range"].removeprefix("bytes=").rstrip("-"))
            return httpx.Response(
                206,
                content=streamed(body[start:]),
                headers={
                    "content-type": ctype,
                    "content-range": f"bytes {start}-{len(body) - 1}/{len(body)}",
                },
            )
        headers = {"content-type": ctype}
        if claimed_length is not None:
            headers["content-length"] = str(claimed_length)
        return httpx.Response(200, content=streamed(body), headers=headers)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = OxenClient(http, base_url="https://hub.test", api_key=SecretStr("k"), idle_timeout_s=1)
    outbox.mkdir(exist_ok=True)
    return Downloader(client, outbox)


async def test_a_result_lands_under_its_stem_byte_for_byte(
    tmp_path: Path, requests: list[httpx.Request]
) -> None:
    path = await fetched(downloader(tmp_path, requests), job(), generation(), 1)
    assert path == tmp_path / "cat.mp4"
    assert path.read_bytes() == BODY
    assert [p.name for p in tmp_path.iterdir()] == ["cat.mp4"], "no temp file left behind"


async def test_several_generations_are_numbered(
    tmp_path: Path, requests: list[httpx.Request]
) -> None:
    fetch = partial(fetched, downloader(tmp_path, requests))
    assert (await fetch(job(), generation(2), 3)).name == "cat-2.mp4"


async def test_the_extension_comes_from_the_content_type_when_the_url_has_none(
    tmp_path: Path, requests: list[httpx.Request]
) -> None:
    fetch = partial(fetched, downloader(tmp_path, requests, ctype="video/webm"))
    path = await fetch(job(), generation(result_url="https://cdn.test/download?id=1"), 1)
    assert path.name == "cat.webm"


async def test_an_existing_file_is_never_overwritten(
    tmp_path: Path, requests: list[httpx.Request]
) -> None:
    (tmp_path / "cat.mp4").write_bytes(b"someone else's video")
    path = await fetched(downloader(tmp_path, requests), job(), generation(), 1)
    assert path.name == "cat_2.mp4"
    assert (tmp_path / "cat.mp4").read_bytes() == b"someone else's video"


async def test_our_own_file_from_a_crashed_run_is_adopted_not_duplicated(
    tmp_path: Path, requests: list[httpx.Request]
) -> None:
    (tmp_path / "cat.mp4").write_bytes(BODY)
    path = await fetched(downloader(tmp_path, requests), job(), generation(), 1)
    assert path.name == "cat.mp4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.mp4"]


async def test_a_partial_download_resumes_with_range(
    tmp_path: Path, requests: list[httpx.Request]
) -> None:
    (tmp_path / temp_name("g1")).write_bytes(BODY[:1000])
    path = await fetched(downloader(tmp_path, requests), job(), generation(), 1)
    assert requests[0].headers["range"] == "bytes=1000-"
    assert path.read_bytes() == BODY


async def test_a_server_ignoring_range_restarts_cleanly(
    tmp_path: Path, requests: list[httpx.Request]
) -> None:
    (tmp_path / temp_name("g1")).write_bytes(b"garbage that is not the start")
    path = await fetched(downloader(tmp_path, requests, honour_range=False), job(), generation(), 1)
    assert path.read_bytes() == BODY


async def test_a_short_body_is_an_error_and_nothing_is_placed(
    tmp_path: Path, requests: list[httpx.Request]
) -> None:
    fetch = partial(
        fetched, downloader(tmp_path, requests, body=BODY[:500], claimed_length=len(BODY))
    )
    with pytest.raises(ConnectionLost, match="ended at 500 of 102400 bytes"):
        await fetch(job(), generation(), 1)
    assert not (tmp_path / "cat.mp4").exists()


def test_generation_ids_from_the_server_cannot_name_files_outside() -> None:
    assert "/" not in temp_name("../../etc/passwd")
    assert temp_name("../../etc/passwd").startswith(".dropreel-")


def test_the_manifest_records_request_and_every_generation(tmp_path: Path) -> None:
    generations = [
        generation(1, output_path=str(tmp_path / "cat-1.mp4"), phase=Phase.HOOKING),
        generation(
            2,
            remote_status=RemoteStatus.FAILED,
            error="bad seconds",
            result_url=None,
            phase=Phase.HOOKING,
        ),
    ]
    body = manifest(job(), generations)
    assert body["job_id"] == "j1" and body["source_file"] == "cat.json"
    assert body["request"] == {"model": "m", "prompt": "p"}
    assert [
        (g["generation_id"], g["status"], g["file"], g["error"]) for g in body["generations"]
    ] == [
        ("g1", "succeeded", "cat-1.mp4", None),
        ("g2", "failed", None, "bad seconds"),
    ]
    assert body["generations"][0]["completed_at"].startswith("1970-01-01T00:00:03")


def test_a_manifest_is_written_once_per_job(tmp_path: Path) -> None:
    first = write_manifest(tmp_path, job(), [generation()])
    again = write_manifest(tmp_path, job(), [generation()])
    assert first == again == tmp_path / "cat.result.json"
    assert json.loads(first.read_text())["job_id"] == "j1"


def test_another_jobs_manifest_is_never_replaced(tmp_path: Path) -> None:
    write_manifest(tmp_path, job(), [generation()])
    other = write_manifest(tmp_path, replace(job(), job_id="j2"), [generation()])
    assert other.name == "cat_2.result.json"
    assert json.loads((tmp_path / "cat.result.json").read_text())["job_id"] == "j1"
    assert json.loads(other.read_text())["job_id"] == "j2"
