"""Suite-wide test settings."""

import os

from hypothesis import settings

# Shared CI machines are noisy: no per-example deadlines. In CI, examples are derived
# from the test's name so a red run reproduces exactly; locally they vary run to run.
settings.register_profile("ci", deadline=None, derandomize=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# Servo apps built inside the test process must not publish samples into the telemetry
# logger of a stack running on the default ports. Stacks the tests start are unaffected:
# they get an environment without SERVOSCOPE_* variables.
os.environ.setdefault("SERVOSCOPE_SERVO_TELEMETRY_ENABLED", "false")
# Nor may any app built in the test process publish to or consume the streams of such a
# stack's Redis: tests that use streams start their own Redis and say so.
os.environ.setdefault("SERVOSCOPE_STREAMS_ENABLED", "false")
