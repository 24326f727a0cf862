"""Shadow scoring: the challenger scores every transaction beside the champion, never alerts, and
its lifecycle (validated -> promoted / rejected / rolled_back / replaced) follows txmon.models."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.artifact import ArtifactError, verify, write_manifest
from models.features import FeatureEncoder
from streams.hotswap import ModelSlot
from streams.scoring import Record, ScoredBatch, same_encoding
from tests.unit.test_streams_scoring import TokenModel, encoder, frame, make_core, outputs_on, topics
from tests.unit.test_streams_scoring import tx_records as records_of
from txmon.contracts import Alert, Label, ModelEvent, Score, decode

__all__ = ["encoder", "frame", "topics"]  # fixtures shared with the scoring core tests


def scores_of(result, topic):
    return [decode(Score, o.value) for o in outputs_on(result, topic)]


class Recording:
    """A BatchObserver that remembers what it was shown."""

    def __init__(self):
        self.batches: list[ScoredBatch] = []
        self.labels: list[tuple[str, float | None, str]] = []

    def on_batch(self, batch):
        self.batches.append(batch)
        return []

    def on_label(self, label, score, model_version):
        self.labels.append((label.tx_id, score, model_version))
        return []


def test_challenger_adds_one_shadow_score_per_transaction_and_never_alerts(frame, encoder, topics):
    core = make_core(topics, threshold=0.7)
    core.observer = seen = Recording()
    champion, challenger = TokenModel(encoder, "v1"), TokenModel(encoder, "v2", bias=2.0)
    result = core.process(records_of(frame, topics), champion, challenger)
    scores = scores_of(result, topics.scores)
    main = {s.tx_id: s for s in scores if not s.shadow}
    shadow = {s.tx_id: s for s in scores if s.shadow}
    assert len(main) + len(shadow) == len(scores) == 2 * len(frame)
    assert set(main) == set(shadow) == set(frame["tx_id"])
    assert {s.model_version for s in main.values()} == {"v1"}
    assert {s.model_version for s in shadow.values()} == {"v2"}
    assert not any(s.alerted for s in shadow.values())
    # The challenger (bias +2) scores higher: above the threshold far more often than the champion,
    # and still only the champion's scores alert.
    hot = {t for t, s in shadow.items() if s.score >= 0.7}
    alerts = [decode(Alert, o.value) for o in outputs_on(result, topics.alerts)]
    assert {a.tx_id for a in alerts} == {t for t, s in main.items() if s.score >= 0.7} != hot
    assert {a.model_version for a in alerts} == {"v1"}
    assert champion.calls == 1 and challenger.calls == 1  # one extra ONNX call for the batch
    assert result.shadow_scored == len(frame) and result.shadow_version == "v2"
    assert result.scored == len(frame)
    # Drift sees the champion only.
    assert [b.model_version for b in seen.batches] == ["v1"]
    assert sorted(seen.batches[0].scores) == sorted(s.score for s in main.values())


def test_shadow_scores_equal_the_challenger_scoring_alone(frame, encoder, topics):
    records = records_of(frame, topics)
    shadowed = make_core(topics).process(records, TokenModel(encoder, "v1"),
                                         TokenModel(encoder, "v2", bias=-1.0))
    alone = make_core(topics).process(records, TokenModel(encoder, "v2", bias=-1.0))
    assert ({s.tx_id: s.score for s in scores_of(shadowed, topics.scores) if s.shadow}
            == {s.tx_id: s.score for s in scores_of(alone, topics.scores)})


def test_a_challenger_with_its_own_encoding_sees_the_same_history(frame, encoder, topics):
    other = FeatureEncoder(encoder.spec, max_len=4)
    assert not same_encoding(TokenModel(encoder), TokenModel(other))
    records = records_of(frame, topics)
    shadowed = make_core(topics).process(records, TokenModel(encoder, "v1"), TokenModel(other, "v2"))
    alone = make_core(topics).process(records, TokenModel(other, "v2"))
    assert ({s.tx_id: s.score for s in scores_of(shadowed, topics.scores) if s.shadow}
            == {s.tx_id: s.score for s in scores_of(alone, topics.scores)})


def test_labels_join_the_champion_score_not_the_shadow_one(frame, encoder, topics):
    core = make_core(topics)
    core.observer = seen = Recording()
    champion, challenger = TokenModel(encoder, "v1"), TokenModel(encoder, "v2", bias=3.0)
    result = core.process(records_of(frame, topics), champion, challenger)
    row = frame.iloc[-1]
    champ = next(s for s in scores_of(result, topics.scores) if s.tx_id == row["tx_id"] and not s.shadow)
    label = Label(tx_id=row["tx_id"], account_id=row["account_id"], label="fraud",
                  label_time=datetime(2026, 2, 1, tzinfo=UTC))
    core.process([Record(topics.labels, 0, 0, label.account_id.encode(), label.to_bytes(), 0)],
                 champion, challenger)
    assert seen.labels == [(row["tx_id"], champ.score, "v1")]


class Broken(TokenModel):
    def score(self, batch):
        raise RuntimeError("graph says no")


def test_a_failing_challenger_costs_only_the_shadow_scores(frame, encoder, topics):
    records = records_of(frame, topics)
    result = make_core(topics).process(records, TokenModel(encoder, "v1"), Broken(encoder, "v2"))
    alone = make_core(topics).process(records, TokenModel(encoder, "v1"))
    assert result.shadow_error and "graph says no" in result.shadow_error
    assert result.shadow_scored == 0
    assert ({s.tx_id: s.score for s in scores_of(result, topics.scores)}
            == {s.tx_id: s.score for s in scores_of(alone, topics.scores)})
    assert not any(s.shadow for s in scores_of(result, topics.scores))


# -- the model slot ------------------------------------------------------------------------------

@pytest.fixture
def artifacts(tmp_path) -> dict[str, tuple[Path, str]]:
    out = {}
    for v in ("v1", "v2", "v3", "v4"):
        d = tmp_path / v
        d.mkdir()
        (d / "model.onnx").write_bytes(f"weights of {v}".encode())
        out[v] = (d, write_manifest(d, version=v).artifact_sha256)
    return out


class Loader:
    """Verifies the artifact for real, then serves a token model; counts loads."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.loads: list[str] = []

    def __call__(self, directory: Path, expected_sha256: str | None):
        m = verify(directory, expected_sha256=expected_sha256)
        self.loads.append(m.version)
        return TokenModel(self.encoder, m.version)


