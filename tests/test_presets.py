"""Presets: one inbox folder per look, its fields the defaults of every job dropped there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from dropreel.cli import admin
from dropreel.config import Settings, load_settings, toml_text
from dropreel.errors import ConfigError
from dropreel.intake.jobs import Routes, parse_job_file
from dropreel.intake.presets import Preset
from dropreel.lifecycle import JobState
from dropreel.state.store import Store
from dropreel_simulator.oxen import Simulator
from tests.daemon_harness import drop_job, run_daemon, until, write_config
from tests.test_e2e import dropreel

PORTRAIT = {"aspect_ratio": "portrait", "seconds": "8", "resolution": "high"}
ROUTES = Routes({"oxen": "openai-sora-2-pro", "lumenfall": "sora-2-pro"}, "oxen")


@pytest.mark.parametrize(
    ("data", "preset", "body", "provider"),
    [
        (b"a cat", Preset("p", PORTRAIT), {"prompt": "a cat", **PORTRAIT}, "oxen"),
        (
            b'{"prompt": "a cat", "seconds": "4"}',
            Preset("p", PORTRAIT),
            {"prompt": "a cat", **PORTRAIT, "seconds": "4"},
            "oxen",
        ),
        (b"a cat", Preset("p", {}, "lumenfall"), {"prompt": "a cat"}, "lumenfall"),
        (
            b'{"prompt": "a cat", "dropreel": {"provider": "oxen"}}',
            Preset("p", {}, "lumenfall"),
            {"prompt": "a cat"},
            "oxen",
        ),
        (b"a cat", Preset("p", {"model": "veo-3"}), {"prompt": "a cat", "model": "veo-3"}, "oxen"),
    ],
    ids=[
        "txt-takes-the-preset",
        "the-files-fields-win",
        "preset-provider",
        "file-provider-wins",
        "preset-model",
    ],
)
def test_a_preset_gives_defaults_and_the_file_wins(
    data: bytes, preset: Preset, body: dict[str, Any], provider: str
) -> None:
    request = parse_job_file(
        "p/x.json" if data.startswith(b"{") else "p/x.txt", data, ROUTES, preset
    )
    default_model = "sora-2-pro" if provider == "lumenfall" else "openai-sora-2-pro"
    assert request.body == {"model": default_model, **body}
    assert request.provider == provider


def config_with(tmp_path: Path, presets: str) -> Path:
    config = tmp_path / "dropreel.toml"
    config.write_text(toml_text({"oxen": {"api_key_env": "K"}}) + presets, encoding="utf-8")
    return config


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('[presets."../up"]', "presets.../up: a preset's name is its folder's name"),
        ('[presets."a/b"]', "presets.a/b: a preset's name is its folder's name"),
        ('[presets.".hidden"]', "presets..hidden: a preset's name is its folder's name"),
        ('[presets.""]', "presets.: a preset's name is its folder's name"),
        ('[presets."new\\nline"]', "presets.'new\\nline': a preset's name is its folder's name"),
        (f"[presets.{'x' * 65}]", "a preset's name is its folder's name"),
        ('[presets.p]\nprovider = "nowhere"', "presets.p.provider: 'nowhere' is not a configured"),
        ("[presets.p]\nbody = { dropreel = { image = 'a.png' } }", "presets.p: body: the dropreel"),
        ("[presets.p]\nbody = { when = 2026-12-01 }", "presets.p: body: when: "),
        ("[presets.p]\nbody = { model = 3 }", "presets.p: body.model must be a non-empty string"),
        ("[presets.p]\nbodie = {}", "presets.p.bodie: unknown key"),
    ],
    ids=[
        "dots",
        "slash",
        "hidden",
        "empty",
        "newline",
        "too-long",
        "provider",
        "options",
        "date",
        "model",
        "typo",
    ],
)
def test_a_preset_that_cannot_be_used_is_one_config_error(
    tmp_path: Path, section: str, message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(config_with(tmp_path, section), environ={})
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_good_preset_names_are_taken(tmp_path: Path) -> None:
    names = ["portrait-8s", "a", "Draft_2.v1", "9x16"]
    sections = "".join(f'[presets."{n}"]\nbody = {{ seconds = "8" }}\n' for n in names)
    settings = load_settings(config_with(tmp_path, sections), environ={})
    assert sorted(settings.preset_folders()) == sorted(names)


def with_preset(tmp_path: Path, simulator: Simulator, **sections: Any) -> Settings:
    config = write_config(tmp_path, simulator, **sections)
    with config.open("a", encoding="utf-8") as text:
        text.write(
            '[presets.portrait-8s]\nbody = { aspect_ratio = "portrait", seconds = "8",'
            ' resolution = "high" }\n'
        )
    return load_settings(config, environ={})


async def test_a_plain_prompt_in_a_presets_folder_makes_that_presets_video(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = with_preset(tmp_path, simulator)
    inbox = tmp_path / "inbox"
    drop_job(inbox / "portrait-8s", "clip.txt", "a lighthouse at dusk")
    drop_job(inbox / "portrait-8s", "short.json", json.dumps({"prompt": "p", "seconds": "4"}))
    drop_job(inbox, "clip.txt", "the same name, outside the preset")
    (inbox / "elsewhere").mkdir()
    drop_job(inbox / "elsewhere", "left.txt", "left alone")

    with capture_logs() as logs:
        await run_daemon(settings)

    sent = {body["prompt"]: body for body, _ in simulator.enqueued}
    assert sent["a lighthouse at dusk"] == {
        "prompt": "a lighthouse at dusk",
        **PORTRAIT,
        "model": "openai-sora-2-pro",
    }
    assert sent["p"]["seconds"] == "4" and sent["p"]["aspect_ratio"] == "portrait"
    assert "aspect_ratio" not in sent["the same name, outside the preset"]
    outbox = tmp_path / "outbox"
    assert sorted(p.name for p in (outbox / "portrait-8s").iterdir()) == [
        "clip.mp4",
        "clip.result.json",
        "short.mp4",
        "short.result.json",
    ]
    assert (outbox / "clip.mp4").exists()
    manifest = json.loads((outbox / "portrait-8s" / "clip.result.json").read_text())
    assert manifest["preset"] == "portrait-8s"
    assert manifest["source_file"] == "portrait-8s/clip.txt"
    assert json.loads((outbox / "clip.result.json").read_text())["preset"] is None
    assert (inbox / "elsewhere" / "left.txt").read_text() == "left alone"
    assert len([e for e in logs if e.get("folder") == "elsewhere"]) == 1


async def test_preset_folders_are_made_at_start_and_watched(
    tmp_path: Path, simulator: Simulator
) -> None:
    # Only the watch can notice the file: no rescan comes within the test.
    settings = with_preset(tmp_path, simulator, inbox={"settle_s": 0.0, "rescan_interval_s": 600})
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: run_daemon(settings, until_idle=False, stop=stop))
        await until(lambda: (tmp_path / "inbox" / "portrait-8s").is_dir())
        assert (tmp_path / "outbox" / "portrait-8s").is_dir()
        # Past the watch's first wake-up, which scans once more whatever it saw.
        await anyio.sleep(2.0)
        drop_job(tmp_path / "inbox" / "portrait-8s", "late.txt", "dropped while running")
        late = tmp_path / "outbox" / "portrait-8s" / "late.result.json"
        await until(late.exists, timeout_s=5)
        stop.set()


async def test_same_names_in_one_preset_get_numbered_stems(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = with_preset(tmp_path, simulator)
    drop_job(tmp_path / "inbox" / "portrait-8s", "clip.txt", "one")
    drop_job(tmp_path / "inbox" / "portrait-8s", "clip.json", json.dumps({"prompt": "two"}))
    await run_daemon(settings)
    assert sorted(p.name for p in (tmp_path / "outbox" / "portrait-8s").iterdir()) == [
        "clip.mp4",
        "clip.result.json",
        "clip_2.mp4",
        "clip_2.result.json",
    ]


async def test_a_claim_cut_short_in_a_presets_folder_is_finished_at_the_next_start(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = with_preset(tmp_path, simulator)
    source = drop_job(tmp_path / "inbox" / "portrait-8s", "cut.txt", "claimed, then a crash")
    # What a crash between recording the claim and moving the file leaves behind.
    async with Store.open(settings.database_path) as store:
        await store.begin_claim(
            job_id="0000000000aaaaaa",
            source_name="portrait-8s/cut.txt",
            source_path=str(source),
            kept_path=str(settings.accepted_dir / "0000000000aaaaaa-cut.txt"),
            stem="portrait-8s/cut",
            request={"prompt": "claimed, then a crash", **PORTRAIT, "model": "openai-sora-2-pro"},
        )
    await run_daemon(settings)
    assert not source.exists()
    assert (settings.accepted_dir / "0000000000aaaaaa-cut.txt").exists()
    assert (tmp_path / "outbox" / "portrait-8s" / "cut.mp4").exists()
    assert simulator.count("enqueue") == 1, "the file was claimed once, not taken again"
    async with Store.open(settings.database_path) as store:
        (job,) = await store.jobs()
    assert job.state is JobState.COMPLETED


@pytest.mark.e2e
def test_check_judges_a_file_under_its_preset(tmp_path: Path, simulator: Simulator) -> None:
    config = write_config(tmp_path, simulator)
    with config.open("a", encoding="utf-8") as text:
        text.write("[presets.square]\nbody = { seconds = 8 }\n")
    plain = tmp_path / "plain.txt"
    plain.write_text("a prompt")
    alone = dropreel("check", "--config", str(config), str(plain))
    assert alone.returncode == 0 and alone.stdout == f"{plain}: ok\n"
    (tmp_path / "inbox" / "square").mkdir(parents=True)
    dropped = tmp_path / "inbox" / "square" / "plain.txt"
    dropped.write_text("a prompt")
    for args in (["--preset", "square", str(plain)], [str(dropped)]):
        under = dropreel("check", "--config", str(config), *args)
        assert under.returncode == 1
        assert "seconds must be a string, not 8" in under.stdout


async def test_a_retried_preset_job_goes_back_into_its_presets_folder(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = with_preset(tmp_path, simulator)
    drop_job(
        tmp_path / "inbox" / "portrait-8s",
        "bad.json",
        json.dumps({"prompt": "p", "model": "bad-m"}),
    )
    await run_daemon(settings)
    async with Store.open(settings.database_path) as store:
        (job,) = await store.jobs()
    assert job.state is JobState.FAILED
    placed = await admin.retry(settings, job.job_id)
    assert placed == str(tmp_path / "inbox" / "portrait-8s" / "bad.json")
