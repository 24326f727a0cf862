"""Scoring speed: ONNX Runtime (the serving path) vs torch eager, batch 1 and batch 256.

    .venv/bin/python bench/bench_scoring.py [--threads 2] -> bench/results/scoring.json

Uses a default-sized model (``TrainConfig`` defaults: K, d, layers, numeric inputs) with vocabularies
fitted on a simulator frame and real replayed inputs; times are medians over repeated runs on this
(shared) machine. ``--max-len`` overrides K to show what the sequence length costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _median_seconds(fn, repeats: int, rounds: int = 5) -> float:
    fn()
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        out.append((time.perf_counter() - t) / repeats)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-len", type=int, default=None)
    ap.add_argument("--spin", action="store_true", help="busy-waiting ORT threads (the old default)")
    ap.add_argument("--out", default="bench/results/scoring.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from models.configuration import TxmonConfig
    from models.dataset import fit_spec, replay
    from models.export import export_artifact
    from models.finetune import TrainConfig, model_inputs, numeric_scaling
    from models.modeling import TxmonModel
    from models.numeric import NUMERIC
    from models.scorer import Scorer
    from txmon.sim import SimConfig, simulate

    frame = simulate(SimConfig(accounts=300, days=20, seed=3)).frame
    spec = fit_spec(frame)
    tc = TrainConfig()
    max_len = args.max_len or tc.max_len
    data = replay(frame, spec, max_len)
    torch.manual_seed(0)
    model = TxmonModel(TxmonConfig(
        vocab_sizes=spec.vocab_sizes, max_len=max_len, hidden_size=tc.hidden_size,
        num_layers=tc.num_layers, num_heads=tc.num_heads, intermediate_size=tc.intermediate_size,
        numeric_size=len(NUMERIC) if tc.numeric else 0)).eval()
    rows = np.arange(len(frame))
    if tc.numeric:
        model.set_numeric_scaling(*numeric_scaling(data, rows))
    out = Path(tempfile.mkdtemp()) / "artifact"
    manifest = export_artifact(model, spec, out, "bench", sample_tokens=data.inputs(rows[:1024]),
                               quantize=True)
    results: dict = {"command": f"bench/bench_scoring.py --threads {args.threads}"
                                + (f" --max-len {args.max_len}" if args.max_len else "")
                                + (" --spin" if args.spin else ""),
                     "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                     "model": {"max_len": max_len, "hidden_size": tc.hidden_size,
                               "layers": tc.num_layers, "fields": len(spec.fields),
                               "numeric_inputs": model.config.numeric_size}}
    for quantized in (False, True):
        scorer = Scorer.load(out, manifest.artifact_sha256, intra_op_threads=args.threads,
                             quantized=quantized, spin=args.spin)
        key = "onnx_int8" if quantized else "onnx"
        results["providers"] = scorer.providers
        for b in (1, 256):
            batch = data.inputs(rows[-b:])
            sec = _median_seconds(lambda batch=batch, scorer=scorer: scorer.score(batch),
                                  500 if b == 1 else 20)
            results[f"{key}_batch{b}"] = {"ms_per_batch": sec * 1e3, "rows_per_s": b / sec}
    with torch.no_grad():
        for b in (1, 256):
            x = model_inputs(model, data, rows[-b:])
            sec = _median_seconds(lambda x=x: model(*x), 200 if b == 1 else 10)
            results[f"torch_batch{b}"] = {"ms_per_batch": sec * 1e3, "rows_per_s": b / sec}
    for b in (1, 256):
        results[f"onnx_speedup_vs_torch_batch{b}"] = (results[f"torch_batch{b}"]["ms_per_batch"]
                                                      / results[f"onnx_batch{b}"]["ms_per_batch"])
    results["load_average_at_end"] = os.getloadavg()
    results["targets"] = {"onnx_3x_faster_batch1": results["onnx_speedup_vs_torch_batch1"] >= 3,
                          "onnx_15k_rows_per_s_batch256": results["onnx_batch256"]["rows_per_s"] >= 15000}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
