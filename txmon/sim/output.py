"""Write a simulation to Parquet or CSV, with its truth (config, drift starts, incidents) beside it.

``data.parquet`` gets ``data.truth.json``; the same seed and config give byte-identical files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from txmon.sim.engine import SimResult


def truth_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name.split(".")[0] + ".truth.json")


def truth_document(result: SimResult) -> dict[str, Any]:
    return {
        "config": result.config.model_dump(mode="json"),
        "drift": [{**d, "start": d["start"].isoformat(), "end": d["end"] and d["end"].isoformat()}
                  for d in result.drift_truth],
        "summary": result.summary(),
    }


def write(result: SimResult, path: str | Path) -> Path:
    """Write the frame (format from the suffix: .parquet or .csv) and its truth file; returns the
    truth file's path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    frame = result.frame
    if p.suffix == ".parquet":
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, p, compression="zstd", write_statistics=True)
    elif p.suffix == ".csv":
        frame.to_csv(p, index=False, float_format="%.2f", date_format="%Y-%m-%dT%H:%M:%SZ")
    else:
        raise ValueError(f"{p}: write .parquet or .csv")
    tp = truth_path(p)
    tp.write_text(json.dumps(truth_document(result), indent=2, sort_keys=True) + "\n")
    return tp