def event(kind: str, version: str, artifacts, sha: str | None = None) -> bytes:
    d, real = artifacts[version]
    return ModelEvent(event=kind, version=version, artifact_sha256=sha or real, artifact_uri=str(d),
                      created_at=datetime.now(UTC)).to_bytes()


def offer(slot: ModelSlot, raw: bytes, offset: int = 0) -> bool:
    return asyncio.run(slot.offer(raw, "txmon.models", 0, offset))


def versions(slot: ModelSlot) -> tuple[str | None, str | None]:
    slot.for_next_batch()
    return slot.version, slot.challenger_version


def test_validated_shadows_until_promoted_then_serves_without_a_second_load(encoder, artifacts):
    load = Loader(encoder)
    slot = ModelSlot(load)
    slot.install(load(*artifacts["v1"]))
    assert versions(slot) == ("v1", None)
    assert offer(slot, event("validated", "v2", artifacts))
    assert slot.version == "v1" and slot.challenger_version is None  # only at the next batch
    assert slot.next_versions == ("v1", "v2")
    assert versions(slot) == ("v1", "v2")
    assert offer(slot, event("promoted", "v2", artifacts))
    assert versions(slot) == ("v2", None)
    assert load.loads == ["v1", "v2"]  # the verified challenger became the champion as is
    assert not offer(slot, event("validated", "v2", artifacts))  # already the champion


