"""Probe: does faust-streaming's ``processing_guarantee="exactly_once"`` give one output per input
when its worker is killed with SIGKILL mid-stream?

    .venv/bin/python bench/faust_eos_probe.py [--messages 20000] [--kills 3] [--partitions 6]

For each guarantee (``exactly_once``, then the default ``at_least_once``) on a private Kafka 4.1
broker: pre-load ``--messages`` records (JSON ``{"id": i, "k": key}``, keyed by ``key``) into a source
topic, run a minimal Faust app as a real subprocess — one agent, ``stream.take(batch, within=...)``,
one output per input sent to an output topic with the input's key and the same partition count —
SIGKILL it ``--kills`` times mid-stream and restart it, let the last one drain the topic, stop it
with SIGTERM, then read the output topic ``read_committed`` (and ``read_uncommitted`` for contrast)
and count lost and duplicated ids. Writes ``bench/results/faust_eos.json``.

Three variants: ``exactly_once`` as one would write it (the app only produces to its output topic);
``exactly_once_output_consumed``, the same app plus a no-op agent on the output topic, because Faust
puts a send into a partition's transaction only when its consumer has metadata for the destination
topic; and ``at_least_once`` (the default) as the baseline.

The Faust app is configured to give exactly-once its best chance: same partition count and key on
both topics (so an output's transaction is the one of the input partition it came from), one
transactional producer per input partition (Faust's own scheme), a short commit interval, memory
store, no tables.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    command_line,
    create_topics,
    end_offsets,
    group_committed,
    guard_children,
    kill,
    machine,
    private_broker,
    spawn,
    write_result,
)

# Variant -> (processing_guarantee, the app also consumes its output topic).
VARIANTS = {
    "exactly_once": ("exactly_once", False),
    # Faust routes a send into a partition's transaction only if its consumer has metadata for the
    # output topic (``Consumer.key_partition``); an app that also consumes the topic (an agent
    # pipeline inside one app) has it. This is exactly_once's best case.
    "exactly_once_output_consumed": ("exactly_once", True),
    "at_least_once": ("at_least_once", False),
}


# -- the Faust app (runs in the child process) -----------------------------------------------------

def run_faust_worker() -> None:
    """The app under test; configured from ``PROBE_*`` environment variables by the parent."""
    import faust

    env = os.environ
    batch, within = int(env["PROBE_BATCH"]), float(env["PROBE_WITHIN"])
    app = faust.App(
        env["PROBE_APP_ID"], broker=f"kafka://{env['PROBE_BOOTSTRAP']}",
        processing_guarantee=env["PROBE_GUARANTEE"], store="memory://",
        datadir=env["PROBE_DATADIR"], web_enabled=False,
        topic_partitions=int(env["PROBE_PARTITIONS"]),
        broker_commit_every=batch, broker_commit_interval=float(env["PROBE_COMMIT_INTERVAL"]),
        # A killed member's partitions move after the session timeout (Faust's default: 60 s).
        broker_session_timeout=10.0, broker_heartbeat_interval=3.0,
        consumer_auto_offset_reset="earliest", stream_wait_empty=True)
    source = app.topic(env["PROBE_SOURCE"], key_serializer="raw", value_serializer="json",
                       partitions=int(env["PROBE_PARTITIONS"]))
    output = app.topic(env["PROBE_OUTPUT"], key_serializer="raw", value_serializer="json",
                       partitions=int(env["PROBE_PARTITIONS"]))

    @app.agent(source)
    async def relay(stream: Any) -> None:
        async for values in stream.take(batch, within=within):
            for v in values:
                await output.send(key=v["k"].encode(), value={"id": v["id"], "pid": os.getpid()})

    if env.get("PROBE_CONSUME_OUTPUT") == "1":
        @app.agent(output)
        async def sink(stream: Any) -> None:
            async for _ in stream:
                pass

    sys.argv = [sys.argv[0], "worker", "--loglevel", env.get("PROBE_LOGLEVEL", "warning")]
    app.main()


# -- the experiment (parent) -----------------------------------------------------------------------

def produce(bootstrap: str, topic: str, n: int, keys: int) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=5)
    for i in range(n):
        k = f"acct-{i % keys}"
        p.send(topic, key=k.encode(), value=json.dumps({"id": i, "k": k}).encode())
    p.flush()
    p.close()


@dataclass(frozen=True)
class Output:
    id: int
    pid: int  # the Faust worker process that sent it
    partition: int
    offset: int


def read_outputs(bootstrap: str, topic: str, committed: bool, quiet: float = 3.0) -> list[Output]:
    """Every output on ``topic`` from the beginning, read ``read_committed`` or not."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False,
                      auto_offset_reset="earliest",
                      isolation_level="read_committed" if committed else "read_uncommitted")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = c.end_offsets(tps)
        out: list[Output] = []
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            for recs in c.poll(timeout_ms=500, max_records=10_000).values():
                for r in recs:
                    v = json.loads(r.value)
                    out.append(Output(v["id"], v["pid"], r.partition, r.offset))
                last = time.monotonic()
            if all(c.position(tp) >= ends[tp] for tp in tps):
                break
        return out
    finally:
        c.close()


