"""`dropreel check FILE...`: the daemon's judgement of job files, by hand, before they cost
anything: the file itself, then its request against its model's schema."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from dropreel.config import Settings, read_api_key
from dropreel.errors import ConfigError, JobFileRejected
from dropreel.fs.naming import displayable
from dropreel.intake.batches import MAX_BATCH_FILE_BYTES, is_batch_name, parse_batch
from dropreel.intake.jobs import MAX_JOB_FILE_BYTES, JobRequest, Routes, parse_job_file
from dropreel.intake.presets import Preset
from dropreel.providers.base import ModelFacts, ModelSource
from dropreel.providers.catalogue import ModelCatalogue
from dropreel.providers.registry import connected_providers
from dropreel.validation.checker import RequestChecker


class _Unavailable:
    """A provider that cannot be asked (no key): every schema is unknown, and says why."""

    def __init__(self, problem: ConfigError) -> None:
        self._problem = problem

    async def model_facts(self, model: str) -> ModelFacts:
        raise self._problem


@asynccontextmanager
async def _schema_sources(
    settings: Settings, environ: Mapping[str, str]
) -> AsyncIterator[dict[str, ModelSource]]:
    """Every configured provider, asked with its key from the config; those without one say so."""
    sources: dict[str, ModelSource] = {}
    async with AsyncExitStack() as stack:
        for name in settings.providers:
            try:
                key = read_api_key(settings, environ, name)
            except ConfigError as exc:
                sources[name] = _Unavailable(exc)
                continue
            connected = await stack.enter_async_context(
                connected_providers(settings, {name: key}, only=name)
            )
            sources[name] = connected[name].provider
        yield sources


def _read(path: Path, max_bytes: int = MAX_JOB_FILE_BYTES) -> bytes:
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise JobFileRejected(displayable(str(path)), "not a regular file")
    with path.open("rb") as handle:
        return handle.read(max_bytes + 1)


def requests_in(
    path: Path, routes: Routes, preset: Preset | None = None
) -> list[tuple[str, JobRequest | str]]:
    """(where, the request or why there is none) for each job a file makes."""
    shown = displayable(str(path))
    try:
        if is_batch_name(path.name):
            rows = parse_batch(path.name, _read(path, MAX_BATCH_FILE_BYTES), routes, preset)
            # A row's problem names its line (or row) already.
            return [
                (shown, r.problem or "refused")
                if r.request is None
                else (f"{shown} {r.where}", r.request)
                for r in rows
            ]
        return [(shown, parse_job_file(path.name, _read(path), routes, preset))]
    except JobFileRejected as exc:
        return [(shown, exc.reason)]
    except OSError as exc:
        return [(shown, f"cannot read: {exc.strerror or exc}")]


def preset_for(settings: Settings, path: Path, named: str | None) -> Preset | None:
    """The preset a file is judged under: the one named, else the one whose inbox folder
    holds it, if any."""
    presets = settings.preset_folders()
    if named is not None:
        if named not in presets:
            known = ", ".join(sorted(presets)) or "none"
            raise ConfigError("--preset", f"{named!r} is not a configured preset ({known})")
        return presets[named]
    folder = path.absolute().parent
    if folder.parent == settings.inbox_dir.absolute():
        return presets.get(folder.name)
    return None


async def check_files(
    settings: Settings,
    files: Sequence[Path],
    environ: Mapping[str, str] | None = None,
    *,
    preset: str | None = None,
) -> tuple[bool, list[str]]:
    """Whether every file would be taken as it is, and one line per problem (or per file)."""
    routes = Routes(
        {n: p.default_model for n, p in settings.providers.items()}, settings.default_provider
    )
    lines: list[str] = []
    good = True
    async with _schema_sources(settings, os.environ if environ is None else environ) as sources:
        models = ModelCatalogue(sources, ttl_s=settings.jobs.model_ttl_s, log_failures=False)
        checker = RequestChecker(models)
        for path in files:
            for where, request in requests_in(path, routes, preset_for(settings, path, preset)):
                if isinstance(request, str):
                    good = False
                    lines.append(f"{where}: {request}")
                    continue
                verdict = await checker.check(request.provider, request.body)
                good = good and not verdict.problems
                lines.extend(f"{where}: {problem}" for problem in verdict.problems)
                if verdict.unchecked is not None:
                    lines.append(f"{where}: ok, but not checked: {verdict.unchecked}")
                elif not verdict.problems:
                    lines.append(f"{where}: ok")
    return good, lines
