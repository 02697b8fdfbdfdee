"""The `dropreel` command line."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path

import anyio
import structlog
from pydantic import SecretStr

from dropreel import __version__
from dropreel.app import assembled_daemon
from dropreel.cli import admin
from dropreel.cli.examples import epilog
from dropreel.cli.rerun import rerun_hooks
from dropreel.cli.setup import SETUP_COMMANDS
from dropreel.config import (
    Settings,
    accepted_key,
    key_prefix,
    key_sources,
    load_settings,
    read_api_keys,
    read_webhook_key,
)
from dropreel.errors import CommandError, ConfigError, CopyRefused, StateError
from dropreel.fs.layout import overlap_problem
from dropreel.fs.moves import copy_into_folder, probe_folder
from dropreel.hooks.run import hook_problem
from dropreel.intake.jobs import MAX_JOB_FILE_BYTES, is_ignored_name
from dropreel.ops.keyguard import make_undumpable, reexec_without_keys, take_handed_keys
from dropreel.ops.logs import configure_logging
from dropreel.ops.notify import Notifier
from dropreel.service import Daemon
from dropreel.state.lock import AlreadyRunning, hold_state_lock
from dropreel.state.store import state_problem

log = structlog.get_logger("dropreel.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dropreel",
        description="Drop job files into a folder; get generated videos back.",
    )
    parser.add_argument("--version", action="version", version=f"dropreel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help_text: str, config_help: str = "the TOML config file"
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("--config", type=Path, metavar="PATH", help=config_help)
        return sub

    run = command("run", "run the daemon in the foreground (SIGTERM/SIGINT stop it)")
    run.add_argument(
        "--until-idle",
        action="store_true",
        help="exit once the inbox is empty and every job has finished",
    )
    submit = command("submit", "copy job files into the inbox atomically")
    submit.add_argument("files", nargs="+", type=Path, metavar="FILE")
    status = command("status", "one line per job: where it stands and why; a summary")
    status.add_argument("--json", action="store_true", help="one JSON object per job")
    status.add_argument(
        "--state", action="append", default=[], metavar="STATE", help="only jobs in STATE"
    )
    status.add_argument("--since", metavar="WHEN", help="only jobs accepted since (2h, 2026-12-01)")
    watch = command("watch", "a live view of the jobs at work, their progress and the streams")
    watch.add_argument(
        "--once", action="store_true", help="print one plain snapshot and exit (also off a TTY)"
    )
    show = command("show", "the whole story of one job: transitions, attempts, errors, files")
    show.add_argument("job_id", metavar="ID", help="a job id, its short id, or its start")
    cancel = command("cancel", "cancel a job at the provider (or before it is submitted)")
    cancel.add_argument("job_id", metavar="ID")
    retry = command("retry", "resubmit a needs_attention or failed job (this may be billed)")
    retry.add_argument("job_id", metavar="ID")
    hooks_help = "the completion hooks: rerun those that gave up"
    hooks = commands.add_parser(
        "hooks",
        help=hooks_help,
        description=hooks_help,
        epilog=epilog("hooks"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rerun_help = "run again every hook of a job (or of one generation) that gave up"
    rerun = hooks.add_subparsers(dest="hooks_command", required=True, metavar="ACTION").add_parser(
        "rerun",
        help=rerun_help,
        description=rerun_help,
        epilog=epilog("hooks rerun"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rerun.add_argument("job_id", metavar="ID", help="a job or generation id, short id or start")
    rerun.add_argument("--config", type=Path, metavar="PATH", help="the TOML config file")
    # Spend (issue 12).
    spend = command("spend", "what generations cost, per day, model and provider")
    spend.add_argument("--since", metavar="WHEN", help="only generations since (2h, 2026-12-01)")
    spend.add_argument("--json", action="store_true", help="one JSON object per line")
    command("check-config", "check the config, the key, the folders, the API and the stream")
    # issue 12: validate before paying.
    check = command("check", "judge job files as the daemon would, their model's schema included")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.add_argument("--preset", metavar="NAME", help="judge them as if dropped in NAME's folder")
    command("demo", "run the whole pipeline against a local simulator, no API key needed")
    simulate = command(
        "simulate",
        "serve the provider simulator (Oxen and /v1/videos) on loopback until interrupted",
    )
    simulate.add_argument("--port", type=int, default=8765)
    simulate.add_argument("--complete-after", type=float, default=2.0, metavar="SECONDS")
    simulate.add_argument("--failure-rate", type=float, default=0.0, metavar="FRACTION")
    simulate.add_argument("--legacy-api", action="store_true", help="behave like the older docs")
    init = command(
        "init",
        "make the folders and a commented starter config, then say what to do next",
        config_help="where to write the config (default: DIR/dropreel.toml); never overwritten",
    )
    init.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="where the folders go (default: here)",
    )
    unit = command(
        "install-unit",
        "install the systemd unit, set to start this dropreel with the config given",
        config_help="the config the service reads (default: /etc/dropreel/config.toml)",
    )
    where = unit.add_mutually_exclusive_group()
    where.add_argument("--print", action="store_true", help="print the unit instead")
    where.add_argument(
        "path",
        nargs="?",
        type=Path,
        metavar="PATH",
        help="the unit file or its folder (default: /etc/systemd/system)",
    )
    completion = command("completion", "print the shell completion script for a shell")
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = _main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (`| head`) has all it wanted; the rest has nowhere to go.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        # Ctrl-C where no handler of ours is installed (the simulator, start-up): just stop.
        return 128 + signal.SIGINT
    return status


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:
        # A shell asking for completions (see `dropreel completion`): answer, then exit.
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    try:
        if args.command in SETUP_COMMANDS:
            return SETUP_COMMANDS[args.command](args)
        if args.command == "demo":
            from dropreel.cli.demo import run_demo

            return run_demo()
        if args.command == "simulate":
            return _simulate(args)
        settings = load_settings(args.config)
        configure_logging(settings.log.level, settings.log.format)
        try:
            return _command(settings, args)
        except (sqlite3.Error, BaseExceptionGroup) as exc:
            raise explained_failure(exc, settings.database_path) from None
    except ConfigError as exc:
        print(f"dropreel: {exc}", file=sys.stderr)
        return 2
    except (CommandError, AlreadyRunning, StateError) as exc:
        print(f"dropreel: {exc}", file=sys.stderr)
        return 1


def explained_failure(exc: BaseException, database: Path) -> BaseException:
    """The failure behind `exc` that an operator can act on, however deep in task groups;
    `exc` itself if there is none (a bug keeps its traceback)."""
    for leaf in _leaves(exc):
        if isinstance(leaf, ConfigError | CommandError | StateError | AlreadyRunning):
            return leaf
        if isinstance(leaf, sqlite3.Error):
            return StateError(database, state_problem(leaf))
    return exc


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _command(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(settings, until_idle=args.until_idle)
    if args.command == "submit":
        return _submit(settings, args.files)
    if args.command == "check-config":
        healthy, lines = anyio.run(admin.check_config, settings)
        print("\n".join(lines))
        return 0 if healthy else 1
    if args.command == "check":
        from dropreel.cli.check import check_files

        fit, lines = anyio.run(lambda: check_files(settings, args.files, preset=args.preset))
        print("\n".join(lines))
        return 0 if fit else 1
    if args.command == "hooks":
        all_ran, outcomes = anyio.run(rerun_hooks, settings, args.job_id)
        print(outcomes)
        return 0 if all_ran else 1
    if args.command == "watch":
        # Imported here: only the command that draws loads the terminal library.
        from dropreel.cli.watch import run_watch

        return run_watch(settings, once=args.once or not sys.stdout.isatty())
    if args.command in _OPERATOR_COMMANDS:
        print(anyio.run(_OPERATOR_COMMANDS[args.command], settings, args))
        return 0
    raise AssertionError(f"unhandled command {args.command}")


_OPERATOR_COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[str]]] = {
    # Cut to the terminal's width on a terminal; scripts reading a pipe get whole lines.
    "status": lambda settings, args: admin.status(
        settings,
        as_json=args.json,
        width=shutil.get_terminal_size().columns if sys.stdout.isatty() else None,
        since=args.since,
        states=args.state,
    ),
    "show": lambda settings, args: admin.show(settings, args.job_id),
    "cancel": lambda settings, args: admin.cancel(settings, args.job_id),
    "retry": lambda settings, args: admin.retry(settings, args.job_id),
    # Spend (issue 12).
    "spend": lambda settings, args: admin.spend(settings, since=args.since, as_json=args.json),
}


def check_folders(settings: Settings) -> None:
    """Refuse overlapping folders; create missing ones; refuse those we cannot use."""
    folders = settings.folders()
    overlapping = overlap_problem(folders)
    if overlapping is not None:
        raise ConfigError(*overlapping)
    for key, folder in folders.items():
        problem = probe_folder(folder)
        if problem is not None:
            raise ConfigError(key, problem)


def check_hook(settings: Settings) -> None:
    """Refuse a hook that could not be started: better now than at the first finished job."""
    if settings.hook_argv:
        problem = hook_problem(settings.hook_argv, os.environ.get("PATH"))
        if problem is not None:
            raise ConfigError("hooks.on_complete", problem)
    # Webhooks (issue 12): a secret that cannot be used stops start-up, never quoted.
    read_webhook_key(settings)


def _run(settings: Settings, *, until_idle: bool) -> int:
    handed = take_handed_keys(os.environ)
    if handed is None:
        keys = read_api_keys(settings)
    else:
        keys = {
            name: accepted_key(
                handed.get(name, ""), f"{key_prefix(settings, name)}.api_key_env", "the pipe"
            )
            for name in settings.providers
        }
    sources = key_sources(settings, keys)
    if any(sources.reveals(name, value) for name, value in os.environ.items()):
        # /proc/PID/environ shows the environment we started with, whatever we unset later.
        plain = {name: key.get_secret_value() for name, key in keys.items()}
        reexec_without_keys(plain, sources, os.environ)
    make_undumpable()
    check_folders(settings)
    check_hook(settings)
    # Held until this process ends: the kernel lets go of it however the process dies.
    hold_state_lock(settings.state_dir)
    anyio.run(serve, settings, keys, until_idle)
    return 0


async def serve(
    settings: Settings, keys: Mapping[str, SecretStr], until_idle: bool = False
) -> None:
    """Run the daemon with the real HTTP clients until a signal (or idleness) stops it."""
    notifier = Notifier()
    async with assembled_daemon(settings, keys, notifier=notifier) as daemon:
        stop = anyio.Event()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_stop_on_signals, stop, group.cancel_scope)
                group.start_soon(_reload_on_hangup, daemon)
                await daemon.run(stop, until_idle=until_idle)
                group.cancel_scope.cancel()
        finally:
            notifier.close()


async def _stop_on_signals(stop: anyio.Event, scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for received in signals:
            if stop.is_set():
                log.warning("second signal: stopping now", signal=received.name)
                scope.cancel()
                return
            log.info("stopping", signal=received.name)
            stop.set()


async def _reload_on_hangup(daemon: Daemon) -> None:
    """SIGHUP: read the config again and apply its [budget]; a bad file changes nothing."""
    with anyio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            try:
                settings = load_settings(daemon.settings.config_file)
            except ConfigError as exc:
                log.error("config not reloaded; the running one stays", error=str(exc))
                continue
            later = daemon.reload(settings)
            log.info(
                "config reloaded: [budget] applied",
                daily_usd=settings.budget.daily_usd,
                monthly_usd=settings.budget.monthly_usd,
                unknown_price=settings.budget.unknown_price,
                at_next_start=later or None,
            )


def _submit(settings: Settings, files: Sequence[Path]) -> int:
    status = 0
    for source in files:
        if is_ignored_name(source.name):
            print(f"dropreel: {source}: names like this are ignored in the inbox", file=sys.stderr)
            status = 1
            continue
        try:
            placed = copy_into_folder(source, settings.inbox_dir, max_bytes=MAX_JOB_FILE_BYTES)
        except CopyRefused as exc:
            print(f"dropreel: {exc}", file=sys.stderr)
            status = 1
            continue
        print(placed)
    return status


def _simulate(args: argparse.Namespace) -> int:
    from dropreel_simulator.oxen import Simulator, SimulatorOptions, bind_loopback, make_server

    options = SimulatorOptions(
        complete_after_s=(args.complete_after, args.complete_after),
        failure_rate=args.failure_rate,
        legacy_api=args.legacy_api,
    )
    simulator = Simulator(options)
    sock = bind_loopback(args.port)
    server = make_server(simulator, sock)
    print(
        f"simulator on {simulator.base_url}: Oxen at /api, OpenAI-compatible videos at /v1 "
        "(any bearer key; Ctrl-C stops it)",
        flush=True,
    )
    server.run(sockets=[sock])
    return 0
