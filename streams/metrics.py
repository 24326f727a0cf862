"""Prometheus metrics of one scoring worker, in their own registry (tests run several workers).

Names follow Prometheus conventions; events/s is ``rate(txmon_events_total[1m])``; the names match
deploy/grafana/dashboards/txmon.json.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


def observe_many(histogram: Histogram, values: Sequence[float] | np.ndarray) -> None:
    """``histogram.observe(v)`` for every value, as one count per bucket.

    The worker observes two end-to-end latencies per transaction; one ``observe`` each cost ~3 us
    of the record path. The buckets are counted with numpy and each bucket is incremented once
    (``Histogram``'s own ``_sum`` and ``_buckets``, as its ``observe`` does); when a later
    prometheus-client lacks them, the values are observed one by one.

    >>> from prometheus_client import CollectorRegistry
    >>> h = Histogram("h", "h", buckets=(1, 2), registry=CollectorRegistry())
    >>> observe_many(h, [0.5, 1.0, 1.5, 9.0])
    >>> [(s.labels["le"], s.value) for s in h.collect()[0].samples if s.name == "h_bucket"]
    [('1.0', 2.0), ('2.0', 3.0), ('+Inf', 4.0)]
    """
    bounds, buckets, total = (getattr(histogram, a, None) for a in ("_upper_bounds", "_buckets", "_sum"))
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for v in values:
            histogram.observe(float(v))
        return
    x = np.asarray(values, dtype=np.float64)
    if not len(x):
        return
    # observe() counts a value in the first bucket whose bound is >= it.
    counts = np.bincount(np.searchsorted(np.asarray(bounds, dtype=np.float64), x, side="left"),
                         minlength=len(bounds))
    total.inc(float(x.sum()))
    for i in np.flatnonzero(counts[:len(buckets)]):
        buckets[i].inc(float(counts[i]))


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.events = Counter("txmon_events", "Records consumed, by topic kind and outcome",
                              ["kind", "outcome"], registry=r)
        self.scores = Counter("txmon_scored", "Scores published", registry=r)
        self.alerts = Counter("txmon_alerts", "Alerts published, by severity", ["severity"],
                              registry=r)
        self.dead_letters = Counter("txmon_dlq", "Records sent to the DLQ, by reason (stage:field)",
                                    ["reason"], registry=r)
        self.batch_size = Histogram("txmon_batch_size", "Records per micro-batch",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.scoring_seconds = Histogram("txmon_scoring_latency_seconds",
                                         "ONNX scoring time per micro-batch", buckets=LATENCY_BUCKETS,
                                         registry=r)
        self.batch_seconds = Histogram("txmon_batch_latency_seconds",
                                       "Whole micro-batch: decode, features, score, commit",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.phase_seconds = Histogram("txmon_batch_phase_seconds",
                                       "Micro-batch time by phase (streams.scoring.PHASES)",
                                       ["phase"], buckets=LATENCY_BUCKETS, registry=r)
        self.e2e_event_seconds = Histogram(
            "txmon_event_time_latency_seconds",
            "Scored-and-committed time minus the transaction's event_time",
            buckets=LATENCY_BUCKETS, registry=r)
        self.e2e_ingest_seconds = Histogram(
            "txmon_e2e_latency_seconds",
            "Scored-and-committed time minus the Kafka record timestamp",
            buckets=LATENCY_BUCKETS, registry=r)
        self.model = Info("txmon_model", "Model version being served", registry=r)
        self.model_swaps = Counter("txmon_model_swaps", "Models switched to", registry=r)
        self.model_rejected = Counter("txmon_model_rejected",
                                      "Promoted or validated artifacts refused (hash, signature, load)",
                                      registry=r)
        self.shadow_scores = Counter("txmon_shadow_scored",
                                     "Shadow scores published for the challenger", registry=r)
        self.shadow_seconds = Histogram("txmon_shadow_scoring_latency_seconds",
                                        "Challenger ONNX scoring time per micro-batch",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.shadow_failures = Counter("txmon_shadow_failures",
                                       "Challengers dropped because they failed to encode or score",
                                       registry=r)
        self.challenger = Info("txmon_challenger",
                               "Challenger being shadow scored (version empty when none)", registry=r)
        self.lag = Gauge("txmon_consumer_lag", "High watermark minus position",
                         ["topic", "partition"], registry=r)
        self.transactions = Counter("txmon_kafka_transactions",
                                    "Kafka transactions, by outcome", ["outcome"], registry=r)
        self.unmatched_labels = Counter("txmon_labels_unmatched",
                                        "Labels whose transaction is no longer in the account's index",
                                        registry=r)
