"""Settings: precedence, environment variables, and what happens with values that cannot be used."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import pytest

from activitysmith_track import (
    ArgumentTypeError,
    ConfigurationError,
    Settings,
    ValidationError,
    configure,
    live_activity,
)
from activitysmith_track._config import DEFAULT_BASE_URL, EMULATOR_API_KEY, resolve_settings


@pytest.fixture(autouse=True)
def no_configure() -> Iterator[None]:
    yield
    configure(strict=None, flush_timeout=None, debounce=None)


def test_defaults() -> None:
    settings = resolve_settings(env={})
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.api_key is None
    assert (settings.debounce, settings.update_burst, settings.update_interval) == (1.0, 12, 120.0)
    assert (settings.flush_timeout, settings.requests_per_minute) == (10.0, 60)
    assert settings.effective_api_key is None


def test_arguments_win_over_configure_which_wins_over_the_environment() -> None:
    env = {"ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT": "3", "ACTIVITYSMITH_TRACK_DEBOUNCE": "0.5"}
    configure(flush_timeout=4)
    settings = resolve_settings({"debounce": 0.25}, env=env)
    assert settings.flush_timeout == 4
    assert settings.debounce == 0.25
    assert resolve_settings(env=env).debounce == 0.5


def test_environment_variables_are_read() -> None:
    env = {
        "ACTIVITYSMITH_API_KEY": "ask_x",
        "ACTIVITYSMITH_BASE_URL": "http://127.0.0.1:8787/api/",
        "ACTIVITYSMITH_TRACK_DISABLED": "yes",
        "ACTIVITYSMITH_TRACK_STRICT": "1",
        "ACTIVITYSMITH_TRACK_PREVIEW": "on",
        "ACTIVITYSMITH_TRACK_SHOW_ERROR_MESSAGE": "1",
    }
    settings = resolve_settings(env=env)
    assert settings.api_key == "ask_x"
    assert settings.base_url == "http://127.0.0.1:8787/api"
    assert (settings.disabled, settings.strict, settings.preview) == (True, True, True)
    assert settings.show_error_message is True  # off by default


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.0.0.2"])
def test_a_local_emulator_needs_no_key(host: str) -> None:
    settings = resolve_settings(env={"ACTIVITYSMITH_BASE_URL": f"http://{host}:8787/api"})
    assert settings.is_local
    assert settings.effective_api_key == EMULATOR_API_KEY


def test_a_remote_url_needs_a_key() -> None:
    settings = resolve_settings(env={"ACTIVITYSMITH_BASE_URL": "https://example.com/api"})
    assert not settings.is_local
    assert settings.effective_api_key is None


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT", "10s"),
        ("ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT", "inf"),
        ("ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT", "nan"),
        ("ACTIVITYSMITH_TRACK_DEBOUNCE", "-1"),
        ("ACTIVITYSMITH_TRACK_STRICT", "maybe"),
        ("ACTIVITYSMITH_BASE_URL", "activitysmith.com/api"),
    ],
)
def test_a_bad_environment_value_is_ignored_with_one_warning(
    name: str, raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="activitysmith_track")
    env = {name: raw}
    for _ in range(3):
        settings = resolve_settings(env=env)
    assert settings == resolve_settings(env={})
    messages = [r.getMessage() for r in caplog.records if raw in r.getMessage()]
    assert len(messages) == 1
    assert name in messages[0]


def test_a_bad_api_key_variable_is_never_echoed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="activitysmith_track")
    settings = resolve_settings(env={"ACTIVITYSMITH_API_KEY": "ask_secret"})
    assert settings.api_key == "ask_secret"
    assert "ask_secret" not in repr(settings)


def test_a_job_runs_despite_a_typo_in_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT", "ten")
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_DISABLED", "1")
    with live_activity("Job") as la:
        la.step("x")
    assert la.ended


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"flush_timeout": math.inf}, ValidationError),
        ({"flush_timeout": math.nan}, ValidationError),
        ({"flush_timeout": -1}, ValidationError),
        ({"flush_timeout": "5"}, ArgumentTypeError),
        ({"debounce": math.inf}, ValidationError),
        ({"read_timeout": 0}, ValidationError),
        ({"update_burst": 0}, ValidationError),
        ({"strict": "yes"}, ArgumentTypeError),
    ],
)
def test_bad_arguments_raise_at_the_call(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        Settings(**kwargs)  # type: ignore[arg-type]
    assert next(iter(kwargs)) in str(caught.value)


def test_configure_refuses_unknown_and_bad_values_at_once() -> None:
    with pytest.raises(ConfigurationError, match="flush_timout"):
        configure(flush_timout=3)
    with pytest.raises(ValidationError, match="flush_timeout"):
        configure(flush_timeout=math.inf)
    assert resolve_settings(env={}).flush_timeout == 10.0  # the refused value changed nothing
    with pytest.raises(ConfigurationError, match="base_url"):
        resolve_settings({"base_url": "ftp://x"}, env={})


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("ACTIVITYSMITH_APIKEY", "ACTIVITYSMITH_API_KEY"),
        ("ACTIVITYSMITH_TRACK_DISABLE", "ACTIVITYSMITH_TRACK_DISABLED"),
        ("ACTIVITYSMITH_TRACK_FLUSHTIMEOUT", "ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT"),
        ("activitysmith_base_url", "ACTIVITYSMITH_BASE_URL"),
        ("ACTIVITYSMITH_STATE_DIR", "ACTIVITYSMITH_TRACK_STATE_DIR"),
    ],
)
def test_a_misspelled_variable_is_warned_about_once_naming_the_right_one(
    typo: str, meant: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="activitysmith_track")
    env = {typo: "1"}
    for _ in range(3):
        assert resolve_settings(env=env) == resolve_settings(env={})
    messages = [r.getMessage() for r in caplog.records if typo in r.getMessage()]
    assert messages == [f"ignoring {typo}: not a setting; did you mean {meant}?"]


@pytest.mark.parametrize(
    "name", ["ACTIVITYSMITH_CHANNEL", "ACTIVITYSMITH_WEBHOOK_SECRET", "ACTIVITYSMITH_SDK_DEBUG"]
)
def test_another_activitysmith_variable_close_to_none_of_ours_is_left_alone(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="activitysmith_track")
    resolve_settings(env={name: "x"})
    assert [r for r in caplog.records if name in r.getMessage()] == []


def test_configure_suggests_the_setting_meant() -> None:
    with pytest.raises(ConfigurationError) as caught:
        configure(flush_timout=3)
    assert str(caught.value) == "unknown setting 'flush_timout'; did you mean 'flush_timeout'?"
    with pytest.raises(ConfigurationError) as caught:
        configure(colour="red")
    assert str(caught.value).startswith("unknown setting 'colour'; known: api_key, base_url,")
    with pytest.raises(ConfigurationError) as caught:
        configure(strickt=True, debunce=2)
    assert str(caught.value).startswith(
        "unknown settings 'debunce'; did you mean 'debounce'?, 'strickt'; did you mean 'strict'?"
    )


def test_the_ledger_settings(tmp_path: object) -> None:
    assert Settings().ledger is True
    assert Settings().state_dir is None
    with pytest.raises(ArgumentTypeError, match="ledger"):
        Settings(ledger="no")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="state_dir"):
        Settings(state_dir=" ")
    with pytest.raises(ArgumentTypeError, match="state_dir"):
        Settings(state_dir=3)  # type: ignore[arg-type]
    env = {"ACTIVITYSMITH_TRACK_LEDGER": "off", "ACTIVITYSMITH_TRACK_STATE_DIR": "/srv/state"}
    settings = resolve_settings(env=env)
    assert (settings.ledger, settings.state_dir) == (False, "/srv/state")


def test_readme_lists_every_environment_variable() -> None:
    from pathlib import Path

    from activitysmith_track._config import ENV_NAMES

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = {
        line.split("|")[1].strip().strip("`")
        for line in readme.splitlines()
        if line.startswith("| `ACTIVITYSMITH_")
    }
    assert table == set(ENV_NAMES)
