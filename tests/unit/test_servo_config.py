"""The servo controller's [servo] settings: per-channel calibration and limits, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.servo import protocol
from services.servo.config import load_config
from servoscope.settings import SettingsError, load

BASE = """
[servo]
device = "/dev/ttyACM0"
baud = 115200
timeout_s = 0.25
workers = 1
channel_count = 4
{servo_extra}

[servo.channel_defaults]
speed = 20
{defaults_extra}
{channels}
"""


def config_from(tmp_path: Path, servo_extra="", defaults_extra="", channels="", **env: str):
    path = tmp_path / "servoscope.toml"
    text = BASE.format(servo_extra=servo_extra, defaults_extra=defaults_extra, channels=channels)
    path.write_text(text)
    return load_config(load({"SERVOSCOPE_CONFIG": str(path), **env}))


def test_the_repository_file_loads_with_the_simulator_defaults(monkeypatch) -> None:
    monkeypatch.setenv("SERVO_PORT", "/dev/ttyACM0")
    config = load_config(load({}))
    assert config.device == "/dev/ttyACM0"
    assert config.device_number is None and config.crc is False
    channel = config.channel(0)
    assert (channel.calibration.min_us, channel.calibration.max_us) == (1000.0, 2000.0)
    assert channel.speed == 20


def test_channels_override_the_defaults_key_by_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SERVO_PORT", raising=False)
    config = config_from(
        tmp_path,
        channels="[servo.channels.2]\nmin_angle = 180.0\nmax_angle = 0.0\nacceleration = 4\n",
    )
    reversed_servo = config.channel(2)
    assert reversed_servo.angle_range == (0.0, 180.0)
    assert reversed_servo.calibration.angle_to_us(180) == 1000.0  # the other way round
    assert (reversed_servo.speed, reversed_servo.acceleration) == (20, 4)
    assert config.channel(1).acceleration == 0  # unlisted: the defaults
    assert reversed_servo.speed_range == (1, 20) and config.channel(1).acceleration_range == (
        0,
        255,
    )


def test_the_pololu_form_and_crc_are_chosen_in_config(tmp_path: Path) -> None:
    config = config_from(tmp_path, servo_extra="device_number = 12\ncrc = true")
    assert config.encode(protocol.GetErrors()) == protocol.encode_get_errors(device=12, crc=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": "[servo.channels.4]\nspeed = 1\n"}, r"\[servo.channels.4\]: channel must"),
        ({"channels": "[servo.channels.0]\nsped = 1\n"}, r"unknown key 'sped'"),
        ({"defaults_extra": "min_us = 2500.0"}, r"channel_defaults\]: need 0 < min_us"),
        ({"defaults_extra": "home_angle = 200.0"}, r"home_angle 200.0 is outside"),
        ({"defaults_extra": "acceleration = 300"}, r"acceleration must be an integer in 0..255"),
        ({"servo_extra": "device_number = 200"}, r"device_number must be -1"),
        ({"servo_extra": "poll_period_s = 0"}, r"poll_period_s must be > 0"),
        ({"SERVOSCOPE_SERVO_WORKERS": "2"}, r"workers must be 1"),
    ],
)
def test_a_bad_value_names_the_file_the_key_and_the_fix(tmp_path: Path, kwargs, message) -> None:
    with pytest.raises(SettingsError, match=message) as raised:
        config_from(tmp_path, **kwargs)
    assert str(tmp_path / "servoscope.toml") in str(raised.value)


def test_no_device_says_how_to_set_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SERVO_PORT", raising=False)
    path = tmp_path / "s.toml"
    path.write_text('[servo]\ndevice = ""\nbaud = 115200\n')
    with pytest.raises(SettingsError, match="SERVO_PORT=/dev/ttyACM0"):
        load_config(load({"SERVOSCOPE_CONFIG": str(path)}))
