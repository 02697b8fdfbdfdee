"""The key stays secret: refused in one line when it cannot be a key, masked in everything
dropreel writes or shows whatever the provider echoes, and out of every hook's reach."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from dropreel.config import load_settings, read_api_key
from dropreel.errors import ConfigError
from dropreel.ops.keyguard import key_problem
from dropreel.ops.logs import configure_logging
from dropreel.ops.redact import MASK, forget_secrets, remember_secret, stored_text
from dropreel_simulator.oxen import Simulator, SimulatorOptions, running_simulator

from .daemon_harness import drop_job, write_config
from .test_e2e import daemon_env, dropreel, start_daemon, wait_for

SECOND_KEY = "lf-second-provider-key-42"
KEY = "sk-live-5ecret-key-0123456789"

# Records its environment and its parent's initial one (/proc/PPID/environ), and its stdin.
SNOOPING_HOOK = (
    "import json, os, sys\n"
    "parent = open(f'/proc/{os.getppid()}/environ', 'rb').read().decode('utf-8', 'replace')\n"
    "record = {'env': dict(os.environ), 'parent': parent, 'stdin': sys.stdin.read()}\n"
    "open(sys.argv[1], 'a').write(json.dumps(record) + '\\n')\n"
)


@pytest.fixture(autouse=True)
def no_remembered_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (f"{KEY}\nsecond-line", "holds 2 lines; the key must be one line"),
        (f"{KEY}\x1b[2J", "holds a space or control character at position 30"),
        (f"sk-{KEY}é", "holds a non-ASCII character at position 33"),
        ("sk live", "holds a space or control character at position 3"),
        ("", "is empty"),
    ],
)
def test_a_key_that_cannot_travel_in_a_header_is_refused_without_quoting_it(
    key: str, problem: str
) -> None:
    assert key_problem(key) == problem


def test_a_key_file_with_a_second_line_is_refused_in_one_line_that_hides_it(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(f"{KEY}\nleftover\n")
    settings = load_settings(None, environ={"DROPREEL_OXEN__API_KEY_FILE": str(key_file)})
    with pytest.raises(ConfigError) as refused:
        read_api_key(settings)
    message = str(refused.value)
    assert "holds 2 lines" in message and str(key_file) in message
    assert KEY not in message and "leftover" not in message and "\n" not in message


def test_a_usable_key_is_masked_in_every_log_line_from_then_on() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    remember_secret(KEY)
    logger = structlog.get_logger("test")
    logger.warning("provider said", error=f"bad header Authorization: Bearer {KEY}")
    try:
        raise RuntimeError(f"echo {KEY}")
    except RuntimeError:
        logger.exception("failed")
    output = stream.getvalue()
    assert KEY not in output
    assert output.count(MASK) == 2


def test_stored_failure_text_is_masked_and_bounded() -> None:
    remember_secret(KEY)
    text = stored_text(f"{KEY} " + "x" * 200_000)
    assert KEY not in text
    assert len(text) < 4200 and text.endswith("more characters)")


def test_the_running_daemon_cannot_dump_its_memory(tmp_path: Path) -> None:
    probe = (
        "import ctypes; from dropreel.ops.keyguard import make_undumpable; make_undumpable(); "
        "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"  # PR_GET_DUMPABLE
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=30
    )
    assert done.stdout.strip() == "0"


@pytest.mark.e2e
def test_a_bad_key_stops_run_and_check_config_with_one_line(tmp_path: Path) -> None:
    with running_simulator(Simulator(SimulatorOptions())) as simulator:
        config = write_config(tmp_path, simulator)
        env = daemon_env(OXEN_API_KEY=f"{KEY}\x07")
        run = dropreel("run", "--config", str(config), env=env)
        checked = dropreel("check-config", "--config", str(config), env=env)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "position 30" in run.stderr
    assert checked.returncode == 1 and "FAIL  api key:" in checked.stdout
    for output in (run.stdout, run.stderr, checked.stdout, checked.stderr):
        assert KEY not in output


def every_byte_under(*folders: Path) -> bytes:
    return b"".join(
        path.read_bytes() for folder in folders for path in folder.rglob("*") if path.is_file()
    )


@pytest.mark.e2e
@pytest.mark.parametrize("delivery", ["environment", "systemd-credential", "two-providers"])
def test_nothing_dropreel_writes_shows_or_starts_holds_the_key(
    tmp_path: Path, delivery: str
) -> None:
    options = SimulatorOptions(
        complete_after_s=(0.1, 0.3),
        failure_rate=1.0,
        api_key=KEY,
        echo_credentials=True,
        # The first POST is refused with the key quoted back; the other job's generation
        # fails with it in its message.
        fail_next={"enqueue": [(400, {})]},
    )
    hook_log = tmp_path / "hook.jsonl"
    with running_simulator(Simulator(options)) as simulator:
        second = (
            {
                "providers.lumenfall": {
                    "kind": "openai-videos",
                    "base_url": simulator.base_url + "/v1",
                }
            }
            if delivery == "two-providers"
            else {}
        )
        config = write_config(
            tmp_path,
            simulator,
            hooks={"on_complete": [sys.executable, "-c", SNOOPING_HOOK, str(hook_log)]},
            **second,
        )
        if delivery == "environment":
            env = daemon_env(OXEN_API_KEY=KEY)
        elif delivery == "two-providers":
            env = daemon_env(OXEN_API_KEY=KEY, LUMENFALL_API_KEY=SECOND_KEY)
        else:
            credentials = tmp_path / "credentials"
            credentials.mkdir()
            (credentials / "oxen-api-key").write_text(KEY + "\n")
            env = daemon_env(
                CREDENTIALS_DIRECTORY=str(credentials),
                DROPREEL_OXEN__API_KEY_FILE=str(credentials / "oxen-api-key"),
            )
        drop_job(tmp_path / "inbox", "refused.txt", "a cat")
        drop_job(tmp_path / "inbox", "failing.txt", "a dog")
        output = tmp_path / "daemon.log"
        with output.open("w") as out:
            daemon = start_daemon(config, out, env)
            try:
                wait_for(hook_log.exists, 30, "the hook of the failed generation")
                own_environ = Path(f"/proc/{daemon.pid}/environ").read_bytes()
                wait_for(lambda: len(list((tmp_path / "failed").glob("*.json"))) > 0, 30, "sidecar")
            finally:
                daemon.terminate()
                daemon.wait(timeout=30)
        assert len(simulator.generations) == 1, "the refused POST created nothing"
        shown = [
            dropreel("status", "--config", str(config), env=env).stdout,
            dropreel("status", "--json", "--config", str(config), env=env).stdout,
            dropreel("check-config", "--config", str(config), env=env).stdout,
        ]
        for line in shown[1].splitlines():
            job_id = json.loads(line)["job_id"]
            shown.append(dropreel("show", job_id, "--config", str(config), env=env).stdout)

    secret = KEY.encode()
    assert secret not in own_environ and SECOND_KEY.encode() not in own_environ
    hooks = [json.loads(line) for line in hook_log.read_text().splitlines()]
    assert hooks, "the hook ran"
    for record in hooks:
        assert KEY not in json.dumps(record) and SECOND_KEY not in json.dumps(record)
        assert "CREDENTIALS_DIRECTORY" not in record["env"]
        assert "CREDENTIALS_DIRECTORY" not in record["parent"]
        assert not any("oxen-api-key" in v for v in record["env"].values())
        assert "oxen-api-key" not in record["parent"]
        assert MASK in json.loads(record["stdin"])["error"]
    written = every_byte_under(tmp_path / "state", tmp_path / "failed", tmp_path / "outbox")
    assert secret not in written and MASK.encode() in written
    assert secret not in output.read_bytes()
    for text in shown:
        assert KEY not in text
    assert any(MASK in text for text in shown)
