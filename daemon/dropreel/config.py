"""Configuration: one frozen settings object from flags, environment, a TOML file and defaults."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from dropreel.errors import ConfigError
from dropreel.hooks.webhook import SECRET_PREFIX, parse_secret
from dropreel.intake.presets import Preset, preset_problem
from dropreel.ops.keyguard import KeySources, key_problem
from dropreel.ops.redact import remember_secret

ENV_PREFIX = "DROPREEL_"
CONFIG_ENV_VAR = "DROPREEL_CONFIG"


def default_search_path() -> tuple[Path, ...]:
    """Where a config file is looked for when none is named, in order."""
    return (
        Path("dropreel.toml"),
        Path.home() / ".config" / "dropreel" / "config.toml",
        Path("/etc/dropreel/config.toml"),
    )


class _Section(BaseModel):
    # No protected names: `jobs.model_ttl_s` is a key of ours, and pydantic before 2.10
    # warns of any field starting with `model_`.
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class OxenSettings(_Section):
    base_url: HttpUrl = HttpUrl("https://hub.oxen.ai")
    api_key_env: str = "OXEN_API_KEY"
    api_key_file: Path | None = None
    default_model: str = Field("openai-sora-2-pro", min_length=1)
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(60.0, gt=0)
    # One ceiling on every request to the provider's API (result downloads aside), whatever
    # it answers: Retry-After: 0 or a failing listing must not turn into a flood.
    max_requests_per_s: float = Field(10.0, gt=0)

    @field_validator("api_key_file", mode="before")
    @classmethod
    def _empty_means_none(cls, value: object) -> object:
        return None if value == "" else value


ProviderKind = Literal["oxen", "openai-videos"]

# What a provider section means when it does not say: by kind (see the README's providers).
_KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "oxen": {
        "base_url": "https://hub.oxen.ai",
        "api_key_env": "OXEN_API_KEY",
        "default_model": "openai-sora-2-pro",
    },
    "openai-videos": {
        "base_url": "https://api.lumenfall.ai/openai/v1",
        "api_key_env": "LUMENFALL_API_KEY",
        "default_model": "sora-2-pro",
    },
}


class ProviderSettings(OxenSettings):
    """One `[providers.NAME]` section: `kind` picks the adapter."""

    kind: ProviderKind = "oxen"
    # Poll-only providers: how often their pending videos are looked at (a provider's
    # `openai-poll-after-ms` may ask for less often, never more).
    poll_interval_s: float = Field(5.0, gt=0)
    # Providers that replay a create carrying the same key: a lost answer is resent, never
    # parked. False falls back to settling from the listing, as for Oxen.
    idempotency: bool = True
    # The body field that carries the key as well as the Idempotency-Key header; "" for none.
    idempotency_key_field: str = "idempotency_key"

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: object) -> object:
        if not isinstance(data, Mapping):
            return data
        kind = data.get("kind", "oxen")
        return {**_KIND_DEFAULTS.get(kind, {}), **data}


class PathSettings(_Section):
    inbox: Path = Path("inbox")
    outbox: Path = Path("outbox")
    failed: Path = Path("failed")
    state: Path = Path("state")


class InboxSettings(_Section):
    # A file whose mtime is younger than this may still be being written: wait for it.
    settle_s: float = Field(0.2, ge=0)
    # Where "still open for writing" cannot be asked of the kernel (network filesystems),
    # a file is taken only once its size and time have not changed for this long.
    stable_s: float = Field(10.0, ge=0)
    rescan_interval_s: float = Field(30.0, gt=0)
    # A job naming an image (dropreel.image) waits this long for it to arrive in the inbox.
    asset_wait_s: float = Field(60.0, ge=0)
    force_polling: bool = False


class SubmitSettings(_Section):
    concurrency: int = Field(4, ge=1, le=64)


class EventSettings(_Section):
    idle_timeout_s: float = Field(45.0, gt=0)
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(60.0, gt=0)
    # The backoff starts over only once a connection has stayed up this long.
    stable_after_s: float = Field(30.0, gt=0)


class PollSettings(_Section):
    interval_s: float = Field(10.0, gt=0)


class DeliverySettings(_Section):
    concurrency: int = Field(4, ge=1, le=64)
    retry_initial_s: float = Field(2.0, gt=0)
    retry_max_s: float = Field(300.0, gt=0)
    # A download slower than this over a whole window is cut (and resumed later with Range):
    # a trickling server must not hold a delivery slot forever.
    min_bytes_per_s: float = Field(1024.0, ge=0)
    stall_window_s: float = Field(60.0, gt=0)


class JobSettings(_Section):
    # Where a job goes unless its file names a provider; "" means `oxen` if configured,
    # else the first provider.
    provider: str = ""
    # A paid result is retried until this long after the job was accepted, then the job
    # fails with the reason; a generation the provider never finishes is cancelled then.
    deadline_s: float = Field(86_400.0, gt=0)
    # Each request is checked against its model's schema before it is paid for.
    check_schema: bool = True
    # A model's object (its schema and its price, one look-up for both) is asked of the
    # provider again after this long.
    model_ttl_s: float = Field(3600.0, gt=0)


class PresetSettings(_Section):
    """One `[presets.NAME]` section: defaults for the jobs dropped into `inbox/NAME/`."""

    # "" means the job's own choice, else jobs.provider.
    provider: str = ""
    body: dict[str, Any] = Field(default_factory=dict)


class HookSettings(_Section):
    on_complete: tuple[str, ...] = ()
    # A webhook beside (or instead of) the command: each terminal generation is POSTed here,
    # signed per Standard Webhooks with the `whsec_` secret in webhook_secret_file.
    on_complete_url: HttpUrl | None = None
    webhook_secret_file: Path | None = None
    timeout_s: float = Field(60.0, gt=0)
    max_attempts: int = Field(5, ge=1)
    retry_initial_s: float = Field(2.0, gt=0)
    concurrency: int = Field(4, ge=1, le=64)

    @field_validator("on_complete_url", "webhook_secret_file", mode="before")
    @classmethod
    def _empty_means_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _webhooks_are_signed(self) -> HookSettings:
        if self.on_complete_url is not None and self.webhook_secret_file is None:
            raise PydanticCustomError(
                "webhook_unsigned",
                "on_complete_url needs webhook_secret_file (a file holding whsec_ and a "
                "base64 secret): webhooks are always signed",
            )
        return self


class BudgetSettings(_Section):
    """Caps on what jobs may cost; none is set by default. Reloaded on SIGHUP."""

    # A job whose estimate would take the day's (the month's) spend past this is held.
    daily_usd: float | None = Field(None, ge=0, allow_inf_nan=False)
    monthly_usd: float | None = Field(None, ge=0, allow_inf_nan=False)
    # A job whose price cannot be estimated goes ahead ("allow") or is held ("hold").
    unknown_price: Literal["allow", "hold"] = "allow"


class ServiceSettings(_Section):
    # On SIGTERM, downloads and hooks already running get this long to finish.
    shutdown_grace_s: float = Field(20.0, ge=0)
    # How often STATUS= is refreshed (and the watchdog fed, if systemd asks more often).
    heartbeat_s: float = Field(2.0, gt=0)


class MetricsSettings(_Section):
    # 0 keeps the Prometheus endpoint off.
    port: int = Field(0, ge=0, le=65535)
    host: str = "127.0.0.1"


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    format: Literal["auto", "json", "console", "journald"] = "auto"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class Settings(BaseSettings):
    """Everything dropreel reads from its configuration, validated and frozen."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        nested_model_default_partial_update=True,
    )

    oxen: OxenSettings = OxenSettings()
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    paths: PathSettings = PathSettings()
    inbox: InboxSettings = InboxSettings()
    submit: SubmitSettings = SubmitSettings()
    events: EventSettings = EventSettings()
    poll: PollSettings = PollSettings()
    jobs: JobSettings = JobSettings()
    presets: dict[str, PresetSettings] = Field(default_factory=dict)
    delivery: DeliverySettings = DeliverySettings()
    hooks: HookSettings = HookSettings()
    budget: BudgetSettings = BudgetSettings()
    service: ServiceSettings = ServiceSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    # Not a user setting: the folder that relative paths resolve against.
    base_dir: Path = Path()
    config_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_oxen_section(cls, data: object) -> object:
        """The old top-level `[oxen]` means `[providers.oxen]` with `kind = "oxen"`."""
        if not isinstance(data, Mapping):
            return data
        providers = dict(data.get("providers") or {})
        legacy = data.get("oxen")
        if legacy is not None or not providers:
            # Over [providers.oxen] if both are given: DROPREEL_OXEN__* overrides still apply.
            values = legacy.model_dump() if isinstance(legacy, BaseModel) else dict(legacy or {})
            current = providers.get("oxen") or {"kind": "oxen"}
            if isinstance(current, BaseModel):
                current = current.model_dump()
            providers["oxen"] = {**current, **values}
        return {**data, "providers": providers}

    @property
    def default_provider(self) -> str:
        """The provider a job goes to unless its file names one."""
        if self.jobs.provider:
            return self.jobs.provider
        return "oxen" if "oxen" in self.providers else next(iter(self.providers))

    def provider_problem(self) -> tuple[str, str] | None:
        """(key, problem) if the providers or presets cannot be used as configured, else None."""
        known = ", ".join(sorted(self.providers))
        if self.jobs.provider and self.jobs.provider not in self.providers:
            return "jobs.provider", f"{self.jobs.provider!r} is not a configured provider ({known})"
        for name, preset in self.presets.items():
            # repr: a hostile name (a newline, a control character) stays on one line.
            key = f"presets.{name}" if name.isprintable() else f"presets.{name!r}"
            problem = preset_problem(name, preset.body)
            if problem is not None:
                return key, problem
            if preset.provider and preset.provider not in self.providers:
                return f"{key}.provider", (
                    f"{preset.provider!r} is not a configured provider ({known})"
                )
        return None

    def preset_folders(self) -> dict[str, Preset]:
        """Each preset by its folder's name, as jobs see it."""
        return {
            name: Preset(name, dict(p.body), p.provider or None) for name, p in self.presets.items()
        }

    @property
    def rest_base(self) -> str:
        return str(self.oxen.base_url).rstrip("/") + "/api/ai"

    @property
    def events_url(self) -> str:
        return str(self.oxen.base_url).rstrip("/") + "/api/events"

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def inbox_dir(self) -> Path:
        return self.resolve(self.paths.inbox)

    @property
    def outbox_dir(self) -> Path:
        return self.resolve(self.paths.outbox)

    @property
    def failed_dir(self) -> Path:
        return self.resolve(self.paths.failed)

    @property
    def state_dir(self) -> Path:
        return self.resolve(self.paths.state)

    @property
    def hook_argv(self) -> tuple[str, ...]:
        """hooks.on_complete, its program resolved like every other path when it names one
        relatively (`./notify.sh`, `bin/notify`); a bare name is looked up on PATH."""
        argv = self.hooks.on_complete
        if not argv or "/" not in argv[0]:
            return argv
        return (str(self.resolve(Path(argv[0]))), *argv[1:])

    @property
    def webhook_secret_path(self) -> Path | None:
        """hooks.webhook_secret_file, resolved like every other path."""
        found = self.hooks.webhook_secret_file
        return self.resolve(found) if found is not None else None

    def folders(self) -> dict[str, Path]:
        """The folders dropreel works in, by their config keys."""
        return {
            "paths.inbox": self.inbox_dir,
            "paths.outbox": self.outbox_dir,
            "paths.failed": self.failed_dir,
            "paths.state": self.state_dir,
        }

    @property
    def database_path(self) -> Path:
        return self.state_dir / "dropreel.sqlite3"

    @property
    def accepted_dir(self) -> Path:
        return self.state_dir / "accepted"


