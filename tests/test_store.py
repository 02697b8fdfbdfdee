from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from dropreel.lifecycle import JobState, Phase, RemoteStatus
from dropreel.state.records import SCHEMA_VERSION, Finish
from dropreel.state.store import Store


async def claim(store: Store, job_id: str = "j1", stem: str = "cat") -> None:
    await store.begin_claim(
        job_id=job_id,
        source_name=f"{stem}.txt",
        source_path=f"/in/{stem}.txt",
        kept_path=f"/state/accepted/{job_id}-{stem}.txt",
        stem=stem,
        request={"model": "m", "prompt": "a cat"},
    )


async def test_a_fresh_database_is_wal_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "state" / "db.sqlite3"
    async with Store.open(path):
        pass
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_job_walks_its_states_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with Store.open(path) as store:
        await claim(store)
        await store.set_job_state("j1", JobState.ACCEPTED)
        assert await store.claim_for_submission("j1")
        await store.record_submission(
            "j1", [("g1", RemoteStatus.QUEUED), ("g2", RemoteStatus.QUEUED)]
        )
    async with Store.open(path) as store:
        job = await store.job("j1")
        assert job is not None and job.state is JobState.SUBMITTED
        assert job.request == {"model": "m", "prompt": "a cat"}
        generations = await store.generations_of("j1")
        assert [(g.generation_id, g.idx, g.phase) for g in generations] == [
            ("g1", 1, Phase.WAITING),
            ("g2", 2, Phase.WAITING),
        ]
        history = [row["what"] for row in await store.history("j1")]
        assert history == ["claiming", "accepted", "submitting", "submitted"]


async def test_a_generation_goes_from_waiting_to_done(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "db.sqlite3") as store:
        await claim(store)
        await store.record_submission("j1", [("g1", RemoteStatus.QUEUED)])
        g = await store.generation("g1")
        assert g is not None
        await store.record_finished(
            [
                Finish(
                    g.generation_id,
                    g.job_id,
                    RemoteStatus.SUCCEEDED,
                    Phase.DOWNLOADING,
                    "u",
                    None,
                    "event",
                )
            ]
        )
        assert await store.jobs_ready_to_complete() == []
        g = await store.generation("g1")
        assert g is not None and g.result_url == "u" and g.completed_at is not None
        await store.record_delivered(g, "/out/cat.mp4")
        assert await store.jobs_ready_to_complete() == ["j1"]
        await store.record_hook_attempt(g, error="exit status 1", give_up=False)
        g = await store.generation("g1")
        assert g is not None and g.phase is Phase.HOOKING and g.hook_attempts == 1
        await store.record_hook_attempt(g, error=None, give_up=False)
        g = await store.generation("g1")
        assert g is not None and g.phase is Phase.DONE and g.hook_attempts == 2
        assert g.hook_error is None and g.hooked_at is not None


async def test_waiting_generations_come_a_page_at_a_time_and_only_the_waiting(
    tmp_path: Path,
) -> None:
    async with Store.open(tmp_path / "db.sqlite3") as store:
        for n in range(7):
            await claim(store, f"j{n}", f"stem{n}")
            await store.record_submission(f"j{n}", [(f"g{n}", RemoteStatus.QUEUED)])
        finished = await store.generation("g3")
        assert finished is not None
        await store.record_finished(
            [Finish("g3", "j3", RemoteStatus.FAILED, Phase.HOOKING, None, "x", "t")]
        )
        pages = [page async for page in store.waiting_generations(page_rows=2)]
    assert [len(page) for page in pages] == [2, 2, 2]
    waiting = [row for page in pages for row in page]
    assert [(g, j, status, provider) for g, j, status, _, provider in waiting] == [
        (f"g{n}", f"j{n}", "queued", "oxen") for n in (0, 1, 2, 4, 5, 6)
    ]


async def test_stems_are_unique_among_live_jobs(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "db.sqlite3") as store:
        await claim(store, "j1", "cat")
        assert await store.stem_taken("cat")
        with pytest.raises(sqlite3.IntegrityError):
            await claim(store, "j2", "cat")


async def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "db.sqlite3") as store:
        await claim(store)
        with pytest.raises(sqlite3.IntegrityError):
            # The second row repeats the first id: the whole submission must roll back.
            await store.record_submission(
                "j1", [("g1", RemoteStatus.QUEUED), ("g1", RemoteStatus.QUEUED)]
            )
        job = await store.job("j1")
        assert job is not None and job.state is JobState.CLAIMING
        assert await store.generations_of("j1") == []


async def test_a_reader_sees_the_writers_commits(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with Store.open(path) as writer, Store.open(path, read_only=True) as reader:
        assert await reader.jobs() == []
        await claim(writer)
        assert [j.job_id for j in await reader.jobs()] == ["j1"]


async def test_only_one_claim_for_submission_wins(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "db.sqlite3") as store:
        await claim(store)
        assert not await store.claim_for_submission("j1"), "a claiming job is not ready"
        await store.set_job_state("j1", JobState.ACCEPTED)
        results: list[bool] = []

        async def contender() -> None:
            results.append(await store.claim_for_submission("j1"))

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(contender)
        assert sorted(results) == [False, False, False, False, True]
        job = await store.job("j1")
        assert job is not None and job.state is JobState.SUBMITTING
        assert job.post_started_at is not None


async def test_concurrent_writes_commit_together_and_each_caller_gets_its_own_error(
    tmp_path: Path,
) -> None:
    async with Store.open(tmp_path / "db.sqlite3") as store:
        await claim(store, "j1", "one")
        outcomes: dict[str, str] = {}

        async def write(label: str, job_id: str, stem: str) -> None:
            try:
                await claim(store, job_id, stem)
                outcomes[label] = "ok"
            except sqlite3.IntegrityError:
                outcomes[label] = "refused"

        async with anyio.create_task_group() as group:
            group.start_soon(write, "fresh", "j2", "two")
            group.start_soon(write, "duplicate id", "j1", "three")
            group.start_soon(write, "another", "j3", "four")
        assert outcomes == {"fresh": "ok", "duplicate id": "refused", "another": "ok"}
        assert sorted(j.job_id for j in await store.jobs()) == ["j1", "j2", "j3"]
