from __future__ import annotations

from pathlib import Path

import pytest

from dropreel.config import load_settings, read_api_key, read_api_keys
from dropreel.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("in_file", "in_env", "flag", "expected"),
    [
        (None, None, None, 10.0),
        (3.0, None, None, 3.0),
        (3.0, "4", None, 4.0),
        (3.0, "4", 5.0, 5.0),
        (None, "4", None, 4.0),
        (None, None, 5.0, 5.0),
        (3.0, None, 5.0, 5.0),
    ],
)
def test_precedence_is_flag_then_env_then_file_then_default(
    tmp_path: Path, in_file: float | None, in_env: str | None, flag: float | None, expected: float
) -> None:
    config = write(tmp_path / "c.toml", f"[poll]\ninterval_s = {in_file}\n" if in_file else "")
    environ = {"DROPREEL_POLL__INTERVAL_S": in_env} if in_env else {}
    overrides = {"poll": {"interval_s": flag}} if flag else None
    settings = load_settings(config, overrides=overrides, environ=environ)
    assert settings.poll.interval_s == expected


def test_env_overrides_one_key_and_keeps_the_files_others(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.toml",
        '[oxen]\nbase_url = "http://127.0.0.1:1"\ndefault_model = "from-file"\n',
    )
    settings = load_settings(config, environ={"DROPREEL_OXEN__BASE_URL": "http://127.0.0.1:2"})
    assert str(settings.oxen.base_url) == "http://127.0.0.1:2/"
    assert settings.oxen.default_model == "from-file"
    assert settings.rest_base == "http://127.0.0.1:2/api/ai"
    assert settings.events_url == "http://127.0.0.1:2/api/events"


def test_relative_paths_resolve_against_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    config = write(folder / "c.toml", '[paths]\ninbox = "drop"\noutbox = "/abs/out"\n')
    monkeypatch.chdir(tmp_path)
    settings = load_settings(config, environ={})
    assert settings.inbox_dir == folder / "drop"
    assert settings.outbox_dir == Path("/abs/out")
    assert settings.database_path == folder / "state" / "dropreel.sqlite3"


def test_the_config_is_found_by_env_then_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    local = write(tmp_path / "dropreel.toml", '[oxen]\ndefault_model = "local"\n')
    other = write(tmp_path / "other.toml", '[oxen]\ndefault_model = "from-env"\n')
    assert load_settings(environ={}).oxen.default_model == "local"
    found = load_settings(environ={"DROPREEL_CONFIG": str(other)})
    assert found.oxen.default_model == "from-env"
    assert found.config_file == other.resolve()
    local.unlink()
    home_config = tmp_path / "home" / ".config" / "dropreel"
    home_config.mkdir(parents=True)
    write(home_config / "config.toml", '[oxen]\ndefault_model = "home"\n')
    assert load_settings(environ={}).oxen.default_model == "home"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[poll]\ninterval_s = -1\n", "poll.interval_s", "greater than 0"),
        ("[poll]\ninterval_s = 'often'\n", "poll.interval_s", "valid number"),
        ('[oxen]\nbase_url = "not a url"\n', "oxen.base_url", "URL"),
        ('[oxen]\napi_key = "sk-secret"\n', "oxen.api_key", "unknown key"),
        ("[hooks]\non_complete = 'echo done'\n", "hooks.on_complete", "valid tuple"),
        ("[paths\n", "c.toml", "not valid TOML"),
    ],
)
def test_an_invalid_config_names_the_key_and_the_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    config = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    message = str(caught.value)
    assert key in message and problem in message
    assert "\n" not in message
    assert "sk-secret" not in message


def test_a_named_config_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_the_key_comes_from_the_named_environment_variable(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", '[oxen]\napi_key_env = "MY_KEY"\n')
    settings = load_settings(config, environ={})
    key = read_api_key(settings, environ={"MY_KEY": " sk-123 \n"})
    assert key.get_secret_value() == "sk-123"
    assert "sk-123" not in repr(settings) and "sk-123" not in repr(key)


def test_the_key_file_wins_and_resolves_against_the_config_folder(tmp_path: Path) -> None:
    write(tmp_path / "key.txt", "sk-file\n")
    config = write(tmp_path / "c.toml", '[oxen]\napi_key_file = "key.txt"\n')
    settings = load_settings(config, environ={})
    assert read_api_key(settings, environ={"OXEN_API_KEY": "sk-env"}).get_secret_value() == (
        "sk-file"
    )


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("", {}, "OXEN_API_KEY is not set"),
        ('[oxen]\napi_key_file = "absent.txt"\n', {}, "oxen.api_key_file: cannot read"),
        ('[oxen]\napi_key_file = "empty.txt"\n', {}, "is empty"),
    ],
)
def test_a_missing_key_is_one_clear_error(
    tmp_path: Path, text: str, environ: dict[str, str], message: str
) -> None:
    write(tmp_path / "empty.txt", "\n")
    settings = load_settings(write(tmp_path / "c.toml", text), environ=environ)
    with pytest.raises(ConfigError, match=message):
        read_api_key(settings, environ=environ)


