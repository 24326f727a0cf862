"""Short variant of bench/bench_hostile.py (same code): hypothesis-generated hostile records among
valid ones, through a real broker and a ``txmon worker`` process."""

from __future__ import annotations

import asyncio

import pytest

from bench._hostile import generate
from bench._reliability import workload
from bench.bench_hostile import run_hostile

pytestmark = pytest.mark.kafka


def test_every_hostile_record_is_dead_lettered_and_every_valid_one_scored(kafka_cluster, topic_prefix,
                                                                          tmp_path):
    hostile = generate(2_000, seed=7)
    w = workload(1_000, tmp_path, seed=7, tiny=True)
    r = asyncio.run(run_hostile(kafka_cluster, tmp_path, w, hostile, prefix=topic_prefix,
                                logs=tmp_path / "logs", timeout=150.0, worker_args=["--no-drift"]))
    h, v = r["hostile"], r["valid"]
    assert r["finished"] and r["worker"]["never_exited_unasked"], r["worker"]
    assert h["acknowledged_by_broker"] == h["generated"], h
    assert (h["missing_from_dlq"], h["extra_dead_letters"], h["dead_letters_without_reason"]) == (0, 0, 0), h
    assert len(h["by_category"]) >= 10, h["by_category"].keys()  # hypothesis reached most shapes
    assert (v["lost"], v["duplicated"], v["valid_dead_lettered"]) == (0, 0, 0), v
    assert v["distinct_scored"] == v["transactions_in"] == 1_000