def count(outputs: list[Output], n: int) -> dict[str, int]:
    ids = [o.id for o in outputs]
    distinct = set(ids)
    return {"records": len(ids), "distinct": len(distinct), "lost": n - len(distinct & set(range(n))),
            "duplicated": len(ids) - len(distinct)}


def duplicates(outputs: list[Output], pids: list[int], examples: int = 5) -> list[dict[str, Any]]:
    """A few duplicated ids with where each copy sits and which worker run (0 = first) wrote it."""
    by_id: dict[int, list[Output]] = {}
    for o in outputs:
        by_id.setdefault(o.id, []).append(o)
    run = {pid: i for i, pid in enumerate(pids)}
    return [{"id": i, "copies": [{"partition": o.partition, "offset": o.offset,
                                  "worker_run": run.get(o.pid)} for o in copies]}
            for i, copies in sorted(by_id.items()) if len(copies) > 1][:examples]


def log_findings(log: Path, examples: int = 5) -> dict[str, Any]:
    """How often the Faust log mentions what matters for the guarantee, with the first error lines."""
    text = log.read_text(errors="replace") if log.exists() else ""
    needles = {"errors": "[ERROR]", "fenced": "fenced", "not_committed": "Has not committed",
               "transaction_exceptions": "Exception in", "crashes": "[CRITICAL]"}
    found: dict[str, Any] = {k: text.count(v) for k, v in needles.items()}
    found["first_errors"] = [line[:300] for line in text.splitlines()
                             if "[ERROR]" in line or "[CRITICAL]" in line][:examples]
    return found


def run_one(bootstrap: str, work: Path, variant: str, args: argparse.Namespace,
            prefix: str = "") -> dict[str, Any]:
    """One variant end to end; topics and the Faust app id are ``{prefix}probe-{variant}``."""
    from rich.console import Console

    console = Console(stderr=True)
    guarantee, consume_output = VARIANTS[variant]
    tag = f"{prefix}probe-{variant.replace('_', '-')}"
    source, output = f"{tag}-in", f"{tag}-out"
    create_topics(bootstrap, [source, output], args.partitions)
    produce(bootstrap, source, args.messages, args.keys)
    log = work / f"{tag}.log"
    env = os.environ | {
        "PROBE_BOOTSTRAP": bootstrap, "PROBE_APP_ID": tag, "PROBE_GUARANTEE": guarantee,
        "PROBE_SOURCE": source, "PROBE_OUTPUT": output, "PROBE_PARTITIONS": str(args.partitions),
        "PROBE_BATCH": str(args.batch), "PROBE_WITHIN": str(args.within),
        "PROBE_COMMIT_INTERVAL": str(args.commit_interval), "PROBE_DATADIR": str(work / tag),
        "PROBE_LOGLEVEL": args.loglevel, "PYTHONUNBUFFERED": "1",
        "PROBE_CONSUME_OUTPUT": "1" if consume_output else "0"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "_worker"]
    t0 = time.monotonic()
    kills: list[dict[str, Any]] = []
    pids: list[int] = []
    n = args.messages
    deadline = t0 + args.timeout
    for k in range(args.kills):
        # Kill points spread over the middle of the stream: after 1/(K+1), 2/(K+1), ... of it.
        target = n * (k + 1) // (args.kills + 1)
        proc = spawn(cmd, env, log)
        pids.append(proc.pid)
        while (written := end_offsets(bootstrap, output, committed_only=False)) < target:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"faust worker exited ({proc.returncode}): ...{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no progress to {target} outputs within {args.timeout} s; see {log}")
            time.sleep(0.05)
        kill(proc, signal.SIGKILL)
        kills.append({"after_outputs_written": written, "at_s": round(time.monotonic() - t0, 1),
                      "input_offsets_committed": group_committed(bootstrap, tag, source)})
        console.log(f"{variant}: SIGKILL {k + 1}/{args.kills} after {written} outputs written")
    proc = spawn(cmd, env, log)
    pids.append(proc.pid)
    # The last worker runs until the group has committed every input offset (and a little longer,
    # so a timer-driven commit has its chance), or until the timeout.
    drained_at = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if group_committed(bootstrap, tag, source) >= n:
            drained_at = drained_at or time.monotonic()
            if time.monotonic() - drained_at > 2 * args.commit_interval + 1:
                break
        time.sleep(0.5)
    drain_seconds = round((drained_at or time.monotonic()) - t0, 1)
    exit_code = kill(proc, signal.SIGTERM, wait=30)
    committed = read_outputs(bootstrap, output, committed=True)
    uncommitted = read_outputs(bootstrap, output, committed=False)
    result = {
        "processing_guarantee": guarantee, "app_consumes_output": consume_output,
        "in": n, "out_committed": len(committed), **count(committed, n),
        "read_uncommitted": count(uncommitted, n),
        # End offsets count transaction markers too: more than the records means transactions ran.
        "output_log_end_offset": (log_end := end_offsets(bootstrap, output, committed_only=False)),
        "transaction_markers": log_end - len(uncommitted),
        "input_offsets_committed": group_committed(bootstrap, tag, source),
        "drained": drained_at is not None, "runtime_seconds": drain_seconds,
        "duplicate_examples": duplicates(committed, pids),
        "kills": kills, "final_exit_code": exit_code, "log": log_findings(log)}
    console.log(f"{variant}: {result['out_committed']} committed outputs for {n} inputs, "
                f"lost {result['lost']}, duplicated {result['duplicated']}")
    return result


