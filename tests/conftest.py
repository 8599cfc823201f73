"""Suite-wide test settings."""

import os

from hypothesis import settings

# Shared CI machines are noisy: no per-example deadlines. In CI, examples are derived
# from the test's name so a red run reproduces exactly; locally they vary run to run.
settings.register_profile("ci", deadline=None, derandomize=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
