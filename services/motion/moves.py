"""Moves: planned, streamed to the servo at a fixed rate, watched, and cancellable.

One move may be active per channel: a second request for a busy channel is refused
(409) rather than silently superseding a move someone else is watching. A move whose
setpoint the servo controller does not take ends ``failed`` with the reason, and
nothing more is sent for it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context, trace

from services.motion.config import MotionConfig
from services.motion.servo_link import ServoLink, ServoUnavailable
from services.motion.trajectory import Trajectory
from servoscope.streams import StreamPublisher

log = logging.getLogger(__name__)
tracer = trace.get_tracer("services.motion.moves")

ACTIVE_STATES = ("planned", "running")


class ChannelBusy(Exception):
    def __init__(self, move_id: str) -> None:
        super().__init__(move_id)
        self.move_id = move_id


@dataclass
class Move:
    id: str
    channel: int
    trajectory: Trajectory
    state: str = "planned"
    reason: str | None = None
    setpoints_total: int = 0
    setpoints_sent: int = 0
    planned_angle: float | None = None
    measured_angle: float | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def as_dict(self) -> dict[str, Any]:
        error = (
            None
            if self.planned_angle is None or self.measured_angle is None
            else round(self.planned_angle - self.measured_angle, 3)
        )
        return {
            "id": self.id,
            "channel": self.channel,
            "state": self.state,
            "reason": self.reason,
            "profile": self.trajectory.profile,
            "start_angle": self.trajectory.start,
            "target_angle": self.trajectory.target,
            "duration_s": round(self.trajectory.duration_s, 4),
            "progress": round(self.setpoints_sent / self.setpoints_total, 4)
            if self.setpoints_total
            else 0.0,
            "setpoints_sent": self.setpoints_sent,
            "setpoints_total": self.setpoints_total,
            "planned_angle": self.planned_angle,
            "measured_angle": self.measured_angle,
            "tracking_error": error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


class MoveManager:
    """Owns every move of this process and the threads that stream them."""

    def __init__(
        self,
        config: MotionConfig,
        servo: ServoLink,
        events: StreamPublisher | None = None,
        producer: str = "motion-planner",
    ) -> None:
        self.config = config
        self.servo = servo
        self.events = events  # servoscope:move-events; None publishes nothing
        self.producer = producer
        self._event_seq = 0
        self._moves: OrderedDict[str, Move] = OrderedDict()
        self._lock = threading.Lock()

    def _event(self, move: Move, kind: str) -> None:
        """Publish a move event in the current (the move's) trace; never blocks."""
        if self.events is None:
            return
        with self._lock:
            self._event_seq += 1
            seq = self._event_seq
        detail = {"state": move.state, "target_angle": move.trajectory.target}
        if move.reason:
            detail["reason"] = move.reason
        self.events.publish(
            {
                "producer": self.producer,
                "seq": seq,
                "kind": kind,
                "subject": move.id,
                "channel": move.channel,
                "ts": time.time(),
                "detail": detail,
            }
        )

    def start(self, channel: int, trajectory: Trajectory) -> Move:
        with self._lock:
            for move in self._moves.values():
                if move.channel == channel and move.state in ACTIVE_STATES:
                    raise ChannelBusy(move.id)
            move = Move(uuid.uuid4().hex[:16], channel, trajectory)
            self._moves[move.id] = move
            self._forget_old()
        self._event(move, "accepted")
        parent = context.get_current()
        threading.Thread(
            target=self._stream, args=(move, parent), name=f"move-{move.id}", daemon=True
        ).start()
        return move

    def get(self, move_id: str) -> Move | None:
        return self._moves.get(move_id)

    def active(self) -> list[Move]:
        return [m for m in list(self._moves.values()) if m.state in ACTIVE_STATES]

    def cancel(self, move_id: str) -> Move | None:
        move = self._moves.get(move_id)
        if move is not None:
            move.cancel.set()
        return move

    def _forget_old(self) -> None:
        while len(self._moves) > self.config.history:
            oldest = next(iter(self._moves.values()))
            if oldest.state in ACTIVE_STATES:
                break
            self._moves.popitem(last=False)

    def _finish(self, move: Move, state: str, reason: str | None = None) -> None:
        move.state = state
        move.reason = reason
        move.finished_at = time.time()
        log.info("move %s %s", move.id, state, extra={"move_id": move.id, "reason": reason})
        self._event(move, state)

    def _stream(self, move: Move, parent: context.Context) -> None:
        """Send each setpoint at its time; stop at the first failure or on cancel."""
        token = context.attach(parent)
        try:
            with tracer.start_as_current_span(
                "stream move",
                attributes={
                    "motion.move_id": move.id,
                    "motion.channel": move.channel,
                    "motion.profile": move.trajectory.profile,
                },
            ) as span:
                self._run(move)
                span.set_attribute("motion.state", move.state)
                if move.state == "failed":
                    span.set_status(trace.Status(trace.StatusCode.ERROR, move.reason))
        finally:
            context.detach(token)

    def _run(self, move: Move) -> None:
        points = move.trajectory.setpoints(self.config.rate_hz)
        move.setpoints_total = len(points)
        move.state = "running"
        self._event(move, "started")
        started = time.monotonic()
        for index, (at, angle) in enumerate(points):
            if move.cancel.wait(max(0.0, started + at - time.monotonic())):
                self._finish(move, "cancelled")
                return
            try:
                self.servo.send_setpoint(move.channel, angle, f"{move.id}-{index}")
            except ServoUnavailable as exc:
                self._finish(move, "failed", str(exc))
                return
            move.setpoints_sent = index + 1
            move.planned_angle = round(angle, 4)
            if index % self.config.measure_every == 0 or index == len(points) - 1:
                self._measure(move)
        self._finish(move, "done")

    def _measure(self, move: Move) -> None:
        try:
            move.measured_angle = self.servo.current_angle(move.channel)
        except ServoUnavailable:
            move.measured_angle = None  # the next setpoint decides whether the move fails
