"""Headers the gateway sends upstream: one value per name, whatever the case."""

from servoscope.outbound import one_per_name


def test_a_header_set_in_another_case_replaces_the_copied_one() -> None:
    copied = {"X-Request-Id": "from-caller", "Traceparent": "00-aa-bb-01", "Accept": "*/*"}
    sent = one_per_name({**copied, "X-Request-ID": "mine"}, {"traceparent": "00-cc-dd-01"})
    assert sent == {"X-Request-ID": "mine", "traceparent": "00-cc-dd-01", "Accept": "*/*"}
