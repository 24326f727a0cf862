"""Export -> artifact -> verified ONNX scorer: parity, tamper refusal, batch API, explanations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.artifact import ArtifactError
from models.configuration import TxmonConfig
from models.dataset import fit_spec, label_outcome, replay
from models.export import ExportError, export_artifact, load_artifact_model
from models.features import FeatureEncoder, new_account_state, update_account_state
from models.finetune import numeric_scaling
from models.modeling import TxmonModel
from models.numeric import NUMERIC
from models.scorer import Scorer
from models.toy import toy_frame
from txmon.frames import to_transaction

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, object, object]:
    frame = toy_frame(accounts=20, days=6, seed=4)
    spec = fit_spec(frame, min_count=1)
    torch.manual_seed(0)
    model = TxmonModel(TxmonConfig(vocab_sizes=spec.vocab_sizes, max_len=8, hidden_size=32,
                                   num_heads=2, intermediate_size=64,
                                   numeric_size=len(NUMERIC))).eval()
    data = replay(frame, spec, 8, label_outcome(frame["label"]), frame["label_time"])
    rows = np.arange(min(len(frame), 300))
    model.set_numeric_scaling(*numeric_scaling(data, np.arange(len(frame))))
    sample = data.inputs(rows)
    out = tmp_path_factory.mktemp("art") / "v1"
    m = export_artifact(model, spec, out, "v1", sample_tokens=sample, quantize=True,
                        eval_labels=(label_outcome(frame["label"]).to_numpy()[rows] > 0.5))
    return out, m.artifact_sha256, model, frame


def test_onnx_scores_match_torch_and_batch_api(artifact) -> None:
    out, sha, model, frame = artifact
    scorer = Scorer.load(out, expected_sha256=sha, intra_op_threads=1)
    assert scorer.version == "v1" and scorer.providers[-1] == "CPUExecutionProvider"
    state = new_account_state()
    rows = frame[frame["account_id"] == frame["account_id"].iloc[0]].to_dict("records")
    inputs = []
    for r in rows[:6]:
        tx = to_transaction(r)
        inputs.append(scorer.encoder.encode(state, tx, None))
        update_account_state(state, tx)
    batch = FeatureEncoder.collate(inputs)
    scores, emb = scorer.score(batch)
    assert batch["numeric"].shape == (6, len(NUMERIC))
    with torch.no_grad():
        t_scores, t_emb = model(torch.from_numpy(batch["tokens"]), torch.from_numpy(batch["numeric"]))
    assert scores.shape == (6,) and emb.shape == (6, 32)
    # The numeric inputs reach the score: another amount history gives other scores.
    other = dict(batch, numeric=batch["numeric"] * 3 + 1)
    assert np.abs(scorer.score(other)[0] - scores).max() > 1e-4
    np.testing.assert_allclose(scores, t_scores.numpy(), atol=1e-4)
    np.testing.assert_allclose(emb, t_emb.numpy(), atol=1e-4)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parity_max_abs_score"] <= 1e-4 and "int8_max_abs_score_change" in metrics
    with pytest.raises(ValueError):
        scorer.score({"tokens": batch["tokens"][:, :3], "numeric": batch["numeric"]})
    with pytest.raises(ValueError, match="numeric"):
        scorer.score({"tokens": batch["tokens"]})


def test_tokens_only_artifact_still_scores(tmp_path: Path) -> None:
    """Artifacts exported before numeric inputs existed (numeric_size 0) keep serving."""
    frame = toy_frame(accounts=8, days=4, seed=2)
    spec = fit_spec(frame, min_count=1)
    model = TxmonModel(TxmonConfig(vocab_sizes=spec.vocab_sizes, max_len=4, hidden_size=16,
                                   num_heads=2, intermediate_size=32)).eval()
    data = replay(frame, spec, 4)
    m = export_artifact(model, spec, tmp_path / "old", "old", sample_tokens=data.batch(np.arange(50)))
    scorer = Scorer.load(tmp_path / "old", expected_sha256=m.artifact_sha256, intra_op_threads=1)
    assert scorer.inputs == ["tokens"]
    scores, _ = scorer.score(data.inputs(np.arange(20)))  # extra numeric inputs are ignored
    with torch.no_grad():
        np.testing.assert_allclose(scores, model(torch.from_numpy(data.batch(np.arange(20))))[0].numpy(),
                                   atol=1e-4)


def test_refuses_tampered_or_unexpected_artifact(artifact, tmp_path: Path) -> None:
    out, sha, _, _ = artifact
    with pytest.raises(ArtifactError):
        Scorer.load(out, expected_sha256="0" * 64)
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in out.rglob("*"):
        if p.is_file():
            (copy / p.relative_to(out)).parent.mkdir(parents=True, exist_ok=True)
            (copy / p.relative_to(out)).write_bytes(p.read_bytes())
    graph = copy / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ArtifactError):
        Scorer.load(copy, expected_sha256=sha)


def test_hf_round_trip_and_no_identifiers_in_artifact(artifact) -> None:
    out, sha, model, frame = artifact
    loaded, spec = load_artifact_model(out, expected_sha256=sha)
    x = torch.from_numpy(np.full((2, 8, len(spec.fields)), 5, dtype=np.int64))
    with torch.no_grad():
        num = torch.ones((2, len(NUMERIC)))
        np.testing.assert_allclose(loaded(x, num)[0].numpy(), model(x, num)[0].numpy(), atol=1e-6)
    blob = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    for ident in set(frame["account_id"]) | set(frame["counterparty_id"]):
        assert ident.encode() not in blob or len(ident) < 4


def test_export_fails_when_onnx_disagrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import models.export as export

    model = TxmonModel(TxmonConfig(vocab_sizes=[8] * 20, max_len=4, hidden_size=16, num_heads=2)).eval()
    real = export.parity
    monkeypatch.setattr(export, "parity", lambda *a: real(*a) | {"parity_max_abs_score": 1e-3})
    from models.tokenise import FeatureSpec
    with pytest.raises(ExportError):
        export_artifact(model, FeatureSpec.fit([]), tmp_path / "bad", "v0")
    assert not (tmp_path / "bad").exists()


def test_explain_names_drivers(artifact) -> None:
    out, sha, _, frame = artifact
    scorer = Scorer.load(out, expected_sha256=sha)
    state = new_account_state()
    rows = frame.to_dict("records")[:10]
    for r in rows[:-1]:
        update_account_state(state, to_transaction(r))
    reasons = scorer.explain(scorer.encoder.encode(state, to_transaction(rows[-1]), None), top=3)
    assert len(reasons) <= 3
    assert all(r.contribution > 0 and r.description for r in reasons)
    assert [r.contribution for r in reasons] == sorted((r.contribution for r in reasons), reverse=True)