def test_the_example_config_is_valid_and_matches_the_defaults() -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    settings = load_settings(example, environ={})
    defaults = load_settings(Path(__file__).parent / "empty.toml", environ={})
    assert settings.model_dump(exclude={"base_dir", "config_file"}) == defaults.model_dump(
        exclude={"base_dir", "config_file"}
    )


def test_the_old_oxen_section_means_a_provider_named_oxen(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[oxen]\nbase_url = "http://127.0.0.1:2"\ndefault_model = "m"\n')
    settings = load_settings(config, environ={})
    assert list(settings.providers) == ["oxen"] and settings.default_provider == "oxen"
    oxen = settings.providers["oxen"]
    assert (oxen.kind, str(oxen.base_url), oxen.default_model) == (
        "oxen",
        "http://127.0.0.1:2/",
        "m",
    )


def test_providers_are_named_freely_and_their_kind_fills_the_defaults(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[providers.lf]\nkind = "openai-videos"\n[providers.main]\nkind = "oxen"\n'
        '[jobs]\nprovider = "lf"\n'
    )
    settings = load_settings(
        config, environ={"DROPREEL_PROVIDERS__LF__BASE_URL": "http://127.0.0.1:9/v1"}
    )
    assert sorted(settings.providers) == ["lf", "main"] and settings.default_provider == "lf"
    lf, main = settings.providers["lf"], settings.providers["main"]
    assert (str(lf.base_url), lf.api_key_env, lf.default_model) == (
        "http://127.0.0.1:9/v1",
        "LUMENFALL_API_KEY",
        "sora-2-pro",
    )
    assert (str(main.base_url), main.api_key_env) == ("https://hub.oxen.ai/", "OXEN_API_KEY")


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (
            "[jobs]\nprovider = 'nope'\n",
            "jobs.provider",
            "'nope' is not a configured provider (oxen)",
        ),
        ("[providers.x]\nkind = 'sora'\n", "providers.x.kind", "'sora' is not allowed"),
        ("[providers.x]\nkind = 'oxen'\nbase_url = 5\n", "providers.x.base_url", ""),
    ],
)
def test_a_bad_provider_config_names_the_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_settings(config, environ={})
    assert raised.value.key == key and problem in raised.value.problem


def test_each_providers_key_is_read_from_its_own_variable(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[oxen]\ndefault_model = "m"\n[providers.lf]\nkind = "openai-videos"\n')
    settings = load_settings(config, environ={})
    keys = read_api_keys(settings, environ={"OXEN_API_KEY": "ox-1", "LUMENFALL_API_KEY": "lf-2"})
    assert {n: k.get_secret_value() for n, k in keys.items()} == {"oxen": "ox-1", "lf": "lf-2"}
    with pytest.raises(ConfigError, match=r"providers\.lf\.api_key_env: environment variable"):
        read_api_keys(settings, environ={"OXEN_API_KEY": "ox-1"})


def test_an_empty_oxen_section_beside_other_providers_still_means_oxen(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[oxen]\n[providers.lf]\nkind = "openai-videos"\n')
    settings = load_settings(config, environ={})
    assert sorted(settings.providers) == ["lf", "oxen"] and settings.default_provider == "oxen"


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        (
            "",
            {"DROPREEL_JOBS__PROVDER": "x"},
            "DROPREEL_JOBS__PROVDER: overrides jobs.provder, which is not a key "
            "(check the spelling)",
        ),
        (
            "[providers.lf]\nkind = 'openai-videos'\n",
            {"dropreel_providers__lf__baseurl": "x"},
            "dropreel_providers__lf__baseurl: overrides providers.lf.baseurl, which is not a "
            "key (check the spelling)",
        ),
        (
            "[jobs]\nprovder = 'x'\n",
            {"DROPREEL_JOBS__PROVDER": "x"},
            "jobs.provder: unknown key (check the spelling; secrets never go in the file)",
        ),
    ],
)
def test_an_unknown_key_is_blamed_on_where_it_was_written(
    tmp_path: Path, text: str, environ: dict[str, str], message: str
) -> None:
    config = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ=environ)
    assert str(caught.value) == f"config error: {message}"
