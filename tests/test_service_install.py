"""The README's service install, run line by line on this machine as far as it allows.

The steps are read out of the README, so the two cannot drift. They run as root in a private
mount namespace where /etc, /opt, /srv and /usr/local/bin are overlays on the real ones:
the venv, the user, the folders, the config, the key and the unit land in this test's own
folder, and the machine is left as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from dropreel_simulator.oxen import Simulator

from .test_wheel import ROOT, source_copy

pytestmark = pytest.mark.e2e

# Commands this machine cannot run for real: no systemd as PID 1 here, and installing system
# packages is not a test's business (python3-venv is installed here).
NOT_RUN = ("apt-get ", "systemctl ", "journalctl ")
OVERLAID = ("/etc", "/opt", "/srv", "/usr/local/bin")
STOCK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def service_steps() -> list[str]:
    """The commands of the README's step-by-step service install, continuation lines
    joined, comments left out."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"Step by step, as root.*?```bash\n(.*?)```", text, re.DOTALL)
    assert match, "the README's service section has a step-by-step bash block"
    joined = match.group(1).replace("\\\n", " ")
    lines = (re.sub(r"\s+#\s.*$", "", line).strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def runnable(steps: list[str]) -> list[str]:
    return [step for step in steps if not step.startswith(NOT_RUN)]


def container_script(tmp_path: Path, steps: list[str], source: Path) -> str:
    """A script that lays the overlays, then runs `steps` with bash's `-eu -o pipefail`."""
    mounts = []
    for target in OVERLAID:
        layer = tmp_path / "layers" / target.strip("/").replace("/", "-")
        (layer / "upper").mkdir(parents=True)
        (layer / "work").mkdir()
        mounts.append(
            f"mount -t overlay overlay -o lowerdir={target},upperdir={layer / 'upper'},"
            f"workdir={layer / 'work'} {target}"
        )
    commands = [step.replace("/path/to/dropreel", str(source)) for step in steps]
    return "\n".join(
        ["set -euo pipefail", *mounts, "cd /", *(f"( set -x; {c} )" for c in commands)]
    )


def upper(tmp_path: Path, target: str) -> Path:
    return tmp_path / "layers" / target.strip("/").replace("/", "-") / "upper"


@pytest.mark.skipif(os.geteuid() != 0, reason="the README's steps run as root")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for overlays")
def test_the_readmes_service_install_works_up_to_systemd(
    tmp_path: Path, simulator: Simulator
) -> None:
    steps = runnable(service_steps())
    assert any("runuser -u dropreel -- dropreel check-config" in step for step in steps)
    machine_users = Path("/etc/passwd").read_bytes()
    script = container_script(tmp_path, steps, source_copy(tmp_path))
    env = {
        "PATH": STOCK_PATH,
        "HOME": os.environ.get("HOME", "/root"),
        # check-config reaches the simulator instead of the real API.
        "DROPREEL_PROVIDERS__OXEN__BASE_URL": simulator.base_url,
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},
    }
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "FAIL" not in result.stdout, result.stdout

    user = next(
        line.split(":")
        for line in (upper(tmp_path, "/etc") / "passwd").read_text().splitlines()
        if line.startswith("dropreel:")
    )
    uid = int(user[2])
    assert Path("/etc/passwd").read_bytes() == machine_users, "the machine itself is untouched"
    srv = upper(tmp_path, "/srv") / "dropreel"
    for name, mode in (("inbox", 0o2770), ("outbox", 0o2750), ("failed", 0o2750), ("state", 0o750)):
        info = (srv / name).stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (uid, mode), name
    config = (upper(tmp_path, "/etc") / "dropreel" / "config.toml").read_text()
    assert 'inbox = "/srv/dropreel/inbox"' in config
    unit = (upper(tmp_path, "/etc") / "systemd" / "system" / "dropreel.service").read_text()
    assert "ExecStart=/opt/dropreel/bin/dropreel run --config /etc/dropreel/config.toml" in unit
    assert (upper(tmp_path, "/opt") / "dropreel" / "bin" / "python3").exists()


def test_what_this_machine_cannot_run_is_said() -> None:
    skipped = [step for step in service_steps() if step.startswith(NOT_RUN)]
    assert skipped, "the README's steps start the service"
    pytest.skip("not run (no systemd as PID 1; system packages untouched): " + "; ".join(skipped))