def toml_text(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """A config file's text from tables of plain values (strings, numbers, booleans, lists).

    For tools that write configs (the demo, tests, benchmarks); JSON's spelling of these
    values is valid TOML.
    """
    lines: list[str] = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def find_config_file(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The config file to read: the flag, then $DROPREEL_CONFIG, then the search path."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError("--config", f"no such file: {explicit}")
        return explicit
    from_env = environ.get(CONFIG_ENV_VAR)
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(CONFIG_ENV_VAR, f"no such file: {path}")
        return path
    for candidate in default_search_path():
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from exc


def _describe(
    error: ValidationError, file_data: Mapping[str, Any], environ: Mapping[str, str]
) -> ConfigError:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        variable = overriding_variable(first["loc"], file_data, environ)
        if variable is not None:
            return ConfigError(
                variable, f"overrides {key}, which is not a key (check the spelling)"
            )
        return ConfigError(key, "unknown key (check the spelling; secrets never go in the file)")
    given = first.get("input")
    if isinstance(given, str | int | float) and first["type"] != "missing":
        return ConfigError(key, f"{given!r} is not allowed: {first['msg']}")
    return ConfigError(key, first["msg"])


def overriding_variable(
    loc: tuple[int | str, ...], file_data: Mapping[str, Any], environ: Mapping[str, str]
) -> str | None:
    """The environment variable, as spelled there, that set the key at `loc`, unless the file
    sets it too; None if the key came from the file."""
    if _holds(file_data, loc):
        return None
    wanted = (ENV_PREFIX + "__".join(str(part) for part in loc)).upper()
    # Variable names match keys whatever their case, as pydantic-settings reads them.
    return next((name for name in environ if name.upper() == wanted), None)


def _holds(data: Mapping[str, Any], loc: tuple[int | str, ...]) -> bool:
    found: Any = data
    for part in loc:
        if not isinstance(found, Mapping) or part not in found:
            return False
        found = found[part]
    return True


class _MappingEnvSource(EnvSettingsSource):
    """Environment variables from a given mapping (the real environment, or a test's)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, False, False, None)


def load_settings(
    config_file: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load settings with the precedence flag > environment > file > default."""
    env = os.environ if environ is None else environ
    path = find_config_file(config_file, env)
    file_data = _read_toml(path) if path is not None else {}
    base_dir = path.resolve().parent if path is not None else Path.cwd()
    fixed = {"base_dir": base_dir, "config_file": path.resolve() if path else None}

    class _Layered(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                InitSettingsSource(settings_cls, init_kwargs={**(overrides or {}), **fixed}),
                _MappingEnvSource(settings_cls, env),
                InitSettingsSource(settings_cls, init_kwargs=file_data),
            )

    try:
        settings = _Layered()
    except ValidationError as exc:
        raise _describe(exc, file_data, env) from None
    named_oxen = "oxen" in file_data or any(k.startswith(f"{ENV_PREFIX}OXEN__") for k in env)
    if named_oxen and "oxen" not in settings.providers:
        # An [oxen] table holding only defaults is dropped when the sources are merged, yet
        # writing it says "use Oxen" beside the other providers.
        oxen = ProviderSettings(**settings.oxen.model_dump(), kind="oxen")
        settings = settings.model_copy(update={"providers": {**settings.providers, "oxen": oxen}})
    problem = settings.provider_problem()
    if problem is not None:
        raise ConfigError(*problem)
    return settings


def key_prefix(settings: Settings, name: str) -> str:
    """The config keys of provider `name`, as a person wrote them (`oxen.` for the old section)."""
    return (
        "oxen"
        if name == "oxen" and settings.providers[name].kind == "oxen"
        else (f"providers.{name}")
    )


def read_api_key(
    settings: Settings, environ: Mapping[str, str] | None = None, name: str | None = None
) -> SecretStr:
    """A provider's API key (the default provider's unless named) from its configured
    environment variable or file; never from the TOML.

    A key that could not travel in an HTTP header is refused here, in words that never quote
    it; a usable one is remembered as a secret to mask everywhere from now on.
    """
    env = os.environ if environ is None else environ
    name = name or settings.default_provider
    provider = settings.providers[name]
    prefix = key_prefix(settings, name)
    if provider.api_key_file is not None:
        path = settings.resolve(provider.api_key_file)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{prefix}.api_key_file", f"cannot read {path}: {exc.strerror}"
            ) from exc
        where, text = (f"{prefix}.api_key_file", f"{path}"), raw.decode("utf-8", "replace").strip()
    else:
        variable = provider.api_key_env
        text = env.get(variable, "").strip()
        if not text:
            raise ConfigError(
                f"{prefix}.api_key_env",
                f"environment variable {variable} is not set (or set {prefix}.api_key_file)",
            )
        where = (f"{prefix}.api_key_env", f"environment variable {variable}")
    return accepted_key(text, *where)


def read_webhook_key(settings: Settings) -> bytes | None:
    """The webhook signing key from hooks.webhook_secret_file (None without a webhook); a
    problem is one line naming the file, never quoting what it holds."""
    path = settings.webhook_secret_path
    if settings.hooks.on_complete_url is None or path is None:
        return None
    try:
        text = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError("hooks.webhook_secret_file", f"cannot read {path}: {why}") from None
    try:
        key = parse_secret(text)
    except ValueError as exc:
        raise ConfigError("hooks.webhook_secret_file", f"the secret in {path} {exc}") from None
    # Masked wherever dropreel writes, whole and without its prefix.
    remember_secret(text)
    remember_secret(text.removeprefix(SECRET_PREFIX))
    return key


def read_api_keys(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> dict[str, SecretStr]:
    """Every configured provider's key, by provider name."""
    return {name: read_api_key(settings, environ, name) for name in settings.providers}


def accepted_key(text: str, key: str, where: str) -> SecretStr:
    """`text` as the API key, if it can be one; `key` and `where` name its source."""
    problem = key_problem(text)
    if problem is not None:
        raise ConfigError(key, f"the API key in {where} {problem}")
    remember_secret(text)
    return SecretStr(text)


def key_sources(settings: Settings, keys: Mapping[str, SecretStr]) -> KeySources:
    """The keys with where each was configured to come from."""
    providers = settings.providers.values()
    return KeySources(
        keys=tuple(k.get_secret_value() for k in keys.values()),
        env_names=tuple(p.api_key_env for p in providers),
        files=tuple(settings.resolve(p.api_key_file) for p in providers if p.api_key_file),
    )
