"""A Pololu Maestro servo controller on a pseudo-terminal, with fault modes.

Clients open the pty slave exactly as they would open ``/dev/ttyACM0`` and speak
the same bytes (compact and Pololu forms, optional CRC-7; see
:mod:`services.servo.protocol`). Servos move toward their targets under speed
and acceleration limits (:mod:`services.servo.physics`), and replies are paced
as a real line at ``--baud`` would deliver them.

Command line::

    python -m services.servo.simulator [--channels 12] [--baud 115200]
        [--device-number 12] [--crc] [--speed 0] [--acceleration 0]
        [--home-us 1500] [--min-us 992] [--max-us 2000] [--link PATH]
        [--control-port PORT] [--control-host 127.0.0.1] [--seed N]
        [--rfc2217-port PORT] [--rfc2217-host 127.0.0.1]

The first line on stdout is ``device: <pty slave path>``; then
``control: http://HOST:PORT`` when the control server is on, and
``link: PATH`` when ``--link`` is given, and ``rfc2217: rfc2217://HOST:PORT`` when
``--rfc2217-port`` also serves the same Maestro over the network (RFC 2217, as ser2net
serves a real one; see :mod:`services.servo.rfc2217_server`). SIGTERM or SIGINT
stops it (exit 0); it closes the pty and removes the link. ``--baud 0`` turns reply pacing off;
``--control-port 0`` (the default) turns the control server off.

Control interface (HTTP/JSON on ``--control-host``, 127.0.0.1 by default: it changes the
device, so bind it wider only inside a sealed network such as a pod's; built on the
services' app factory, so errors are the stack's RFC 9457 ``application/problem+json``
types, bodies are strict JSON sent as ``application/json``, and ``/healthz`` and
``/metrics`` answer too):

``GET /state``
    ``{"device", "link", "channels": [{"channel", "target_qus", "position_qus",
    "speed", "acceleration", "moving"}], "errors", "faults", "bytes_received",
    "commands_received", "commands_by_name"}``. ``device`` is null while
    unplugged; ``bytes_received`` counts every byte ever read from the serial
    line; ``commands_by_name`` counts executed commands by name
    (``{"set_target": 3, "get_position": 120}``), so a test can prove that no
    Set Target reached the device while a poller keeps reading positions.
``GET /targets/<channel>``
    ``{"channel", "targets": [qus, ...]}``: every target the channel was set to,
    oldest first (the last 10,000), so a test can prove no command was applied twice.
``GET /faults``
    ``{"faults": {mode: params}}``.
``PUT /faults/<mode>`` (optional JSON object body of parameters)
    Switch a fault on (or change its parameters); answers ``{"faults": ...}``.

    - ``unplug``: close the pty; the client's reads and writes fail. Clearing
      it "replugs": a new pty (a new /dev/pts/N) and the link repointed.
    - ``stall``: keep reading bytes but neither execute nor answer commands
      (a hung controller; motion already under way finishes).
    - ``slow``: ``{"latency_s": 0.2}`` added to every reply (0 < x <= 30).
    - ``garble``: ``{"probability": 1.0}`` that each reply byte is XORed with a
      random non-zero mask (0 < p <= 1).
    - ``error``: ``{"bits": 16, "sticky": false}`` ORed into the error register
      now (``bits`` is required, 1..65535); Get Errors clears them as usual,
      unless ``sticky``, in which case they come back after every read.
``DELETE /faults/<mode>``, ``DELETE /faults``
    Clear one fault or all of them (clearing ``unplug`` replugs).

Example::

    curl -X PUT localhost:9100/faults/slow -H 'Content-Type: application/json' \\
        -d '{"latency_s": 0.5}'

The package, by job: :mod:`.maestro` (the device: commands, IO thread, port changes),
:mod:`.line` (the pty and the serial line's timing), :mod:`.faults` (fault modes and
their parameters), :mod:`.control` (this HTTP API), :mod:`.cli` (the command line);
the servo physics are :mod:`services.servo.physics`.
"""

from services.servo.simulator.cli import main
from services.servo.simulator.faults import FAULT_MODES, validate_fault
from services.servo.simulator.maestro import Simulator, SimulatorConfig

__all__ = ["FAULT_MODES", "Simulator", "SimulatorConfig", "main", "validate_fault"]
