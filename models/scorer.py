"""The ONNX Runtime scorer the streaming worker runs: verified artifacts only, batch API.

Provider preference is TensorRT > CUDA > CPU among what this onnxruntime build offers; what the session
*actually* uses is read back from ``session.get_providers()`` into :attr:`Scorer.providers`
(``get_available_providers()`` lists CUDA even on a machine without a GPU).

Usage (the streaming worker)::

    scorer = Scorer.load("artifacts/v1", expected_sha256=sha)
    inputs = [scorer.encoder.encode(state, tx, risk) for state, tx, risk in batch]
    scores, embeddings = scorer.score(scorer.encoder.collate(inputs))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import Signer, verify
from models.export import INT8_FILE, ONNX_FILE, SPEC_FILE
from models.features import FeatureEncoder, ModelInput
from models.tokenise import FeatureSpec
from txmon.contracts import Reason

PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(requested: list[str] | None = None) -> list[str]:
    """``requested`` (in order) or the preferred order, limited to what this build has."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen = [p for p in (requested or PREFERRED) if p in available]
    return chosen or ["CPUExecutionProvider"]


def session_options(intra_op_threads: int | None = None, spin: bool = False) -> Any:
    """Full graph optimisation; intra-op threads that sleep rather than spin when idle, because the
    worker shares its cores with Kafka clients and drift detection (measured under load on 2 cores:
    2 spinning threads scored batch 256 slower than 1 thread, non-spinning ones 1.5-3x faster)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads:
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return opts


class Scorer:
    """Scores collated batches with one artifact's ONNX graph."""

    def __init__(self, session: Any, encoder: FeatureEncoder, version: str, sha256: str,
                 artifact_dir: Path, numeric_baseline: list[float] | None = None):
        self.session = session
        self.inputs = [i.name for i in session.get_inputs()]
        # Training means of the numeric inputs: what an occluded aggregate is replaced by (explain).
        self.numeric_baseline = np.asarray(numeric_baseline or [], dtype=np.float32)
        self.encoder = encoder
        self.version = version
        self.sha256 = sha256
        self.artifact_dir = artifact_dir
        self.providers: list[str] = list(session.get_providers())

    @classmethod
    def load(cls, artifact_dir: str | Path, expected_sha256: str | None = None,
             verifier: Signer | None = None, providers: list[str] | None = None,
             intra_op_threads: int | None = None, quantized: bool = False,
             spin: bool = False) -> Scorer:
        """Verify the artifact (raises :class:`models.artifact.ArtifactError`) and open a session.

        The graph is read from the verified bytes, so a file swapped after verification is not run.
        ``spin``: let idle intra-op threads busy-wait (only worth it on cores nothing else uses).
        """
        import onnxruntime as ort

        artifact_dir = Path(artifact_dir)
        manifest = verify(artifact_dir, expected_sha256=expected_sha256, verifier=verifier)
        name = INT8_FILE if quantized else manifest.metadata.get("onnx", ONNX_FILE)
        graph = _verified_bytes(artifact_dir, name, manifest.files)
        spec = FeatureSpec.from_json(_verified_bytes(artifact_dir, SPEC_FILE, manifest.files).decode())
        session = ort.InferenceSession(graph, session_options(intra_op_threads, spin),
                                       providers=choose_providers(providers))
        max_len = int(session.get_inputs()[0].shape[1])
        return cls(session, FeatureEncoder(spec, max_len), manifest.version, manifest.artifact_sha256,
                   artifact_dir, manifest.metadata.get("numeric_mean"))

    def score(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(scores (n,), embeddings (n, d)) for a batch from :meth:`FeatureEncoder.collate`."""
        tokens = np.ascontiguousarray(batch["tokens"], dtype=np.int64)
        if tokens.ndim != 3 or tokens.shape[1:] != (self.encoder.max_len, len(self.encoder.spec.fields)):
            raise ValueError(f"tokens of shape {tokens.shape} do not fit this model "
                             f"(n, {self.encoder.max_len}, {len(self.encoder.spec.fields)})")
        feeds = {"tokens": tokens}
        if "numeric" in self.inputs:
            if batch.get("numeric") is None:
                raise ValueError("this model takes numeric inputs: score FeatureEncoder.collate or "
                                 "Replayed.inputs output, not tokens alone")
            numeric = np.ascontiguousarray(batch["numeric"], dtype=np.float32)
            width = self.session.get_inputs()[1].shape[1]
            if numeric.shape != (len(tokens), width):
                raise ValueError(f"numeric of shape {numeric.shape} does not fit ({len(tokens)}, {width})")
            feeds["numeric"] = numeric
        if len(tokens) == 0:
            return np.empty(0, np.float32), np.empty((0, self.embedding_size), np.float32)
        score, emb = self.session.run(None, feeds)
        return score, emb

    @property
    def embedding_size(self) -> int:
        return int(self.session.get_outputs()[1].shape[1])

    def explain(self, model_input: ModelInput, top: int = 5) -> list[Reason]:
        """Occlusion reasons for one (alerted) transaction; see :mod:`models.explain`."""
        from models.explain import explain

        return explain(self, model_input, top=top)

    def metrics(self) -> dict[str, Any]:
        path = self.artifact_dir / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else {}


def _verified_bytes(directory: Path, name: str, files: dict[str, str]) -> bytes:
    import hashlib

    from models.artifact import ArtifactError

    if name not in files:
        raise ArtifactError(f"{name}: not in the manifest")
    data = (directory / name).read_bytes()
    if hashlib.sha256(data).hexdigest() != files[name]:
        raise ArtifactError(f"{name}: sha256 does not match the manifest")
    return data
