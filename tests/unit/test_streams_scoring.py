"""The Kafka-free scoring core: one score per transaction, dead letters, credits, labels, changelog."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import numpy as np
import pytest

import models.features as features
from models.dataset import fit_spec
from models.features import FeatureEncoder
from models.toy import toy_frame
from streams.config import PolicyConfig, WorkerConfig
from streams.policy import AlertPolicy
from streams.scoring import PHASES, Record, ScoringCore, Topics
from streams.tables import AccountTable, CounterpartyRisk
from txmon.contracts import Alert, DeadLetter, Label, Reason, Score, Transaction, decode
from txmon.frames import to_transaction
from txmon.settings import Settings


class TokenModel:
    """A deterministic stand-in for the ONNX scorer: a fixed function of the real encoder's tokens."""

    def __init__(self, encoder: FeatureEncoder, version: str = "m1", bias: float = 0.0):
        self.encoder = encoder
        self.version = version
        self.bias = bias
        self.calls = 0

    def score(self, batch):
        self.calls += 1
        t = batch["tokens"].astype(np.float64)
        raw = (t[:, -1, :] * np.arange(1, t.shape[2] + 1)).sum(axis=1) + 0.1 * t[:, :-1, :].sum(axis=(1, 2))
        return 1 / (1 + np.exp(-(np.sin(raw) * 3 + self.bias))), t.mean(axis=1)

    def explain(self, model_input):
        return [Reason(feature="amount", description="amount far above the account's usual",
                       contribution=0.4)]


@pytest.fixture(scope="module")
def frame():
    return toy_frame(accounts=12, days=6, seed=3).sort_values("event_time").reset_index(drop=True)


@pytest.fixture(scope="module")
def encoder(frame):
    return FeatureEncoder(fit_spec(frame, min_count=1), max_len=8)


@pytest.fixture
def topics():
    return Topics.from_settings(Settings(), "g")


def make_core(topics, threshold=0.8):
    cfg = WorkerConfig(instance_id="t", policy=PolicyConfig(threshold=threshold))
    accounts = AccountTable(features.new_account_state, AlertPolicy.new_state)
    risk = CounterpartyRisk(features.new_counterparty_risk, features.update_counterparty_risk)
    return ScoringCore(topics, cfg, features, accounts, risk, AlertPolicy(cfg.policy, 3))


def tx_records(frame, topics, partitions=3):
    out = []
    offsets = [0] * partitions
    for row in frame.to_dict("records"):
        tx = to_transaction(row)
        p = hash(tx.account_id) % partitions
        out.append(Record(topics.transactions, p, offsets[p], tx.account_id.encode(), tx.to_bytes(),
                          1_700_000_000_000))
        offsets[p] += 1
    return out


def outputs_on(result, topic):
    return [o for o in result.outputs if o.topic == topic]


def test_every_valid_transaction_gets_exactly_one_score_and_bad_ones_dead_letters(frame, encoder, topics):
    core, model = make_core(topics), TokenModel(encoder)
    records = tx_records(frame, topics)
    bad = [Record(topics.transactions, 0, 10_000, b"acc1", b'{"tx_id": "x", "amount": 1.5}', 0),
           Record(topics.transactions, 1, 10_001, b"acc2", b"\xff\xfe", 0),
           Record(topics.transactions, 2, 10_002, b"someone-else", records[0].value, 0)]
    result = core.process(records + bad, model)
    scores = [decode(Score, o.value) for o in outputs_on(result, topics.scores)]
    assert sorted(s.tx_id for s in scores) == sorted(frame["tx_id"])
    assert {s.model_version for s in scores} == {"m1"}
    letters = [decode(DeadLetter, o.value) for o in outputs_on(result, topics.dlq)]
    assert [(d.offset, d.stage) for d in letters] == [(10_000, "decode"), (10_001, "decode"),
                                                      (10_002, "partitioning")]
    assert base64.b64decode(letters[1].original) == b"\xff\xfe"
    assert letters[0].error_field == "amount" and "float" in letters[0].error
    assert letters[2].error_field == "key"
    assert model.calls == 1  # one ONNX call for the micro-batch


def test_alerts_follow_the_policy_and_carry_reasons_rules_and_version(frame, encoder, topics):
    core = make_core(topics, threshold=0.7)
    result = core.process(tx_records(frame, topics), TokenModel(encoder, "v7"))
    scores = {s.tx_id: s for s in (decode(Score, o.value) for o in outputs_on(result, topics.scores))}
    alerts = [decode(Alert, o.value) for o in outputs_on(result, topics.alerts)]
    assert alerts, "the fixture must produce some alerts"
    assert {a.tx_id for a in alerts} == {t for t, s in scores.items() if s.score >= 0.7}
    assert all(scores[a.tx_id].alerted for a in alerts)
    assert all(a.model_version == "v7" and a.reasons and a.threshold == 0.7 for a in alerts)
    assert {a.severity for a in alerts} <= {"low", "medium", "high", "critical"}


