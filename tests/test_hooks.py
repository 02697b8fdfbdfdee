from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from dropreel.config import load_settings
from dropreel.hooks.run import hook_environment, hook_fields, hook_problem, hook_stdin, run_hook
from dropreel.lifecycle import Phase, RemoteStatus
from dropreel.ops.keyguard import KeySources
from dropreel.state.records import GenerationRow

from .rows import generation_row, job_row

JOB = job_row(stem="cat")


def generation(status: RemoteStatus, output: str | None, error: str | None) -> GenerationRow:
    return generation_row(
        remote_status=status, phase=Phase.HOOKING, output_path=output, error=error
    )


def test_a_success_tells_the_hook_where_the_file_is() -> None:
    fields = hook_fields(JOB, generation(RemoteStatus.SUCCEEDED, "/out/cat.mp4", None))
    assert fields == {
        "DROPREEL_JOB_ID": "j1",
        "DROPREEL_JOB_NAME": "cat",
        "DROPREEL_GENERATION_ID": "g1",
        "DROPREEL_STATUS": "succeeded",
        "DROPREEL_OUTPUT": "/out/cat.mp4",
        "DROPREEL_ERROR": "",
    }


def test_a_failure_has_no_output_and_says_why() -> None:
    fields = hook_fields(JOB, generation(RemoteStatus.FAILED, None, "Insufficient credits"))
    assert fields["DROPREEL_STATUS"] == "failed"
    assert fields["DROPREEL_OUTPUT"] == ""
    assert fields["DROPREEL_ERROR"] == "Insufficient credits"


def test_a_success_we_could_not_download_is_a_failure() -> None:
    fields = hook_fields(JOB, generation(RemoteStatus.SUCCEEDED, None, "download failed 5 times"))
    assert fields["DROPREEL_STATUS"] == "failed"
    assert fields["DROPREEL_ERROR"] == "download failed 5 times"


def test_unknown_outcomes_are_reported_as_failed() -> None:
    fields = hook_fields(JOB, generation(RemoteStatus.UNKNOWN, None, "forgotten"))
    assert fields["DROPREEL_STATUS"] == "failed"


def test_stdin_carries_the_same_facts_as_json() -> None:
    fields = hook_fields(JOB, generation(RemoteStatus.CANCELLED, None, "cancelled"))
    assert json.loads(hook_stdin(fields)) == {
        "job_id": "j1",
        "job_name": "cat",
        "generation_id": "g1",
        "status": "cancelled",
        "output": "",
        "error": "cancelled",
    }


def test_neither_the_key_nor_where_it_lives_reaches_a_hook() -> None:
    key = KeySources(
        ("sk-123456789", "lf-987654321"),
        ("OXEN_API_KEY", "LUMENFALL_API_KEY"),
        (Path("/run/credentials/d/oxen-api-key"),),
    )
    inherited = {
        "PATH": "/bin",
        "OXEN_API_KEY": "anything",
        "LUMENFALL_API_KEY": "anything",
        "COPY": "x sk-123456789 y",
        "OTHER": "lf-987654321",
        "CREDENTIALS_DIRECTORY": "/run/credentials/d",
        "DROPREEL_OXEN__API_KEY_FILE": "/run/credentials/d/oxen-api-key",
        "HOME": "/h",
    }
    env = hook_environment(inherited, {"DROPREEL_JOB_ID": "j1"}, key)
    assert env == {"PATH": "/bin", "HOME": "/h", "DROPREEL_JOB_ID": "j1"}


async def test_a_hook_gets_environment_and_stdin(tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    script = (
        "import json, os, sys; "
        "json.dump({'stdin': json.load(sys.stdin), 'env': os.environ['DROPREEL_STATUS']}, "
        f"open({str(out)!r}, 'w'))"
    )
    fields = {"DROPREEL_STATUS": "succeeded", "DROPREEL_JOB_ID": "j1"}
    result = await run_hook(
        [sys.executable, "-c", script],
        {"PATH": "/usr/bin:/bin", **fields},
        hook_stdin(fields),
        timeout_s=30,
    )
    assert result.ok, result.detail
    assert json.loads(out.read_text()) == {
        "stdin": {"status": "succeeded", "job_id": "j1"},
        "env": "succeeded",
    }


async def test_a_failing_hook_reports_its_status_and_output() -> None:
    script = "import sys; print('cannot publish'); sys.exit(3)"
    result = await run_hook([sys.executable, "-c", script], {}, b"{}", timeout_s=30)
    assert not result.ok
    assert re.fullmatch(r"exit status 3 after \d+\.\d\ds: cannot publish", result.detail)


async def test_a_hook_that_succeeds_says_how_long_it_took() -> None:
    result = await run_hook([sys.executable, "-c", "pass"], {}, b"{}", timeout_s=30)
    assert result.ok and re.fullmatch(r"exit 0 after \d+\.\d\ds", result.detail)


async def test_a_hanging_hook_is_killed_at_its_timeout() -> None:
    script = "import time; time.sleep(60)"
    result = await run_hook([sys.executable, "-c", script], {}, b"{}", timeout_s=0.5)
    assert not result.ok and "timed out after 0.5s" in result.detail


async def test_a_missing_hook_program_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    result = await run_hook([str(tmp_path / "nope")], {}, b"{}", timeout_s=5)
    assert not result.ok and "cannot start" in result.detail


async def test_a_hook_that_ignores_stdin_is_fine() -> None:
    result = await run_hook(["/bin/true"], {}, b"x" * 1_000_000, timeout_s=30)
    assert result.ok, result.detail


def test_a_hook_that_cannot_start_is_named_with_the_reason(tmp_path: Path) -> None:
    script = tmp_path / "notify.sh"
    script.write_text("#!/bin/sh\n")
    assert (
        hook_problem([str(script)], "/usr/bin:/bin") == f"{script} is not executable (chmod +x it)"
    )
    script.chmod(0o755)
    assert hook_problem([str(script), "arg"], "/usr/bin:/bin") is None
    assert (
        hook_problem([str(tmp_path / "gone.sh")], None) == f"{tmp_path / 'gone.sh'} does not exist"
    )
    assert hook_problem([str(tmp_path)], None) == f"{tmp_path} is not a file"
    assert hook_problem(["no-such-program-xyz"], "/usr/bin:/bin") == (
        "'no-such-program-xyz' is not found on PATH (/usr/bin:/bin)"
    )
    assert hook_problem(["sh", "-c", "true"], "/usr/bin:/bin") is None
    assert hook_problem([""], None) == "the program to run is empty"


def test_a_relative_hook_program_resolves_against_the_config_folder(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "dropreel.toml"
    config.parent.mkdir()
    config.write_text('[hooks]\non_complete = ["./bin/notify.sh", "./arg"]\n')
    settings = load_settings(config, environ={})
    assert settings.hook_argv == (str(tmp_path / "etc" / "bin" / "notify.sh"), "./arg")
    config.write_text('[hooks]\non_complete = ["notify-send", "done"]\n')
    assert load_settings(config, environ={}).hook_argv == ("notify-send", "done")
