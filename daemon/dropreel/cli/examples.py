"""An example for each command, shown at the end of its `--help`."""

from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    "run": (
        "dropreel run --config /etc/dropreel/config.toml",
        "dropreel run --until-idle        # take what is in the inbox, finish it, exit",
    ),
    "submit": ("dropreel submit sunrise.txt city.json   # prints where each copy landed",),
    "status": ("dropreel status", "dropreel status --json | jq .state"),
    "watch": (
        "dropreel watch                   # q or Ctrl-C quits",
        "dropreel watch --once | mail -s reels ops@example.org   # one plain snapshot",
    ),
    "show": ("dropreel show 5abd   # the short id `dropreel status` shows; a whole id works too",),
    "cancel": ("dropreel cancel 5abd",),
    "hooks": ("dropreel hooks rerun 5abd   # a short id from `dropreel status`",),
    "hooks rerun": (
        "dropreel hooks rerun 5abd                # every hook of the job that gave up",
        "runuser -u dropreel -- dropreel hooks rerun 5abd   # as the service user",
    ),
    "spend": (
        "dropreel spend --since 2026-12-01   # per day, provider and model; estimates marked",
        "dropreel spend --since 7d --json | jq .cost_usd",
    ),
    "retry": ("dropreel retry 5abd   # once: a second retry names the job it became",),
    "check-config": ("OXEN_API_KEY=... dropreel check-config --config /etc/dropreel/config.toml",),
    "check": (
        "dropreel check neon.json shots.csv   # one line per problem; exit 1 if any",
        "dropreel check --preset portrait-8s lighthouse.txt",
    ),
    "demo": ("dropreel demo   # no key, no network: a simulator on loopback",),
    "simulate": (
        "dropreel simulate --port 8765 --complete-after 5",
        "DROPREEL_OXEN__BASE_URL=http://127.0.0.1:8765 dropreel run   # in another terminal",
    ),
    "init": (
        "dropreel init ~/reels            # ~/reels/{inbox,outbox,failed,state}, dropreel.toml",
        "dropreel init /srv/dropreel --config /etc/dropreel/config.toml",
    ),
    "install-unit": (
        "dropreel install-unit            # /etc/systemd/system/dropreel.service",
        "dropreel install-unit --print | less",
    ),
    "completion": (
        "dropreel completion bash > /etc/bash_completion.d/dropreel",
        "echo 'eval \"$(dropreel completion zsh)\"' >> ~/.zshrc   # after compinit",
        "dropreel completion fish > ~/.config/fish/completions/dropreel.fish",
    ),
}


def epilog(command: str) -> str | None:
    """The examples section of `command`'s help, if it has examples."""
    lines = EXAMPLES.get(command)
    if lines is None:
        return None
    return "\n".join(["example:" if len(lines) == 1 else "examples:", *(f"  {x}" for x in lines)])