def test_a_batch_reports_where_its_time_went(frame, encoder, topics):
    core = make_core(topics, threshold=0.7)
    result = core.process(tx_records(frame, topics), TokenModel(encoder, "v7"))
    assert result.alerts, "the fixture must produce some alerts"
    assert set(result.phases) == {"records", "score", "explain", "publish", "changelog"}
    assert set(result.phases) <= set(PHASES) and all(v > 0 for v in result.phases.values())
    assert result.phases["score"] >= result.scoring_seconds
    quiet = make_core(topics, threshold=1.0).process(tx_records(frame, topics), TokenModel(encoder))
    assert "explain" not in quiet.phases  # only alerts are explained


def test_replay_in_different_batch_sizes_gives_identical_scores(frame, encoder, topics):
    """What makes a replay after a crash recompute the same outputs (only one copy ever commits)."""
    records = tx_records(frame, topics)
    one = make_core(topics).process(records, TokenModel(encoder))
    core, model = make_core(topics), TokenModel(encoder)
    pieces = []
    for i in range(0, len(records), 7):
        pieces += outputs_on(core.process(records[i:i + 7], model), topics.scores)

    def by_tx(outs):
        return {s.tx_id: s.score for s in (decode(Score, o.value) for o in outs)}

    assert by_tx(pieces) == by_tx(outputs_on(one, topics.scores))


def test_a_transaction_seen_twice_is_scored_once(frame, encoder, topics):
    core, model = make_core(topics), TokenModel(encoder)
    records = tx_records(frame, topics)[:20]
    first = core.process(records, model)
    again = core.process(records[:5], model)
    assert len(outputs_on(first, topics.scores)) == 20
    assert outputs_on(again, topics.scores) == [] and again.duplicates == 5


def test_transfer_credit_side_is_rekeyed_and_lands_in_the_beneficiary_history(frame, encoder, topics):
    core, model = make_core(topics), TokenModel(encoder)
    records = tx_records(frame, topics)
    result = core.process(records, model)
    credits = outputs_on(result, topics.credits)
    transfers = frame[frame["tx_type"] == "transfer"]
    assert len(credits) == len(transfers) > 0
    c = credits[0]
    tx = decode(Transaction, c.value)
    assert c.key == tx.counterparty_id.encode()
    before = len(core.accounts.get(tx.counterparty_id, 0).state["h"])
    core.process([Record(topics.credits, 0, 0, c.key, c.value, 0)], model)
    after = core.accounts.get(tx.counterparty_id, 0).state["h"]
    assert len(after) == min(before + 1, features.HISTORY_MAX)


def test_label_joins_the_scored_transaction_and_feeds_counterparty_risk(frame, encoder, topics):
    core, model = make_core(topics), TokenModel(encoder)
    records = tx_records(frame, topics)
    core.process(records, model)
    row = frame.iloc[-1]
    label = Label(tx_id=row["tx_id"], account_id=row["account_id"], label="fraud",
                  label_time=datetime(2026, 2, 1, tzinfo=UTC), source="chargeback")
    unknown = Label(tx_id="never", account_id=row["account_id"], label="legit",
                    label_time=datetime(2026, 2, 1, tzinfo=UTC))
    result = core.process([Record(topics.labels, 0, 0, label.account_id.encode(), label.to_bytes(), 0),
                           Record(topics.labels, 0, 1, b"x", unknown.to_bytes(), 0)], model)
    events = outputs_on(result, topics.counterparty)
    assert len(events) == 1 and result.unmatched_labels == 1
    assert events[0].key == row["counterparty_id"].encode()
    core.risk.apply(events[0].value)
    n, rate = features.risk_numbers(core.risk.get(row["counterparty_id"]),
                                    features.epoch_seconds(datetime(2026, 2, 1, tzinfo=UTC)))
    assert (n, rate) == (1.0, 1.0)


def test_changelog_restores_the_same_state_and_budget(frame, encoder, topics):
    core, model = make_core(topics), TokenModel(encoder)
    result = core.process(tx_records(frame, topics), model)
    log = outputs_on(result, topics.changelog)
    restored = AccountTable(features.new_account_state, AlertPolicy.new_state)
    for p in range(3):
        restored.restore(p, [(o.key, o.value) for o in log if o.partition == p])
    assert len(restored) == len(core.accounts) == frame["account_id"].nunique()
    for account in frame["account_id"].unique():
        a, b = core.accounts.peek(account), restored.peek(account)
        assert json.dumps(a.state, sort_keys=True) == json.dumps(b.state, sort_keys=True)
        assert a.index == b.index
    assert restored.policy_state == core.accounts.policy_state
    # nothing changed since: the next batch writes no changelog for untouched accounts
    assert outputs_on(core.process([], model), topics.changelog) == []


