"""Probe: the account-state changelog, deltas vs whole entries: records, bytes and restore CPU.

    .venv/bin/python bench/probe_restore.py [--transactions 40000] [--accounts 615]

No Kafka: ``streams.scoring.ScoringCore`` (one-layer model, drift off) scores simulated
transactions in batches of 256, its changelog outputs are compacted as the broker would (latest
value per key), and the table is restored from them; the same accounts written as whole entries
(the format before session 4: zlib-compressed JSON per account) are restored for comparison.
Writes ``bench/results/restore.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transactions", type=int, default=40_000)
    ap.add_argument("--accounts", type=int, default=615)
    args = ap.parse_args()

    import models.features as features
    from bench._common import command_line, machine, write_result
    from bench._reliability import simulated_payloads, tiny_artifact
    from streams.config import WorkerConfig
    from streams.hotswap import load_scorer
    from streams.policy import AlertPolicy
    from streams.scoring import Record, ScoringCore, Topics
    from streams.tables import AccountTable, CounterpartyRisk
    from txmon.settings import Settings

    before = machine()
    n = args.transactions
    frame, items = simulated_payloads(n, accounts=args.accounts)
    with tempfile.TemporaryDirectory() as d:
        model = load_scorer(tiny_artifact(frame, Path(d) / "a"), None, Settings(home=Path(d)), 1)
        cfg = WorkerConfig(instance_id="probe", drift=False)
        topics = Topics.from_settings(Settings(home=Path(d)), cfg.group_id)
        accounts = AccountTable(features.new_account_state, AlertPolicy.new_state,
                                rings=(features.HISTORY_MAX, cfg.label_index_size))
        core = ScoringCore(topics, cfg, features, accounts,
                           CounterpartyRisk(features.new_counterparty_risk,
                                            features.update_counterparty_risk),
                           AlertPolicy(cfg.policy, 6))
        log: dict[tuple[int, bytes], bytes] = {}
        written = 0
        for i in range(0, n, 256):
            res = core.process([Record(topics.transactions, hash(p.key) % 6, i + j, p.key, p.value, 0)
                                for j, p in enumerate(items[i:i + 256])], model)
            for o in res.outputs:
                if o.topic == topics.changelog:
                    written += 1
                    log.pop((o.partition, o.key), None)
                    log[(o.partition, o.key)] = o.value
    deltas = [(k, v) for (_, k), v in log.items()]
    whole = [(a.encode(), zlib.compress(json.dumps(
        {"s": e.state, "i": [item[:4] for item in e.index]}, separators=(",", ":")).encode(), 1))
        for a, e in accounts._entries.items()]

    def restore(records: list[tuple[bytes, bytes]]) -> float:
        table = AccountTable(features.new_account_state, AlertPolicy.new_state)
        t0 = time.process_time()
        table.restore(0, records)
        return time.process_time() - t0

    m = len(accounts)
    out = {"command": command_line(), "what": __doc__.split("\n\n")[0], "transactions": n,
           "accounts": m, "changelog_records_written": written,
           "deltas": {"records_after_compaction": len(deltas),
                      "bytes": sum(len(v) for _, v in deltas),
                      "restore_cpu_us_per_account": round(restore(deltas) / m * 1e6)},
           "whole_entries": {"records_after_compaction": len(whole),
                             "bytes": sum(len(v) for _, v in whole),
                             "restore_cpu_us_per_account": round(restore(whole) / m * 1e6)},
           "machine_before": before, "machine_after": machine()}
    print(json.dumps(out, indent=1))
    print(write_result("restore", out))


if __name__ == "__main__":
    main()