def verdict(results: dict[str, dict[str, Any]]) -> str:
    lines = []
    for g, r in results.items():
        if "error" in r:
            lines.append(f"{g}: the run failed ({r['error']}).")
            continue
        ok = r["lost"] == 0 and r["duplicated"] == 0
        lines.append(f"{g}: {'exactly one' if ok else 'NOT exactly one'} committed output per input "
                     f"after {len(r['kills'])} SIGKILLs ({r['lost']} lost, {r['duplicated']} duplicated "
                     f"of {r['in']}).")
    return " ".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--keys", type=int, default=600, help="distinct keys (accounts)")
    ap.add_argument("--batch", type=int, default=100, help="stream.take batch size")
    ap.add_argument("--within", type=float, default=0.5, help="stream.take within (seconds)")
    ap.add_argument("--commit-interval", type=float, default=1.0, help="broker_commit_interval (s)")
    ap.add_argument("--timeout", type=float, default=300.0, help="per guarantee (seconds)")
    ap.add_argument("--variant", choices=list(VARIANTS), action="append",
                    help="run only this one (repeatable); default all")
    ap.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"],
                    help="Faust's log level (fenced producers are logged at info)")
    ap.add_argument("--out", default="faust_eos")
    args = ap.parse_args()

    import faust

    guard_children()
    before = machine()
    results: dict[str, dict[str, Any]] = {}
    with private_broker() as (bootstrap, work):
        for g in args.variant or VARIANTS:
            try:
                results[g] = run_one(bootstrap, work, g, args)
            except RuntimeError as exc:
                results[g] = {"error": str(exc)}
    report = {
        "command": command_line(), "faust_version": faust.__version__,
        "kafka": "Apache Kafka 4.1 (KRaft, one node, private temp dir)",
        "parameters": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "results": results, "verdict": verdict(results),
        "notes": [
            "out_committed/lost/duplicated: the output topic read with isolation_level=read_committed "
            "from the beginning, after the last worker drained the input and stopped with SIGTERM.",
            "read_uncommitted: the same topic read without isolation; records of aborted transactions "
            "show up there only.",
            "Kill points: SIGKILL when the output topic's end offsets (uncommitted included) pass "
            "k/(kills+1) of the input; each worker restarts at once with the same app id.",
            "log: counts of matching lines in the Faust workers' combined log (loglevel above).",
        ],
        "machine_before": before, "machine_after": machine()}
    path = write_result(args.out, report)
    print(json.dumps({"verdict": report["verdict"], "results": path.as_posix()}, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["_worker"]:
        run_faust_worker()
    else:
        main()
