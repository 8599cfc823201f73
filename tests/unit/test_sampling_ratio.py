"""[telemetry] sampling_ratio: a number from 0 to 1, or an error that says how to set it."""

from __future__ import annotations

import pytest

from servoscope.settings import SettingsError, load
from servoscope.telemetry import sampling_ratio


@pytest.mark.parametrize("given", ["1.0", "0.1", "0.01", "0"])
def test_a_ratio_from_0_to_1_is_the_samplers(given: str) -> None:
    assert sampling_ratio(load({"SERVOSCOPE_TELEMETRY_SAMPLING_RATIO": given})) == float(given)


@pytest.mark.parametrize("given", ["1.5", "-0.1", "nan"])
def test_a_ratio_outside_0_to_1_names_the_setting_and_its_variable(given: str) -> None:
    with pytest.raises(SettingsError, match=r"sampling_ratio .* SERVOSCOPE_TELEMETRY_SAMPLING"):
        sampling_ratio(load({"SERVOSCOPE_TELEMETRY_SAMPLING_RATIO": given}))
