"""The provider's documented client: submit, then GET the generation every 5 s until terminal."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx

from dropreel.bench.harness import HOOK

PEER_KEY = "bench-peer-key"
TERMINAL = ("succeeded", "failed", "cancelled")


async def run_peer(
    base_url: str,
    bodies: Sequence[dict[str, Any]],
    *,
    workdir: Path,
    hook_log: Path,
    poll_s: float = 5.0,
    submitted: list[str] | None = None,
) -> None:
    """Each job on its own: POST, poll, download, then run the same hook dropreel runs."""
    headers = {"Authorization": f"Bearer {PEER_KEY}"}
    limits = httpx.Limits(max_connections=64)
    env = {**os.environ, "BENCH_HOOK_LOG": str(hook_log)}
    await anyio.Path(workdir).mkdir(parents=True, exist_ok=True)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as http:

        async def one(body: dict[str, Any]) -> None:
            answer = await http.post("/api/ai/queue", json=body, headers=headers)
            answer.raise_for_status()
            generation_id = answer.json()["generations"][0]["generation_id"]
            if submitted is not None:
                submitted.append(generation_id)
            while True:
                await anyio.sleep(poll_s)
                try:
                    polled = await http.get(f"/api/ai/queue/{generation_id}", headers=headers)
                except httpx.TransportError:
                    continue  # a dropped keep-alive connection: ask again next round
                state = polled.json()
                if state["status"] in TERMINAL:
                    break
            if state["status"] == "succeeded":
                media = await http.get(state["result_url"])
                (workdir / f"{generation_id}.mp4").write_bytes(media.content)
            await anyio.run_process(
                ["/bin/bash", "-c", HOOK],
                env={**env, "DROPREEL_GENERATION_ID": generation_id},
            )

        async with anyio.create_task_group() as group:
            for body in bodies:
                group.start_soon(one, body)


def wait_for_submissions(submitted: list[str], count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(submitted) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the peer did not submit everything")
        time.sleep(0.02)
