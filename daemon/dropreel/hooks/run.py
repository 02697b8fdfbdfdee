"""Completion hooks: what a hook is told, and running it as a bounded child process."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dropreel.delivery.download import generation_outcome
from dropreel.hooks.spawn import spawn_and_wait
from dropreel.ops.keyguard import KeySources
from dropreel.ops.redact import stored_text
from dropreel.state.records import GenerationRow, JobRow


def hook_fields(job: JobRow, generation: GenerationRow) -> dict[str, str]:
    """The facts a hook gets, keyed by their environment variable names."""
    outcome = generation_outcome(generation)
    output = ""
    if outcome == "succeeded" and generation.output_path:
        output = str(Path(generation.output_path).absolute())
    return {
        "DROPREEL_JOB_ID": job.job_id,
        "DROPREEL_JOB_NAME": job.stem,
        "DROPREEL_GENERATION_ID": generation.generation_id,
        "DROPREEL_STATUS": outcome,
        "DROPREEL_OUTPUT": output,
        "DROPREEL_ERROR": stored_text(generation.error or "") if outcome != "succeeded" else "",
    }


def hook_payload(fields: Mapping[str, str]) -> dict[str, str]:
    """The facts keyed without the DROPREEL_ prefix, lower case (stdin's and webhooks')."""
    return {k.removeprefix("DROPREEL_").lower(): v for k, v in fields.items()}


def hook_stdin(fields: Mapping[str, str]) -> bytes:
    """The same facts as one JSON object."""
    return (json.dumps(hook_payload(fields), ensure_ascii=False) + "\n").encode("utf-8")


def hook_environment(
    inherited: Mapping[str, str], fields: Mapping[str, str], key: KeySources | None
) -> dict[str, str]:
    """The daemon's environment without anything that holds or locates the key, plus the
    hook's fields."""
    env = dict(inherited) if key is None else key.scrub(inherited)
    env.update(fields)
    return env


def hook_problem(argv: Sequence[str], search_path: str | None) -> str | None:
    """Why this hook could not be started (told before any job needs it), or None."""
    program = argv[0]
    if not program:
        return "the program to run is empty"
    if "/" not in program:
        if shutil.which(program, path=search_path) is None:
            return f"{program!r} is not found on PATH ({search_path or 'unset'})"
        return None
    where = Path(program)
    if not where.exists():
        return f"{program} does not exist"
    if not where.is_file():
        return f"{program} is not a file"
    if not os.access(where, os.X_OK):
        return f"{program} is not executable (chmod +x it)"
    return None


@dataclass(frozen=True, slots=True)
class HookResult:
    ok: bool
    detail: str


async def run_hook(
    argv: Sequence[str], env: Mapping[str, str], stdin: bytes, *, timeout_s: float
) -> HookResult:
    """Run one hook to completion or time-out; a time-out kills it. The detail says how it
    ended, after how long, and the tail of what it printed."""
    started = time.monotonic()
    try:
        ended = await spawn_and_wait(argv, env, stdin, timeout_s=timeout_s)
    except OSError as exc:
        return HookResult(False, f"cannot start {argv[0]!r}: {exc.strerror or exc}")
    output = bytearray(ended.output)
    if ended.returncode is None:
        return HookResult(False, f"timed out after {timeout_s:g}s{_tail(output)}")
    took = f"after {time.monotonic() - started:.2f}s"
    if ended.returncode == 0:
        return HookResult(True, f"exit 0 {took}")
    return HookResult(False, f"exit status {ended.returncode} {took}{_tail(output)}")


def _tail(output: bytearray) -> str:
    text = output.decode("utf-8", "replace").strip()
    return f": {text[-500:]}" if text else ""
