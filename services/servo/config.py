"""The servo controller's configuration: the ``[servo]`` section plus ``SERVO_PORT``.

``SERVO_PORT`` names the serial device, e.g. ``/dev/ttyACM0`` for a real Pololu
Maestro; the local stack points it at the simulator's pty link.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from services.servo.calibration import Calibration
from servoscope.settings import Settings, SettingsError


@dataclass(frozen=True)
class ServoConfig:
    device: str
    baud: int = 115200
    timeout_s: float = 0.25
    channels: int = 6
    calibration: dict[int, Calibration] = field(default_factory=dict)

    def calibration_for(self, channel: int) -> Calibration:
        return self.calibration.get(channel, Calibration())


def load_config(settings: Settings) -> ServoConfig:
    device = os.environ.get("SERVO_PORT") or str(settings.get("servo", "device"))
    if not device:
        raise SettingsError(
            "no serial device configured: set SERVO_PORT (e.g. SERVO_PORT=/dev/ttyACM0 for a "
            "real Maestro) or [servo] device in servoscope.toml; `make up` sets it to the "
            "simulator's pty."
        )
    return ServoConfig(
        device=device,
        baud=int(settings.get("servo", "baud")),
        timeout_s=float(settings.get("servo", "timeout_s")),
        channels=int(settings.sections["servo"].get("channels", 6)),
    )
