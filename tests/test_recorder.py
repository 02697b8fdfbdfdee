from __future__ import annotations

import anyio

from dropreel.lifecycle import Phase, RemoteStatus
from dropreel.state.records import Finish
from dropreel.tracking.recorder import FinishRecorder


def finish(n: int) -> Finish:
    return Finish(f"g{n}", f"j{n}", RemoteStatus.SUCCEEDED, Phase.DOWNLOADING, "u", None, "event")


async def test_what_queues_during_a_commit_goes_into_the_next_one_then_on_to_delivery() -> None:
    batches: list[list[str]] = []
    handed_on: list[tuple[str, int]] = []
    first_commit_may_end = anyio.Event()

    async def record(batch: list[Finish]) -> None:
        batches.append([f.generation_id for f in batch])
        if len(batches) == 1:
            await first_commit_may_end.wait()

    async def hand_on(generation_id: str) -> None:
        # Handed on only once recorded: the batch that holds it is already committed.
        handed_on.append((generation_id, len(batches)))
        if len(handed_on) == 10:
            group.cancel_scope.cancel()

    recorder = FinishRecorder(record, hand_on)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(recorder.run)
            recorder.add(finish(0))
            await anyio.wait_all_tasks_blocked()
            for n in range(1, 10):
                recorder.add(finish(n))
            first_commit_may_end.set()
    recorder.close()
    assert batches == [["g0"], [f"g{n}" for n in range(1, 10)]]
    assert handed_on == [("g0", 1)] + [(f"g{n}", 2) for n in range(1, 10)]
