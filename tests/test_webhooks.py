"""Webhooks beside command hooks: signed per Standard Webhooks, retried under one webhook-id,
recorded and re-runnable; checked by a real receiver on loopback that verifies signatures
itself."""

from __future__ import annotations

import base64
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from dropreel.cli import admin
from dropreel.cli.rerun import rerun_hooks
from dropreel.config import Settings, load_settings, read_webhook_key
from dropreel.errors import ConfigError
from dropreel.hooks.webhook import message_id, parse_secret, signature, webhook_body
from dropreel_simulator.oxen import Simulator

from .daemon_harness import (
    db_rows,
    drop_job,
    hook_argv,
    hook_lines,
    run_daemon,
    settings_for,
    write_config,
)
from .test_e2e import dropreel, start_daemon, wait_for
from .webhook_receiver import SECRET, Receiver, receiving, verifies


def test_the_signature_is_the_specs() -> None:
    # The example in the Standard Webhooks specification and its reference libraries.
    key = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    assert (
        signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 'does not start with "whsec_"'),
        ("whsec_not base64!!", 'is not "whsec_" followed by base64'),
        ("whsec_" + base64.b64encode(b"short").decode(), "holds 5 bytes"),
    ],
)
def test_a_secret_that_cannot_sign_says_why_without_quoting_it(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as refused:
        parse_secret(text)
    assert text.removeprefix("whsec_") not in str(refused.value)


def test_one_delivery_keeps_one_id() -> None:
    assert message_id("g-1") == message_id("g-1") != message_id("g-2")
    assert message_id("g-1").startswith("msg_")


def test_the_body_holds_the_command_hooks_fields() -> None:
    fields = {"DROPREEL_JOB_ID": "j", "DROPREEL_STATUS": "failed", "DROPREEL_ERROR": "é"}
    assert json.loads(webhook_body(fields)) == {"job_id": "j", "status": "failed", "error": "é"}


def webhook_settings(
    tmp_path: Path, simulator: Simulator, receiver: Receiver, **hooks: Any
) -> Settings:
    secret = tmp_path / "webhook-secret"
    secret.write_text(SECRET + "\n")
    return settings_for(
        tmp_path,
        simulator,
        hooks={
            "on_complete_url": receiver.url,
            "webhook_secret_file": str(secret),
            "retry_initial_s": 0.05,
            **hooks,
        },
    )


def generation_row(settings: Settings) -> sqlite3.Row:
    [row] = db_rows(settings.database_path, "SELECT * FROM generations")
    return row


async def test_a_receiver_that_fails_twice_gets_the_same_delivery_three_times(
    tmp_path: Path, simulator: Simulator
) -> None:
    with receiving() as receiver:
        receiver.answers = [500, 503]
        log = tmp_path / "hooks.log"
        settings = webhook_settings(tmp_path, simulator, receiver, on_complete=hook_argv(log))
        drop_job(tmp_path / "inbox", "sunrise.txt", "a sunrise")
        await run_daemon(settings)
    first, second, third = receiver.received
    assert all(r.signed for r in receiver.received), "every attempt verifies"
    assert first.webhook_id == second.webhook_id == third.webhook_id
    assert first.body == second.body == third.body
    # The same fields as the command hook's stdin, which ran beside it.
    [stdin] = hook_lines(log)
    assert third.payload == stdin
    assert stdin["status"] == "succeeded"
    assert stdin["output"] == str(tmp_path / "outbox" / "sunrise.mp4")
    assert abs(third.timestamp - time.time()) < 30
    row = generation_row(settings)
    assert (row["webhook_state"], row["webhook_attempts"], row["webhook_error"]) == ("ok", 3, None)
    story = await admin.show(settings, row["job_id"])
    runs = story.split("hook runs")[1]
    assert runs.count("failed: webhook: HTTP 500") == 1
    assert runs.count("failed: webhook: HTTP 503") == 1
    assert runs.count("ok: webhook: HTTP 204") == 1
    assert "ok: exit 0" in runs, "the command hook's run is listed beside them"
    assert "token" not in story, "the URL's query is never shown"


async def test_a_webhook_that_gives_up_is_shown_and_run_again(
    tmp_path: Path, simulator: Simulator
) -> None:
    with receiving() as receiver:
        # The first attempt is answered too late (a time-out), the second is refused.
        receiver.answers = [204, 500]
        receiver.delays = [1.0]
        settings = webhook_settings(tmp_path, simulator, receiver, max_attempts=2, timeout_s=0.3)
        drop_job(tmp_path / "inbox", "sunset.txt", "a sunset")
        await run_daemon(settings)
        row = generation_row(settings)
        assert (row["webhook_state"], row["webhook_attempts"]) == ("gave_up", 2)
        table = await admin.status(settings, as_json=False)
        assert "hook-gave-up" in table
        assert "webhook gave up after 2 tries: webhook: HTTP 500" in table
        story = await admin.show(settings, row["job_id"])
        assert "timed out after 0.3s" in story
        # No daemon runs: the command sends it itself, once, under the same id.
        ran, lines = await rerun_hooks(settings, row["job_id"])
    assert ran, lines
    assert lines.startswith(f"webhook of {row['generation_id']}")
    assert "ran: webhook: HTTP 204" in lines
    assert len({r.webhook_id for r in receiver.received}) == 1
    assert len(receiver.received) == 3
    assert generation_row(settings)["webhook_state"] == "ok"


async def test_a_webhook_needs_a_usable_secret(tmp_path: Path, simulator: Simulator) -> None:
    with receiving() as receiver:
        settings = webhook_settings(tmp_path, simulator, receiver)
    secret_file = settings.webhook_secret_path
    assert secret_file is not None
    leaked = "whsec_" + "c2VjcmV0IHRoYXQgaXMgbm90IGJhc2U2NA=!"
    secret_file.write_text(leaked)
    with pytest.raises(ConfigError) as refused:
        read_webhook_key(settings)
    assert str(refused.value) == (
        f"config error: hooks.webhook_secret_file: the secret in {secret_file} is not "
        '"whsec_" followed by base64'
    )
    healthy, lines = await admin.check_config(settings)
    assert not healthy
    assert (
        f'FAIL  hooks.webhook_secret_file: the secret in {secret_file} is not "whsec_" '
        "followed by base64"
    ) in lines
    config = write_config(
        tmp_path,
        simulator,
        hooks={"on_complete_url": "https://a.test/r", "webhook_secret_file": str(secret_file)},
    )
    started = dropreel("run", "--config", str(config))
    assert started.returncode == 2
    assert started.stderr.splitlines() == [f"dropreel: {refused.value}"]
    assert "c2VjcmV0" not in started.stderr + started.stdout
    config = write_config(tmp_path, simulator, hooks={"on_complete_url": "https://a.test/r"})
    with pytest.raises(ConfigError, match="on_complete_url needs webhook_secret_file"):
        load_settings(config, environ={})


@pytest.mark.e2e
def test_the_real_daemon_signs_reruns_and_never_logs_the_secret(
    tmp_path: Path, simulator: Simulator
) -> None:
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(SECRET)
    log = tmp_path / "daemon.log"
    with receiving() as receiver:
        receiver.answers = [502, 500]
        config = write_config(
            tmp_path,
            simulator,
            hooks={
                "on_complete_url": receiver.url,
                "webhook_secret_file": str(secret_file),
                "retry_initial_s": 0.05,
                "max_attempts": 2,
            },
            log={"level": "debug", "format": "json"},
        )
        drop_job(tmp_path / "inbox", "reel.json", json.dumps({"prompt": "a reel"}))
        with log.open("w") as output:
            process = start_daemon(config, output)
        try:
            wait_for(lambda: "webhook gave up" in log.read_text(), 30, "the webhook to give up")
            status = dropreel("status", "--json", "--config", str(config)).stdout
            [job] = [json.loads(line) for line in status.splitlines()]
            assert job["state"] == "hook-gave-up"
            # The daemon runs: it sends the webhook again itself, under the same id.
            rerun = dropreel("hooks", "rerun", job["short_id"], "--config", str(config))
            assert rerun.returncode == 0, rerun.stdout + rerun.stderr
            assert "ran: webhook: HTTP 204" in rerun.stdout
            status = dropreel("status", "--json", "--config", str(config)).stdout
            show = dropreel("show", job["short_id"], "--config", str(config)).stdout
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
    assert [r.signed for r in receiver.received] == [True, True, True]
    assert len({r.webhook_id for r in receiver.received}) == 1
    assert json.loads(status)["generations"][0]["webhook_state"] == "ok"
    assert verifies(SECRET, "x", "1", b"", "v1,wrong") is False, "the receiver does check"
    written = log.read_bytes() + (tmp_path / "state" / "dropreel.sqlite3").read_bytes()
    written += (status + show + rerun.stdout).encode()
    for manifest in (tmp_path / "outbox").glob("*.json"):
        written += manifest.read_bytes()
    for form in (SECRET, SECRET.removeprefix("whsec_"), base64.b64decode(SECRET[6:]).decode()):
        assert form.encode() not in written, "the secret is never written anywhere"