@pytest.mark.parametrize("ending", ["rejected", "rolled_back"])
def test_rejected_or_rolled_back_challenger_stops_shadowing(encoder, artifacts, ending):
    load = Loader(encoder)
    slot = ModelSlot(load)
    slot.install(load(*artifacts["v1"]))
    offer(slot, event("validated", "v2", artifacts))
    assert versions(slot) == ("v1", "v2")
    assert not offer(slot, event(ending, "v3", artifacts))  # another version: no change
    assert versions(slot) == ("v1", "v2")
    assert offer(slot, event(ending, "v2", artifacts))
    assert versions(slot) == ("v1", None)


def test_another_validated_version_replaces_the_challenger(encoder, artifacts):
    load = Loader(encoder)
    slot = ModelSlot(load)
    slot.install(load(*artifacts["v1"]))
    offer(slot, event("validated", "v2", artifacts))
    assert versions(slot) == ("v1", "v2")
    offer(slot, event("validated", "v3", artifacts))
    assert versions(slot) == ("v1", "v3")
    # A promotion of some other version leaves the shadow running.
    offer(slot, event("promoted", "v4", artifacts))
    assert versions(slot) == ("v4", "v3")


def test_a_bad_validated_artifact_is_refused_and_nothing_changes(encoder, artifacts):
    load = Loader(encoder)
    slot = ModelSlot(load)
    slot.install(load(*artifacts["v1"]))
    offer(slot, event("validated", "v2", artifacts))
    versions(slot)
    d3, _ = artifacts["v3"]
    (d3 / "model.onnx").write_bytes(b"tampered after signing off")
    raw = event("validated", "v3", artifacts)
    assert not offer(slot, raw, offset=7)
    assert versions(slot) == ("v1", "v2")
    [refusal] = slot.drain_refusals()
    assert (refusal.version, refusal.event, refusal.letter.stage) == ("v3", "validated", "model_load")
    assert refusal.letter.offset == 7 and "sha256" in refusal.letter.error
    assert not offer(slot, raw)  # a refused artifact is not tried again
    assert slot.drain_refusals() == [] and load.loads.count("v3") == 0
    # A wrong digest in the event is refused too.
    assert not offer(slot, event("validated", "v4", artifacts, sha="0" * 64))
    assert [r.version for r in slot.drain_refusals()] == ["v4"]
    with pytest.raises(ArtifactError):
        load(d3, None)


def test_shadow_off_ignores_validated_events(encoder, artifacts):
    load = Loader(encoder)
    slot = ModelSlot(load, shadow=False)
    slot.install(load(*artifacts["v1"]))
    assert not offer(slot, event("validated", "v2", artifacts))
    assert versions(slot) == ("v1", None) and load.loads == ["v1"]


def test_a_challenger_dropped_after_failing_is_not_shadowed_again(encoder, artifacts):
    load = Loader(encoder)
    slot = ModelSlot(load)
    slot.install(load(*artifacts["v1"]))
    offer(slot, event("validated", "v2", artifacts))
    assert versions(slot) == ("v1", "v2")
    slot.drop_challenger("challenger scoring: boom")
    assert slot.challenger is None and versions(slot) == ("v1", None)
    assert not offer(slot, event("validated", "v2", artifacts))


def test_catching_up_loads_only_what_the_history_ends_with(encoder, artifacts):
    load = Loader(encoder)
    slot = ModelSlot(load)
    history = [event("promoted", "v1", artifacts), event("validated", "v2", artifacts),
               event("promoted", "v2", artifacts), event("validated", "v3", artifacts),
               event("rejected", "v3", artifacts), event("validated", "v4", artifacts)]
    slot.begin_catch_up()
    for i, raw in enumerate(history):
        assert not offer(slot, raw, i)
    assert load.loads == []
    asyncio.run(slot.finish_catch_up())
    assert versions(slot) == ("v2", "v4") and load.loads == ["v2", "v4"]
    assert offer(slot, event("promoted", "v4", artifacts))  # live again after catching up
    assert versions(slot) == ("v4", None) and load.loads == ["v2", "v4"]
