"""Servo motion as a Maestro produces it: targets approached under speed and
acceleration limits, in 10 ms ticks. Pure: time comes from an injected clock.

The Maestro updates every channel once per 10 ms. Speed is the largest change
of position per tick, in quarter-us (0.25 us / 10 ms); acceleration is the
largest change of speed per 80 ms, i.e. ``acceleration / 8`` quarter-us per
tick per tick (0.25 us / 10 ms / 80 ms). Zero means "no limit" for both.

Positions are not advanced by a background thread: :meth:`ServoBank.update`
counts the whole ticks elapsed since start on the clock and replays them, so
the result depends only on the clock readings, never on thread scheduling.

>>> now = [0.0]
>>> bank = ServoBank([ChannelConfig(speed=100)], clock=lambda: now[0])
>>> bank.set_target(0, 7000)      # 1000 quarter-us away at 100 per tick
>>> now[0] = 0.055; bank.position(0), bank.moving()
(6500, True)
>>> now[0] = 0.1; bank.position(0), bank.moving()
(7000, False)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["TICK_S", "ChannelConfig", "ChannelSnapshot", "ServoBank"]

TICK_S = 0.010
"""The Maestro's update period."""

DEFAULT_MIN_QUS = 3968  # 992 us, the Maestro's factory minimum
DEFAULT_MAX_QUS = 8000  # 2000 us, the Maestro's factory maximum
DEFAULT_HOME_QUS = 6000  # 1500 us


@dataclass(frozen=True)
class ChannelConfig:
    """Limits and start-up settings of one channel (quarter-us; home 0 = off)."""

    min_qus: int = DEFAULT_MIN_QUS
    max_qus: int = DEFAULT_MAX_QUS
    home_qus: int = DEFAULT_HOME_QUS
    speed: int = 0
    acceleration: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.min_qus <= self.max_qus <= 0x3FFF:
            raise ValueError(
                f"need 0 < min_qus <= max_qus <= 16383, got {self.min_qus}..{self.max_qus}"
            )
        if self.home_qus != 0 and not self.min_qus <= self.home_qus <= self.max_qus:
            raise ValueError(
                f"home_qus must be 0 (off) or in {self.min_qus}..{self.max_qus}, "
                f"got {self.home_qus}"
            )
        if not 0 <= self.speed <= 0x3FFF:
            raise ValueError(f"speed must be in 0..16383, got {self.speed}")
        if not 0 <= self.acceleration <= 255:
            raise ValueError(f"acceleration must be in 0..255, got {self.acceleration}")


@dataclass(frozen=True)
class ChannelSnapshot:
    """What one channel is doing at one instant."""

    channel: int
    target_qus: int
    position_qus: int
    speed: int
    acceleration: int
    moving: bool


class _Channel:
    """Mutable state of one channel; ``velocity`` is signed quarter-us per tick."""

    __slots__ = ("acceleration", "config", "position", "speed", "target", "velocity")

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        self.target = config.home_qus
        self.position = float(config.home_qus)
        self.velocity = 0.0
        self.speed = config.speed
        self.acceleration = config.acceleration

    @property
    def at_rest(self) -> bool:
        return self.position == self.target and self.velocity == 0.0

    def tick(self) -> None:
        """Advance one 10 ms tick."""
        distance = self.target - self.position
        if distance == 0:
            self.velocity = 0.0
            return
        if self.speed == 0 and self.acceleration == 0:
            self._arrive()
            return
        direction = 1.0 if distance > 0 else -1.0
        remaining = abs(distance)
        speed_limit = self.speed or math.inf
        if self.acceleration == 0:
            toward = min(speed_limit, remaining)
        else:
            step = self.acceleration / 8
            # Fastest speed from which we can still brake to a stop at the
            # target; never below one step so the approach cannot stall.
            brake_limit = max(math.sqrt(2 * step * remaining), step)
            wanted = min(speed_limit, brake_limit)
            toward = self.velocity * direction  # negative while moving away
            toward = min(toward + step, wanted) if toward < wanted else max(toward - step, wanted)
        if toward >= remaining:
            self._arrive()
            return
        self.velocity = toward * direction
        self.position += self.velocity

    def _arrive(self) -> None:
        self.position = float(self.target)
        self.velocity = 0.0


class ServoBank:
    """All channels of one Maestro, advanced in whole ticks of the given clock.

    Every method first catches up with the clock, so a command takes effect at
    the tick it arrives in. Targets outside a channel's ``min_qus..max_qus`` are
    clamped; target 0 switches the channel off (position 0, not moving), and a
    channel that was off jumps straight to its next target, like the device.
    """

    def __init__(
        self,
        configs: Sequence[ChannelConfig],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not configs:
            raise ValueError("a ServoBank needs at least one channel")
        self._channels = [_Channel(config) for config in configs]
        self._clock = clock
        self._start = clock()
        self._ticks_done = 0

    @property
    def channels(self) -> int:
        return len(self._channels)

    @property
    def ticks(self) -> int:
        """Whole ticks simulated since the bank was created."""
        self.update()
        return self._ticks_done

    def update(self) -> None:
        """Replay every whole tick that has elapsed on the clock."""
        # The epsilon keeps float error from losing a tick (0.29 / 0.01 < 29).
        due = int((self._clock() - self._start) / TICK_S + 1e-6)
        count = due - self._ticks_done
        if count <= 0:
            return
        self._ticks_done = due
        for channel in self._channels:
            for _ in range(count):
                if channel.at_rest:
                    break  # nothing changes until the next command
                channel.tick()

    def _channel(self, index: int) -> _Channel:
        if not 0 <= index < len(self._channels):
            raise ValueError(f"channel must be in 0..{len(self._channels) - 1}, got {index}")
        return self._channels[index]

    def set_target(self, index: int, target: int) -> None:
        """Set a target in quarter-us, clamped to the channel's limits (0 = off)."""
        self.update()
        channel = self._channel(index)
        if target == 0:
            channel.target = 0
            channel.position = 0.0
            channel.velocity = 0.0
            return
        limits = channel.config
        channel.target = min(max(target, limits.min_qus), limits.max_qus)
        if channel.position == 0:
            channel.position = float(channel.target)  # no pulses yet: nothing to ramp from

    def set_speed(self, index: int, speed: int) -> None:
        self.update()
        self._channel(index).speed = speed

    def set_acceleration(self, index: int, acceleration: int) -> None:
        self.update()
        self._channel(index).acceleration = acceleration

    def go_home(self) -> None:
        """Send every channel to its configured home (a target, or off)."""
        for index, channel in enumerate(self._channels):
            self.set_target(index, channel.config.home_qus)

    def position(self, index: int) -> int:
        """Current position in quarter-us, as Get Position reports it (0 = off)."""
        self.update()
        return round(self._channel(index).position)

    def target(self, index: int) -> int:
        self.update()
        return self._channel(index).target

    def moving(self) -> bool:
        """True while any channel has not reached its target (Get Moving State)."""
        self.update()
        return any(not channel.at_rest for channel in self._channels)

    def snapshot(self) -> list[ChannelSnapshot]:
        self.update()
        return [
            ChannelSnapshot(
                channel=index,
                target_qus=channel.target,
                position_qus=round(channel.position),
                speed=channel.speed,
                acceleration=channel.acceleration,
                moving=not channel.at_rest,
            )
            for index, channel in enumerate(self._channels)
        ]
