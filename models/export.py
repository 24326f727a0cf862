"""Export a trained model as an artifact directory, the unit that is signed, registered and served.

Layout (every file listed with its sha256 in ``manifest.json`` by :func:`models.artifact.write_manifest`)::

    model.onnx          one graph: tokens (batch, max_len, fields) int64 [, numeric (batch, n) float32]
                        -> score, embedding
    model.int8.onnx     optional dynamic int8 quantisation of the same graph
    hf/                 the transformers model (save_pretrained): the base for the next fine-tune
    feature_spec.json   vocabularies and bins (no identifiers)
    metrics.json        training metrics, ONNX-vs-torch parity, quantisation accuracy change
    drift_reference/    optional: the drift monitor's reference from the validation window, with
                        its simulated thresholds (streams.drift.shipped)

Export fails (:class:`ExportError`, nothing written) if ONNX and torch disagree by more than
:data:`PARITY_TOLERANCE` on any score or embedding value.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.artifact import Manifest, Signer, verify, write_manifest
from models.metrics import auc_roc, average_precision
from models.modeling import TxmonModel
from models.tokenise import RESERVED, FeatureSpec

PARITY_TOLERANCE = 1e-4
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
SPEC_FILE = "feature_spec.json"
METRICS_FILE = "metrics.json"
HF_DIR = "hf"
OPSET = 17


class ExportError(RuntimeError):
    """The exported graph does not reproduce the torch model."""


def input_names(model: TxmonModel) -> list[str]:
    return ["tokens", "numeric"] if model.config.numeric_size else ["tokens"]


def to_onnx(model: TxmonModel, path: Path) -> None:
    """Write the scoring graph with a dynamic batch axis."""
    model = model.eval()
    example = [torch.full((2, model.config.max_len, len(model.config.vocab_sizes)), RESERVED,
                          dtype=torch.int64)]
    if model.config.numeric_size:
        example.append(torch.zeros((2, model.config.numeric_size), dtype=torch.float32))
    names = input_names(model)
    with torch.no_grad():
        torch.onnx.export(model, tuple(example), str(path), input_names=names,
                          output_names=["score", "embedding"],
                          dynamic_axes={**{n: {0: "batch"} for n in names}, "score": {0: "batch"},
                                        "embedding": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def sample_feeds(model: TxmonModel, sample: np.ndarray | dict[str, np.ndarray] | None,
                 n: int = 256) -> dict[str, np.ndarray]:
    """The graph's inputs for a parity check: ``sample`` (a collated batch, or tokens alone) or
    random ones; numeric inputs missing from ``sample`` are drawn around the model's scaling."""
    if isinstance(sample, dict):
        feeds = dict(sample)
    elif sample is not None and len(sample):
        feeds = {"tokens": sample}
    else:
        feeds = {"tokens": _random_tokens(model, n)}
    feeds["tokens"] = np.ascontiguousarray(feeds["tokens"], dtype=np.int64)
    c = model.config
    if c.numeric_size and "numeric" not in feeds:
        rng = np.random.default_rng(1)
        z = rng.standard_normal((len(feeds["tokens"]), c.numeric_size))
        feeds["numeric"] = np.asarray(c.numeric_mean) + z * np.asarray(c.numeric_std)
    if c.numeric_size:
        feeds["numeric"] = np.ascontiguousarray(feeds["numeric"], dtype=np.float32)
    else:
        feeds.pop("numeric", None)
    return feeds