def test_changelog_partition_follows_the_input_partition(frame, encoder, topics):
    core = make_core(topics)
    records = tx_records(frame, topics)
    part_of = {r.key: r.partition for r in records}
    result = core.process(records, TokenModel(encoder))
    for o in outputs_on(result, topics.changelog):
        if not o.key.startswith(b"\x00"):
            assert o.partition == part_of[o.key.split(b"\x00")[0]]


def test_event_and_ingest_times_are_reported_for_latency(frame, encoder, topics):
    core = make_core(topics)
    records = tx_records(frame, topics)[:10]
    result = core.process(records, TokenModel(encoder))
    assert result.event_times == [t.to_pydatetime() for t in frame["event_time"][:10]]
    assert result.ingest_ms == [r.timestamp_ms for r in records]


def compacted(outputs):
    """What a compacted changelog keeps: the latest value per key, in the order they were written."""
    latest = {}
    for o in outputs:
        latest.pop((o.partition, o.key), None)
        latest[(o.partition, o.key)] = o.value
    return latest


def restored_from(log, partitions=3, chunk=1):
    table = AccountTable(features.new_account_state, AlertPolicy.new_state)
    for p in range(partitions):
        records = [(k, v) for (q, k), v in log.items() if q == p]
        r = table.restorer(p)
        for i in range(0, len(records), chunk):  # the worker reads it in fetches of any size
            r.apply(records[i:i + chunk])
        r.finish()
    return table


def assert_same_accounts(a, b):
    assert len(a) == len(b)
    for account in list(a._entries):
        x, y = a.peek(account), b.peek(account)
        assert json.dumps(x.state, sort_keys=True) == json.dumps(y.state, sort_keys=True)
        assert x.index == y.index and x.seq == y.seq


def test_changelog_writes_only_what_changed_and_compacts_to_the_state(frame, encoder, topics):
    """A batch writes each touched account's head, its new history records and its new index items
    (scores included); after compaction, with rings small enough to wrap, a restore (in chunks of
    any size) gives back every account, history, label index and budget exactly."""
    busy = toy_frame(accounts=3, days=30, seed=4).sort_values("event_time").reset_index(drop=True)
    core, model = make_core(topics), TokenModel(encoder)
    core.config = core.config.model_copy(update={"label_index_size": 5})
    core.accounts.rings = (features.HISTORY_MAX, 5)
    records = tx_records(busy, topics)
    assert busy["account_id"].value_counts().min() > features.HISTORY_MAX  # the rings wrap
    log = []
    for i in range(0, len(records), 9):
        batch = records[i:i + 9]
        written = outputs_on(core.process(batch, model), topics.changelog)
        log += written
        for account in {r.key for r in batch}:
            n = sum(r.key == account for r in batch)
            mine = [o for o in written if o.key.split(b"\x00")[0] == account]
            rings = [o.key.split(b"\x00")[1][:1] for o in mine if b"\x00" in o.key]
            assert rings.count(b"h") >= n and rings.count(b"i") == min(n, 5)  # (credits add history)
            assert sum(b"\x00" not in o.key for o in mine) == 1
            items = [json.loads(o.value) for o in mine if b"\x00i" in o.key]
            assert all(isinstance(item[2], float) for item in items)  # written with its score
    assert max(len(v) for v in (o.value for o in log)) < 2_000  # small records, never the entry
    for chunk in (1, 7, 10_000):
        assert_same_accounts(core.accounts, restored_from(compacted(log), chunk=chunk))
    assert restored_from(compacted(log)).policy_state == core.accounts.policy_state
    for e in core.accounts._entries.values():
        assert len(e.index) == 5 and len(e.state["h"]) == features.HISTORY_MAX
    # A shorter label index (a new label_index_size): each account is written whole once under the
    # new ring, and the old ring's slots left behind do not confuse a restore.
    core.config = core.config.model_copy(update={"label_index_size": 3})
    core.accounts.rings = (features.HISTORY_MAX, 3)
    more = toy_frame(accounts=3, days=8, seed=5).sort_values("event_time").reset_index(drop=True)
    more["tx_id"] = "m" + more["tx_id"]
    for r in range(0, len(more), 9):
        written = outputs_on(core.process(tx_records(more.iloc[r:r + 9], topics), model),
                             topics.changelog)
        log += written
        if r == 0:
            for account in {o.key.split(b"\x00")[0] for o in written if o.key[:1] != b"\x00"}:
                e = core.accounts.peek(account.decode())
                keys = [o.key for o in written if o.key.startswith(account + b"\x00")]
                assert sum(b"\x00i" in k for k in keys) == len(e.index) == 3
                assert sum(b"\x00h" in k for k in keys) == len(e.state["h"])
    assert_same_accounts(core.accounts, restored_from(compacted(log), chunk=3))


