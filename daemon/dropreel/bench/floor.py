"""The floor: a minimal consumer doing the same durable work as dropreel, and nothing more.

Run as its own process (`python -m dropreel.bench.floor ...`) so its CPU is measured alone.
Per completion: read the event, commit a row (SQLite, WAL, synchronous=FULL), stream the
result into a temporary file, fsync, rename, write the manifest atomically (temporary file,
fsync, rename), spawn the same hook with its JSON on stdin and wait for it (posix_spawn and a
pidfd watched by the event loop), commit again. Per ingested file: read it, commit a row,
move it aside durably, POST, commit the answer. No retries, no recovery: that is the point.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
from httpx_sse import aconnect_sse

from dropreel.fs.moves import fsync_dir

COMPLETED = "media_generation_completed"


def _database(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, name TEXT, generation TEXT,"
        " state TEXT, output TEXT)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS jobs_generation ON jobs (generation)")
    return db


def _write_durably(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(temp, path)


async def _run_hook(argv: list[str], env: dict[str, str], stdin: bytes) -> int:
    """Spawn the hook without a helper thread: posix_spawn, then wait on a pidfd."""
    reader, writer = os.pipe()
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            env,
            file_actions=[(os.POSIX_SPAWN_DUP2, reader, 0), (os.POSIX_SPAWN_CLOSE, writer)],
        )
    finally:
        os.close(reader)
    try:
        os.write(writer, stdin)
    except BrokenPipeError:
        pass
    finally:
        os.close(writer)
    pidfd = os.pidfd_open(pid)
    try:
        await anyio.wait_readable(pidfd)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(pidfd)
    return os.waitstatus_to_exitcode(status)


class Floor:
    def __init__(self, base_url: str, key: str, root: Path, hook: list[str]) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {key}"}
        self.root = root
        self.outbox = root / "outbox"
        self.outbox.mkdir(parents=True, exist_ok=True)
        self.db = _database(root / "floor.sqlite3")
        self.hook = hook
        self.env = dict(os.environ)

    async def submit(self, http: httpx.AsyncClient, job_id: str, body: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO jobs (id, name, state) VALUES (?, ?, 'submitting')", (job_id, job_id)
        )
        answer = await http.post("/api/ai/queue", json=body)
        generation = answer.json()["generations"][0]["generation_id"]
        self.db.execute(
            "UPDATE jobs SET generation = ?, state = 'waiting' WHERE id = ?", (generation, job_id)
        )

    async def complete(self, http: httpx.AsyncClient, data: dict[str, Any]) -> None:
        generation = data["generation_id"]
        row = self.db.execute(
            "SELECT id FROM jobs WHERE generation = ? AND state = 'waiting'", (generation,)
        ).fetchone()
        if row is None:
            return
        job_id = row[0]
        self.db.execute("UPDATE jobs SET state = 'downloading' WHERE id = ?", (job_id,))
        temp = self.outbox / f".{generation}.part"
        final = self.outbox / f"{job_id}.mp4"
        with open(temp, "wb") as handle:
            async with http.stream(
                "GET", data["url"], headers={"Accept-Encoding": "identity"}
            ) as r:
                async for chunk in r.aiter_raw():
                    handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temp, final)
        manifest = {"job_id": job_id, "generation_id": generation, "path": str(final)}
        _write_durably(self.outbox / f"{job_id}.result.json", json.dumps(manifest).encode())
        fsync_dir(self.outbox)
        self.db.execute(
            "UPDATE jobs SET state = 'hooking', output = ? WHERE id = ?", (str(final), job_id)
        )
        fields = {
            "DROPREEL_JOB_ID": job_id,
            "DROPREEL_GENERATION_ID": generation,
            "DROPREEL_STATUS": "succeeded",
            "DROPREEL_OUTPUT": str(final),
        }
        stdin = json.dumps({k.removeprefix("DROPREEL_").lower(): v for k, v in fields.items()})
        await _run_hook(self.hook, {**self.env, **fields}, stdin.encode() + b"\n")
        self.db.execute("UPDATE jobs SET state = 'done' WHERE id = ?", (job_id,))


async def completions(floor: Floor, count: int, submitted_flag: Path) -> None:
    """Submit `count` jobs, then consume their completions from the stream."""
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(
        base_url=floor.base_url, headers=floor.headers, timeout=60.0, limits=limits
    ) as http:
        timeout = httpx.Timeout(10.0, read=None)
        async with aconnect_sse(http, "GET", "/api/events", timeout=timeout) as source:
            async with anyio.create_task_group() as group:
                for n in range(count):
                    group.start_soon(
                        floor.submit, http, f"floor-{n:06}", {"model": "m", "prompt": f"floor {n}"}
                    )
            submitted_flag.write_text("submitted\n")
            done = 0
            # As many completions at once as dropreel's benchmark config allows (16).
            limiter = anyio.CapacityLimiter(16)

            async def complete(data: dict[str, Any]) -> None:
                async with limiter:
                    await floor.complete(http, data)

            async with anyio.create_task_group() as group:
                async for event in source.aiter_sse():
                    if event.event != COMPLETED:
                        continue
                    group.start_soon(complete, json.loads(event.data))
                    done += 1
                    if done == count:
                        break


async def ingest(floor: Floor, inbox: Path, count: int) -> None:
    """Take `count` job files from `inbox`: read, commit, move aside durably, POST, commit."""
    accepted = floor.root / "accepted"
    accepted.mkdir(exist_ok=True)
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(
        base_url=floor.base_url, headers=floor.headers, timeout=60.0, limits=limits
    ) as http:
        taken = 0
        limiter = anyio.CapacityLimiter(16)

        async def one(path: Path) -> None:
            async with limiter:
                body = json.loads(path.read_bytes())
                job_id = path.stem
                os.rename(path, accepted / path.name)
                fsync_dir(accepted)
                body.setdefault("model", "m")
                await floor.submit(http, job_id, body)

        while taken < count:
            names = sorted(n for n in os.listdir(inbox) if not n.startswith("."))
            async with anyio.create_task_group() as group:
                for name in names:
                    group.start_soon(one, inbox / name)
            taken += len(names)
            if taken < count:
                await anyio.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dropreel.bench.floor")
    parser.add_argument("mode", choices=["completions", "ingest"])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--inbox", type=Path)
    parser.add_argument("--hook", default='["/bin/true"]', help="the hook's argv, as JSON")
    args = parser.parse_args(argv)
    floor = Floor(args.base_url, args.key, args.root, json.loads(args.hook))

    async def work_then_wait() -> None:
        if args.mode == "completions":
            await completions(floor, args.count, args.root / "submitted")
        else:
            await ingest(floor, args.inbox, args.count)
        (args.root / "done").write_text("done\n")
        # Alive until stopped: its CPU figures are read from /proc while it lives.
        await anyio.sleep_forever()

    anyio.run(work_then_wait)
    return 0


if __name__ == "__main__":
    sys.exit(main())
