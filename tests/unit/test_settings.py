"""Settings: one file, overridable key by key from the environment, with useful errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from servoscope.settings import DEFAULT_FILE, SettingsError, env_name, load


def test_defaults_come_from_the_repository_file() -> None:
    settings = load({})
    assert settings.source == DEFAULT_FILE
    assert settings.port("gateway") == 8080
    assert settings.url("servo") == "http://127.0.0.1:8101"


def test_environment_overrides_keep_the_files_types() -> None:
    settings = load(
        {
            "SERVOSCOPE_PORTS_GATEWAY": "18080",
            "SERVOSCOPE_TELEMETRY_SAMPLING_RATIO": "0.25",
            "SERVOSCOPE_TELEMETRY_ENABLED": "off",
            "SERVOSCOPE_TOXIPROXY_PROXIES": "servo, telemetry",
        }
    )
    assert settings.port("gateway") == 18080
    assert settings.get("telemetry", "sampling_ratio") == 0.25
    assert settings.get("telemetry", "enabled") is False
    assert settings.get("toxiproxy", "proxies") == ["servo", "telemetry"]


def test_a_bad_override_names_the_variable_and_an_example() -> None:
    with pytest.raises(SettingsError, match=r"SERVOSCOPE_PORTS_GATEWAY='http' .* like 8080"):
        load({"SERVOSCOPE_PORTS_GATEWAY": "http"})


def test_a_missing_file_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="Point SERVOSCOPE_CONFIG"):
        load({"SERVOSCOPE_CONFIG": str(tmp_path / "nope.toml")})


def test_a_missing_key_names_file_section_and_variable(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text("[ports]\ngateway = 1\n")
    settings = load({"SERVOSCOPE_CONFIG": str(config)})
    with pytest.raises(SettingsError, match=r"\[ports\] servo.*SERVOSCOPE_PORTS_SERVO"):
        settings.port("servo")


def test_broken_toml_is_reported_with_its_path(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text("[ports\n")
    with pytest.raises(SettingsError, match=str(config)):
        load({"SERVOSCOPE_CONFIG": str(config)})


def test_env_names_are_upper_case_section_then_key() -> None:
    assert env_name("ports", "jaeger_ui") == "SERVOSCOPE_PORTS_JAEGER_UI"


def test_options_fill_a_dataclass_from_a_section(tmp_path: Path) -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Options:
        url: str
        rate_hz: float = 50.0
        retries: int = 2

    config = tmp_path / "s.toml"
    config.write_text("[svc]\nrate_hz = 10\nworkers = 4\n")
    options = load({"SERVOSCOPE_CONFIG": str(config)}).options("svc", Options, url="http://x")
    assert options == Options(url="http://x", rate_hz=10.0, retries=2)
    assert isinstance(options.rate_hz, float)
