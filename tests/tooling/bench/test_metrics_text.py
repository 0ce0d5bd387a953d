"""Figures read off `/metrics` text, and when a latency probe counts as visible."""

from __future__ import annotations

import math

import pytest

from streams.tooling.bench import common, metrics_text
from streams.tooling.bench.phases import latency


def test_metric_parsing_and_probe_visibility() -> None:
    body = (b'kefu_events_total{topic="a.chat",outcome="accepted"} 10\n'
            b'kefu_events_total{topic="a.chat",outcome="rekeyed"} 3\n'
            b'kefu_events_total{topic="a.chat",outcome="duplicate"} 2\n'
            b'kefu_events_total{topic="a.orders",outcome="accepted"} 4\n'
            b"kefu_watermark_timestamp_seconds 1731290622.497\n")
    assert metrics_text.accounted(body, ["a.chat"]) == 12  # re-keyed ones come back as accepted
    assert metrics_text.accounted(body, ["a.chat", "a.orders"]) == 16
    assert metrics_text.watermark_ms(body) == 1_731_290_622_497
    # Probes sent at 1.0 and 2.0 s; observations (time, probes counted) in any order.
    seen = [(2.5, 2), (1.2, 0), (1.4, 1), (3.0, 2)]
    assert latency.visible([1.0, 2.0], seen) == pytest.approx([0.4, 0.5])
    assert math.isinf(latency.visible([1.0, 2.0, 2.9], seen)[2])  # never counted: infinite
    assert common.quantile([3.0, 1.0, 2.0, math.inf], 0.5) == 2.0