def test_account_memory_is_bounded_by_the_label_index_age_and_the_live_texts(frame, encoder, topics):
    """The label index forgets transactions older than label_index_days (event time), and the
    text cache holds exactly the texts of the current history and index: no dead records."""
    core, model = make_core(topics), TokenModel(encoder)
    core.config = core.config.model_copy(update={"label_index_days": 2.0})
    records = tx_records(frame, topics)
    for i in range(0, len(records), 16):
        core.process(records[i:i + 16], model)
    busiest = frame["account_id"].value_counts().index[0]
    e = core.accounts.peek(busiest)
    times = [item[3] for item in e.index]
    assert 1 <= len(e.index) < (frame["account_id"] == busiest).sum()
    assert times == sorted(times) and times[-1] - times[0] <= 2 * 86400
    assert all(e.find(item[0]) is item for item in e.index)
    older = list(frame[frame["account_id"] == busiest]["tx_id"])[: -len(e.index)]
    assert older and not any(e.seen(t) for t in older)  # forgotten: a label for them goes unmatched


@pytest.mark.parametrize("compress", [False, True])
def test_a_changelog_of_whole_entries_still_restores_and_moves_to_deltas(frame, encoder, topics,
                                                                        compress):
    """Older workers wrote each account whole ({"s": state, "i": [[tx, cp, score, at]]}, maybe
    zlib-compressed): it restores, and the account's next change writes it all as deltas."""
    import zlib

    core, model = make_core(topics), TokenModel(encoder)
    records = tx_records(frame, topics)
    core.process(records, model)
    account = frame["account_id"].iloc[0]
    e = core.accounts.peek(account)
    whole = json.dumps({"s": e.state, "i": [item[:4] for item in e.index]}).encode()
    old = AccountTable(features.new_account_state, AlertPolicy.new_state)
    old.restore(0, [(account.encode(), zlib.compress(whole) if compress else whole)])
    got = old.peek(account)
    assert got.state == e.state and [i[:4] for i in got.index] == [i[:4] for i in e.index]
    old.touch(account)
    log = {(p, k): v for p, k, v in old.changelog()}
    again = AccountTable(features.new_account_state, AlertPolicy.new_state)
    again.restore(0, [(k, v) for (_, k), v in log.items()])
    assert again.peek(account).state == e.state and again.peek(account).index == got.index


def test_a_worker_restored_from_the_changelog_scores_as_one_that_never_stopped(frame, encoder, topics):
    """The restored worker starts with no token-row or text caches: same scores as warm ones."""
    records = tx_records(frame, topics)
    half = len(records) // 2
    whole = make_core(topics).process(records, TokenModel(encoder))
    first = make_core(topics)
    log = outputs_on(first.process(records[:half], TokenModel(encoder)), topics.changelog)
    second = make_core(topics)
    for p in range(3):
        second.accounts.restore(p, [(o.key, o.value) for o in log if o.partition == p])
    rest = second.process(records[half:], TokenModel(encoder))

    def by_tx(outs):
        return {s.tx_id: s.score for s in (decode(Score, o.value) for o in outs)}

    expected = by_tx(outputs_on(whole, topics.scores))
    got = by_tx(outputs_on(rest, topics.scores))
    assert got and got == {k: expected[k] for k in got}


def test_steps_pause_every_few_records_and_produce_what_process_does(frame, encoder, topics):
    # The worker drives ScoringCore.steps so that a committing transaction can make progress
    # between the pauses; the outputs must not depend on being produced in steps.
    from streams.scoring import STEP_RECORDS, BatchResult

    records = tx_records(frame, topics)
    assert len(records) > 3 * STEP_RECORDS
    whole = make_core(topics).process(records, TokenModel(encoder))
    stepped, pauses = BatchResult(), 0
    core, model = make_core(topics), TokenModel(encoder)
    steps = core.steps(records, model, None, stepped)
    for _ in steps:
        pauses += 1
        assert stepped.scored == 0 or pauses > len(records) // STEP_RECORDS  # scoring comes last
    assert pauses >= len(records) // STEP_RECORDS  # at least one pause per STEP_RECORDS records
    assert model.calls == 1  # still one ONNX call for the micro-batch
    assert [(o.topic, o.key, o.partition) for o in stepped.outputs] == \
        [(o.topic, o.key, o.partition) for o in whole.outputs]
    assert [decode(Score, o.value).score for o in outputs_on(stepped, topics.scores)] == \
        [decode(Score, o.value).score for o in outputs_on(whole, topics.scores)]
