"""Faust's ``exactly_once`` against a real broker: the evidence behind streams/worker.py's own loop.

Without kills both variants relay every input once; what differs is whether Faust wrote the outputs in
Kafka transactions at all. bench/faust_eos_probe.py adds the SIGKILLs and counts the duplicates.
"""

from __future__ import annotations

import argparse

import pytest

from bench.faust_eos_probe import run_one

pytestmark = pytest.mark.kafka


def probe_args(**kw) -> argparse.Namespace:
    base = dict(messages=1_500, kills=0, partitions=3, keys=60, batch=50, within=0.2,
                commit_interval=0.5, timeout=150.0, loglevel="warn")
    return argparse.Namespace(**base | kw)


def test_exactly_once_writes_its_outputs_outside_transactions(kafka, topic_prefix, tmp_path):
    r = run_one(kafka.kafka.bootstrap_servers, tmp_path, "exactly_once", probe_args(), topic_prefix)
    assert r["drained"] and (r["lost"], r["duplicated"]) == (0, 0), r
    # No transaction marker on the output topic: a crash between send and commit would duplicate.
    # If a Faust upgrade makes this fail, re-run bench/faust_eos_probe.py: the worker's reason may be gone.
    assert r["transaction_markers"] == 0, r


def test_exactly_once_is_transactional_when_the_app_consumes_its_output(kafka, topic_prefix, tmp_path):
    r = run_one(kafka.kafka.bootstrap_servers, tmp_path, "exactly_once_output_consumed", probe_args(),
                topic_prefix)
    assert r["drained"] and (r["lost"], r["duplicated"]) == (0, 0), r
    assert r["transaction_markers"] > 0, r