def _torch_run(model: TxmonModel, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        score, emb = model(*(torch.from_numpy(feeds[n]) for n in input_names(model)))
    return score.numpy(), emb.numpy()


def _random_tokens(model: TxmonModel, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sizes = np.asarray(model.config.vocab_sizes)
    toks = (rng.random((n, model.config.max_len, len(sizes))) * (sizes - RESERVED)).astype(np.int64)
    toks += RESERVED
    pads = rng.integers(0, model.config.max_len, n)
    for i, p in enumerate(pads):
        toks[i, :p] = 0
    return toks


def parity(model: TxmonModel, onnx_path: Path, feeds: dict[str, np.ndarray]) -> dict[str, float]:
    """Max absolute ONNX-vs-torch difference of score and embedding on ``feeds``."""
    sess = _session(onnx_path)
    score, emb = _torch_run(model, feeds)
    o_score, o_emb = sess.run(None, feeds)
    return {"parity_max_abs_score": float(np.abs(o_score - score).max()),
            "parity_max_abs_embedding": float(np.abs(o_emb - emb).max()),
            "parity_rows": len(feeds["tokens"])}


def quantise(src: Path, dst: Path, feeds: dict[str, np.ndarray],
             labels: np.ndarray | None) -> dict[str, float]:
    """Dynamic int8 quantisation of the MatMul weights, with the accuracy change it causes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    fp32 = _session(src).run(None, feeds)[0]
    int8 = _session(dst).run(None, feeds)[0]
    out = {"int8_max_abs_score_change": float(np.abs(fp32 - int8).max())}
    if labels is not None and 0 < labels.sum() < len(labels):
        out |= {"fp32_average_precision": average_precision(labels, fp32),
                "int8_average_precision": average_precision(labels, int8),
                "fp32_auc_roc": auc_roc(labels, fp32), "int8_auc_roc": auc_roc(labels, int8)}
    return out


def export_artifact(model: TxmonModel, spec: FeatureSpec, out_dir: Path, version: str,
                    metrics: dict[str, Any] | None = None,
                    sample_tokens: np.ndarray | dict[str, np.ndarray] | None = None,
                    eval_labels: np.ndarray | None = None, signer: Signer | None = None,
                    quantize: bool = False, training: dict[str, Any] | None = None,
                    drift_reference: Any = None) -> Manifest:
    """Write the artifact directory ``out_dir`` (must not exist yet) and its manifest.

    ``sample_tokens``: real inputs for the parity check, a collated batch (``Replayed.inputs``) or
    tokens alone (numeric inputs are then drawn at random); None = random inputs.
    ``drift_reference``: a ``streams.drift.DriftReference`` to ship (covered by the manifest)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir} exists and is not empty; artifacts are immutable")
    model = model.eval()
    feeds = sample_feeds(model, sample_tokens)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        to_onnx(model, work / ONNX_FILE)
        report = parity(model, work / ONNX_FILE, feeds)
        worst = max(report["parity_max_abs_score"], report["parity_max_abs_embedding"])
        if not worst <= PARITY_TOLERANCE:
            raise ExportError(f"ONNX differs from torch by {worst:.2e} (> {PARITY_TOLERANCE:g})")
        if quantize:
            n = len(feeds["tokens"])
            labels = eval_labels if eval_labels is not None and len(eval_labels) == n else None
            report |= quantise(work / ONNX_FILE, work / INT8_FILE, feeds, labels)
        model.save_pretrained(work / HF_DIR)
        (work / SPEC_FILE).write_text(spec.to_json())
        full = {**(metrics or {}), **report}
        (work / METRICS_FILE).write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
        if drift_reference is not None:
            from streams.drift import shipped

            shipped.save(drift_reference, work)
        meta = {"model_version": version, "max_len": model.config.max_len,
                "fields": list(spec.fields), "onnx": ONNX_FILE, "inputs": input_names(model),
                "numeric_mean": list(model.config.numeric_mean), **(training or {}),
                "parity": report}
        manifest = write_manifest(work, version=version, signer=signer, metadata=meta)
        if out_dir.exists():
            out_dir.rmdir()
        work.rename(out_dir)
        return manifest
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def load_artifact_model(artifact_dir: Path, expected_sha256: str | None = None,
                        verifier: Signer | None = None) -> tuple[TxmonModel, FeatureSpec]:
    """The torch model and feature spec of a verified artifact (the base of a fine-tune)."""
    artifact_dir = Path(artifact_dir)
    verify(artifact_dir, expected_sha256=expected_sha256, verifier=verifier)
    model = TxmonModel.from_pretrained(artifact_dir / HF_DIR).eval()
    spec = FeatureSpec.from_json((artifact_dir / SPEC_FILE).read_text())
    return model, spec
