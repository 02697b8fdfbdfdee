"""Job files: which names are taken, and how a file's bytes become an enqueue request."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dropreel.errors import JobFileRejected
from dropreel.intake.assets import image_name_problem
from dropreel.intake.jsonvalues import json_problem
from dropreel.intake.presets import Preset

MAX_JOB_FILE_BYTES = 1024 * 1024
MAX_NESTING = 32
JOB_SUFFIXES = (".json", ".toml", ".txt", ".jsonl", ".csv")
# Writers write under one of these names, then rename into place.
_IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".swp", "~")


def is_candidate_name(name: str) -> bool:
    """Whether a file with this name in the inbox is a job file to take now."""
    if name.startswith(".") or name.endswith(_IN_PROGRESS_SUFFIXES):
        return False
    return name.lower().endswith(JOB_SUFFIXES)


def is_ignored_name(name: str) -> bool:
    """Names a writer is still working on, or hidden files: never touched."""
    return name.startswith(".") or name.endswith(_IN_PROGRESS_SUFFIXES)


# The table in a job file that dropreel reads and never sends.
OPTIONS_KEY = "dropreel"


@dataclass(frozen=True, slots=True)
class Routes:
    """Where jobs may go: each configured provider's default model, and the default provider."""

    default_models: Mapping[str, str]
    default_provider: str

    @classmethod
    def single(cls, default_model: str, provider: str = "oxen") -> Routes:
        return cls({provider: default_model}, provider)


@dataclass(frozen=True, slots=True)
class JobRequest:
    """The enqueue body for one job file, with the model filled in, and its provider."""

    body: Mapping[str, Any]
    provider: str = "oxen"
    # The name of an image beside the job file in the inbox, sent as the image input.
    image: str | None = None

    @property
    def num_generations(self) -> int:
        value = self.body.get("num_generations", 1)
        return int(value)

    @property
    def model(self) -> str:
        return str(self.body["model"])


def parse_job_file(
    name: str, data: bytes, routes: Routes | str, preset: Preset | None = None
) -> JobRequest:
    """Turn a job file's bytes into a request, or raise JobFileRejected saying why. A job
    dropped into a preset's folder takes the preset's fields where it gives none."""
    text = job_text(name, data, MAX_JOB_FILE_BYTES)
    suffix = name.lower().rsplit(".", 1)[-1]
    if suffix == "txt":
        body: dict[str, Any] = {"prompt": _prompt_from_text(name, text)}
    else:
        body = object_from_text(name, text, suffix)
    return request_from_body(name, body, routes, preset)


def job_text(name: str, data: bytes, max_bytes: int) -> str:
    """A job file's bytes as text, or JobFileRejected saying why they are not."""
    if len(data) > max_bytes:
        raise JobFileRejected(name, f"file is {len(data)} bytes; the limit is {max_bytes}")
    try:
        # utf-8-sig: a byte-order mark (some editors write one) is not part of the text.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobFileRejected(name, f"not UTF-8 text (byte {exc.start})") from None
    if "\x00" in text:
        raise JobFileRejected(name, "binary content (contains NUL bytes)")
    return text


def request_from_body(
    name: str, body: dict[str, Any], routes: Routes | str, preset: Preset | None = None
) -> JobRequest:
    """A request from a job's object (its `dropreel` table read and removed), completed with
    its preset's fields and its provider's default model."""
    if isinstance(routes, str):
        routes = Routes.single(routes)
    options = body.pop(OPTIONS_KEY, None)
    if options is not None and not isinstance(options, dict):
        raise JobFileRejected(name, f"{OPTIONS_KEY} must be a table of options")
    if preset is not None:
        body = {**preset.body, **body}
    provider = _provider_from_options(
        name, options or {}, routes, (preset and preset.provider) or routes.default_provider
    )
    image = (options or {}).get("image")
    if image is not None and (problem := image_name_problem(image)) is not None:
        raise JobFileRejected(name, f"{OPTIONS_KEY}.image {problem}")
    request = _complete(
        name, body, routes.default_models[provider], provider, has_image=image is not None
    )
    return JobRequest(request.body, provider, image)


def _provider_from_options(
    name: str, options: Mapping[str, Any], routes: Routes, default: str
) -> str:
    """The provider the job's `dropreel` table names (`default` if none)."""
    unknown = sorted(set(options) - {"provider", "image"})
    if unknown:
        raise JobFileRejected(
            name, f"{OPTIONS_KEY}: unknown option {unknown[0]!r} (known: image, provider)"
        )
    provider = options.get("provider", default)
    if provider not in routes.default_models:
        known = ", ".join(sorted(routes.default_models))
        raise JobFileRejected(
            name, f"{OPTIONS_KEY}.provider {provider!r} is not a configured provider ({known})"
        )
    return str(provider)


def _prompt_from_text(name: str, text: str) -> str:
    prompt = text.strip()
    if not prompt:
        raise JobFileRejected(name, "empty prompt")
    return prompt


def object_from_text(name: str, text: str, suffix: str) -> dict[str, Any]:
    """The object a JSON or TOML text holds, or JobFileRejected saying why there is none."""
    try:
        if suffix == "json":
            value: object = json.loads(text)
        else:
            value = tomllib.loads(text)
    except RecursionError:
        raise JobFileRejected(name, "nested too deeply") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if suffix == "json" else "TOML"
        raise JobFileRejected(name, f"not valid {kind}: {exc}") from None
    except ValueError as exc:
        # Python refuses to parse integers of more than 4,300 digits (CVE-2020-10735).
        kind = "JSON" if suffix == "json" else "TOML"
        raise JobFileRejected(name, f"not usable {kind}: {exc}") from None
    if not isinstance(value, dict):
        raise JobFileRejected(name, f"expected an object, found {type(value).__name__}")
    if _depth(value) > MAX_NESTING:
        raise JobFileRejected(name, f"nested deeper than {MAX_NESTING} levels")
    problem = json_problem(value)
    if problem is not None:
        raise JobFileRejected(name, problem)
    return value


def _depth(value: object, level: int = 0) -> int:
    if level > MAX_NESTING:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def _complete(
    name: str, body: dict[str, Any], default_model: str, provider: str, *, has_image: bool = False
) -> JobRequest:
    model = body.get("model", default_model)
    if not isinstance(model, str) or not model.strip():
        raise JobFileRejected(name, "model must be a non-empty string")
    count = body.get("num_generations", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 4:
        raise JobFileRejected(name, f"num_generations must be a whole number 1-4, got {count!r}")
    prompt = body.get("prompt")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise JobFileRejected(name, "prompt must be a non-empty string")
    if (
        prompt is None
        and not has_image
        and not any(k in body for k in ("input_image", "input_video"))
    ):
        raise JobFileRejected(name, "no prompt (and no input_image or input_video)")
    return JobRequest(body={**body, "model": model}, provider=provider)
