"""Worker metrics: bulk histogram observations count exactly what one-by-one observations count."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram

from streams.metrics import LATENCY_BUCKETS, observe_many


def _samples(h: Histogram) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("le", "")): s.value for s in h.collect()[0].samples
            if not s.name.endswith("_created")}


def test_observe_many_matches_observe_one_by_one_including_values_on_the_bounds():
    rng = random.Random(3)
    values = [rng.expovariate(20) for _ in range(5_000)] + list(LATENCY_BUCKETS) + [0.0, 1e9]
    one = Histogram("a", "a", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    many = Histogram("a", "a", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    for v in values:
        one.observe(v)
    for i in range(0, len(values), 97):  # in batches, as the worker observes them
        observe_many(many, values[i:i + 97])
    observe_many(many, [])
    expected, got = _samples(one), _samples(many)
    assert expected.keys() == got.keys()
    for k, v in expected.items():
        assert got[k] == v or (k[0] == "a_sum" and abs(got[k] - v) < 1e-9 * v), (k, got[k], v)
    assert got[("a_count", "")] == len(values)


def test_observe_many_falls_back_to_observe_without_the_private_buckets():
    class Plain:
        def __init__(self):
            self.seen = []

        def observe(self, v):
            self.seen.append(v)

    h = Plain()
    observe_many(h, [0.1, 0.2])
    assert h.seen == [0.1, 0.2]
