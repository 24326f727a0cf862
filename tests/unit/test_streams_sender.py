"""Outputs go into the transaction as record batches, where ``producer.send`` would put them."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from streams.scoring import Output
from streams.sender import BatchSender, KeyPartitions, delivered


class FakeProducer:
    """Collects what a real ``AIOKafkaProducer`` would be given: real record batches."""

    def __init__(self, partitions: dict[str, int], batch_size: int):
        self.partitions = partitions
        self.batch_size = batch_size
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes]]]] = []

    async def partitions_for(self, topic):
        return set(range(self.partitions[topic]))

    def create_batch(self):
        return BatchBuilder(self.batch_size, 0, is_transactional=1)

    async def send_batch(self, batch, topic, *, partition):
        batch.close()
        records = DefaultRecordBatch(bytearray(batch._build()))  # what the sender transmits
        self.sent.append((topic, partition, [(r.key, r.value) for r in records]))
        f = asyncio.get_running_loop().create_future()
        f.set_result(None)
        return f


def test_keyed_partitions_are_the_default_partitioners():
    keyed = KeyPartitions(cache_max=50)
    for i in range(300):
        key = f"acc{i}".encode()
        for n in (1, 3, 6, 12):
            assert keyed(key, n) == DefaultPartitioner()(key, list(range(n)), list(range(n)))


def test_outputs_arrive_per_partition_in_order_in_as_many_batches_as_they_need():
    producer = FakeProducer({"scores": 6, "log": 3}, batch_size=2_000)
    outputs = [Output("scores", f"acc{i % 40}".encode(), b"s%d" % i + b"x" * 100) for i in range(400)]
    outputs += [Output("log", b"k%d" % i, b"v%d" % i, partition=i % 3) for i in range(90)]
    futures = asyncio.run(_send(producer, outputs))
    assert len(futures) == len(producer.sent) > 6 + 3  # batches of 2 KB: several per partition
    got: dict[tuple[str, int], list] = {}
    for topic, p, records in producer.sent:
        got.setdefault((topic, p), []).extend(records)
    expected: dict[tuple[str, int], list] = {}
    for o in outputs:
        p = o.partition if o.partition is not None else DefaultPartitioner()(o.key, list(range(6)), [])
        expected.setdefault((o.topic, p), []).append((o.key, o.value))
    assert got == expected


def test_a_record_larger_than_a_batch_goes_alone():
    producer = FakeProducer({"t": 1}, batch_size=200)
    outputs = [Output("t", b"k", b"a" * 10, 0), Output("t", b"k", b"b" * 5000, 0),
               Output("t", b"k", b"c" * 10, 0)]
    asyncio.run(_send(producer, outputs))
    assert [[v for _, v in records] for _, _, records in producer.sent] == [
        [b"a" * 10], [b"b" * 5000], [b"c" * 10]]


def test_a_failed_delivery_is_raised():
    async def run():
        loop = asyncio.get_running_loop()
        ok, bad = loop.create_future(), loop.create_future()
        ok.set_result(None)
        bad.set_exception(RuntimeError("NotEnoughReplicas"))
        await delivered([ok, bad])

    with pytest.raises(RuntimeError, match="NotEnoughReplicas"):
        asyncio.run(run())


async def _send(producer, outputs):
    futures = await BatchSender(producer).send(outputs)
    await delivered(futures)
    return futures
