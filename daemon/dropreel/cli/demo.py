"""`dropreel demo`: the whole pipeline against the bundled simulator, in a temporary folder."""

from __future__ import annotations

import base64
import io
import json
import sys
import tempfile
from pathlib import Path

import anyio
from pydantic import SecretStr

from dropreel.app import assembled_daemon
from dropreel.cli import admin
from dropreel.config import Settings, load_settings, toml_text
from dropreel.ops.logs import configure_logging
from dropreel_simulator.oxen import Simulator, SimulatorOptions, running_simulator

# The demo's hook appends one line per completion: proof that hooks run, and what they get.
_HOOK = (
    "import json, os, sys; payload = json.load(sys.stdin); "
    "open(os.environ['DEMO_HOOK_LOG'], 'a').write("
    "f\"{payload['job_name']}: {payload['status']} {payload['output'] or payload['error']}\\n\")"
)

_JOBS = {
    "sunrise.txt": "A slow aerial shot of a sunrise over a foggy pine forest.",
    "city-at-night.json": json.dumps(
        {
            "prompt": "Neon-lit street in the rain, handheld camera",
            "num_generations": 2,
            "aspect_ratio": "landscape",
            "seconds": "4",
        }
    ),
    "ocean.toml": 'prompt = "Waves crashing on black sand, slow motion"\nseconds = "8"\n',
    "unknown-model.json": json.dumps({"model": "bad-model-name", "prompt": "Refused at enqueue"}),
    "broken.json": '{"prompt": "this file is cut off',
    # To the second provider, an OpenAI-compatible /v1/videos API (Lumenfall's dialect).
    "harbour.json": json.dumps(
        {
            "prompt": "Fishing boats leaving a misty harbour at dawn",
            "seconds": "4",
            "dropreel": {"provider": "lumenfall"},
        }
    ),
    # Image to video, once to each provider: the image lies beside the job in the inbox.
    "still-life-lumenfall.json": json.dumps(
        {
            "prompt": "The fruit bowl slowly rotates",
            "dropreel": {"provider": "lumenfall", "image": "still-life.png"},
        }
    ),
    "portrait-oxen.json": json.dumps(
        {"prompt": "The portrait blinks and smiles", "dropreel": {"image": "portrait.png"}}
    ),
}

# A 1x1 PNG: enough for the simulator, which checks only that it is an image.
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
_IMAGES = ("still-life.png", "portrait.png")


def run_demo() -> int:
    """Run the demo; print what happened and where the files are."""
    work = Path(tempfile.mkdtemp(prefix="dropreel-demo-"))
    hook_log = work / "hook.log"
    options = SimulatorOptions(complete_after_s=(0.3, 1.5), result_bytes=64 * 1024, seed=7)
    log_buffer = io.StringIO()
    configure_logging("info", "json", stream=log_buffer)
    with running_simulator(Simulator(options)) as simulator:
        config = work / "dropreel.toml"
        tables: dict[str, dict[str, object]] = {
            "oxen": {"base_url": simulator.base_url},
            "providers.lumenfall": {
                "kind": "openai-videos",
                "base_url": simulator.base_url + "/v1",
                "poll_interval_s": 1,
            },
            "hooks": {"on_complete": [sys.executable, "-c", _HOOK]},
            "poll": {"interval_s": 2},
        }
        config.write_text(toml_text(tables), encoding="utf-8")
        inbox = work / "inbox"
        inbox.mkdir()
        for image in _IMAGES:
            (inbox / image).write_bytes(_PNG)
        for name, text in _JOBS.items():
            (inbox / name).write_text(text, encoding="utf-8")
        print(f"dropreel demo in {work}")
        print(f"  simulator: {simulator.base_url} (Oxen) and {simulator.base_url}/v1 (Lumenfall)")
        print(f"  dropped: {len(_JOBS)} job files and {len(_IMAGES)} images in {inbox}")
        settings = load_settings(config, environ={"DEMO_HOOK_LOG": str(hook_log)})
        environ = {"DEMO_HOOK_LOG": str(hook_log), "PATH": "/usr/bin:/bin"}
        anyio.run(_run, settings, environ)
        counts = simulator.counts()
        polls = simulator.polls_while_streaming()
    (work / "dropreel.log").write_text(log_buffer.getvalue(), encoding="utf-8")
    print()
    print("jobs (dropreel status):")
    table = anyio.run(lambda: admin.status(settings, as_json=False))
    for line in table.splitlines():
        print(f"  {line}")
    print()
    _print_folder("outbox", settings.outbox_dir)
    _print_folder("failed", settings.failed_dir)
    print()
    print("hook runs:")
    for line in hook_log.read_text(encoding="utf-8").splitlines() if hook_log.exists() else []:
        print(f"  {line}")
    print()
    print(
        f"requests to Oxen: {counts.get('enqueue', 0)} POST, "
        f"{counts.get('events', 0)} event stream, {counts.get('download', 0)} downloads, "
        f"{polls} status polls while the stream was up"
    )
    print(
        f"requests to Lumenfall: {counts.get('video-create', 0)} POST, "
        f"{counts.get('video-list', 0)} listings, {counts.get('video-get', 0)} single look-ups, "
        f"{counts.get('video-download', 0)} downloads"
    )
    print(f"kept originals and images: {settings.accepted_dir}")
    print(f"daemon log: {work / 'dropreel.log'}")
    return 0


async def _run(settings: Settings, environ: dict[str, str]) -> None:
    async with assembled_daemon(settings, SecretStr("demo-key"), environ=environ) as daemon:
        with anyio.fail_after(120):
            await daemon.run(anyio.Event(), until_idle=True)


def _print_folder(label: str, folder: Path) -> None:
    print(f"{label}: {folder}")
    for path in sorted(folder.iterdir()):
        print(f"  {path.name}  ({path.stat().st_size} bytes)")
