"""``txmon demo``: the whole loop on one machine, from an empty disk to a promoted model.

broker -> simulated bank -> first champion (pre-train + fine-tune) -> worker + retrain controller
-> warm-up and live traffic with a scheduled drift -> drift detected -> governed fine-tuning job ->
gates -> shadow -> promotion -> hot swap -> precision recovers -> HTML report.

Everything it starts (broker, worker, controller) is stopped when it ends, on error and on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from txmon.demo.collector import Collector, Truth, buckets, precision_at_budget
from txmon.demo.report import DemoRecord, Stage, render
from txmon.demo.sameevents import same_events
from txmon.demo.scenario import DemoPlan, simulate_world, split
from txmon.demo.supervisor import Supervisor
from txmon.settings import BrokerSettings, KafkaSettings, Settings, TopicSettings

STAGES = ("broker", "simulate", "champion", "services", "warm-up", "live traffic", "drift detected",
          "retrain job", "gates passed", "shadow", "promoted", "hot swap", "recovery", "report")


class DemoFailed(RuntimeError):
    def __init__(self, stage: str, message: str):
        self.stage = stage
        super().__init__(f"{stage}: {message}")


@dataclass
class Demo:
    plan: DemoPlan
    home: Path
    report_dir: Path
    port: int
    console: Console

    def __post_init__(self) -> None:
        self.record = DemoRecord(stages=[Stage(n) for n in STAGES])
        self.settings = Settings(
            home=self.home,
            kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{self.port}"),
            broker=BrokerSettings(port=self.port),
            # Simulated event times lie weeks back: keep them all (retention counts from them).
            topics=TopicSettings(retention_ms=365 * 24 * 3600 * 1000),
        )
        # Fresh keys per run, only in this process's environment and its children's.
        self.env = {**os.environ, "TXMON_HOME": str(self.home),
                    "TXMON_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{self.port}",
                    "TXMON_BROKER__PORT": str(self.port),
                    "TXMON_SIGNING_KEY": secrets.token_hex(32),
                    "TXMON_PSEUDONYM_KEY": secrets.token_hex(32),
                    "TXMON_TOPICS__RETENTION_MS": str(365 * 24 * 3600 * 1000),
                    "OMP_NUM_THREADS": "1"}
        self.t0 = time.monotonic()
        self.collector: Collector | None = None
        self.stream_thread: threading.Thread | None = None
        self.stream_error: BaseException | None = None
        self.release = threading.Event()
        # Traffic pauses while a retrain job trains (job_started, no candidate_out yet): nothing can
        # be shadowed then, and traffic spent meanwhile would be missing from the shadow period.
        self.job_started = threading.Event()
        self.candidate_out = threading.Event()
        self.stopping = threading.Event()
        self.stream_done = threading.Event()
        self.sent = 0

    # -- bookkeeping ---------------------------------------------------------------------------
    def stage(self, name: str) -> Stage:
        return next(s for s in self.record.stages if s.name == name)

    @contextmanager
    def step(self, name: str, detail: str = ""):
        st = self.stage(name)
        st.status, st.detail = "running", detail
        start = time.monotonic()
        try:
            yield st
        except BaseException as exc:
            st.status = "failed"
            st.detail = str(exc)[:300]
            raise
        finally:
            st.seconds = time.monotonic() - start
        st.status = "done"

    def remaining(self) -> float:
        return self.plan.timeout_s - (time.monotonic() - self.t0)

    def wait_for(self, name: str, ready: Callable[[], Any], supervisor: Supervisor,
                 describe: Callable[[Any], str] = str) -> Any:
        with self.step(name) as st:
            while True:
                value = ready()
                if value:
                    st.detail = describe(value)
                    return value
                self.observe_job()
                supervisor.check()
                if self.stream_error is not None:
                    raise DemoFailed(name, f"traffic stopped: {self.stream_error}")
                if self.remaining() <= 0:
                    raise DemoFailed(name, f"not reached within the demo's {self.plan.timeout_s:.0f} s")
                time.sleep(0.5)

    def observe_job(self) -> None:
        """Note when the retrain job began and when it is over: its candidate came out, or the job
        ended without one (a rejected snapshot, a crash). It begins at the controller's trigger,
        not at the job's own "started" entry: the job process takes 15-25 s to start, and traffic
        spent meanwhile (up to 3,600 transactions) is what a late detection leaves the shadow
        period without."""
        if self.candidate_out.is_set():
            return
        audit = self.home / "audit" / "audit.jsonl"
        entries = [e for e in (json.loads(line) for line in
                               (audit.read_text().splitlines() if audit.exists() else [])
                               if line.strip()) if isinstance(e.get("details"), dict)]
        begun = [i for i, e in enumerate(entries) if e.get("kind") == "trigger"
                 or (e.get("kind") == "job" and e["details"].get("outcome") == "started")]
        if begun:
            self.job_started.set()
            ended = any(e.get("kind") == "job" and e["details"].get("outcome") != "started"
                        for e in entries[begun[0] + 1:])
            out = self.collector is not None and any(
                m.event in ("validated", "rejected") and m.version != "v1"
                for m in self.collector.snapshot().models)
            if ended or out:
                self.candidate_out.set()

    def holding(self) -> bool:
        return (self.job_started.is_set() and not self.candidate_out.is_set()
                and not self.release.is_set())

    def env_for(self, **extra: str) -> dict[str, str]:
        return {**self.env, **extra}

    # -- display -----------------------------------------------------------------------------------
    def view(self) -> Group:
        table = Table(title=f"txmon demo — {time.monotonic() - self.t0:5.0f} s", expand=False)
        for col in ("stage", "status", "s", "detail"):
            table.add_column(col)
        colours = {"done": "green", "running": "yellow", "failed": "red", "pending": "dim"}
        for s in self.record.stages:
            c = colours.get(s.status, "white")
            table.add_row(s.name, f"[{c}]{s.status}[/{c}]", f"{s.seconds:.0f}", s.detail[:90])
        parts: list[Any] = [table]
        if self.collector is not None:
            t = self.collector.snapshot()
            versions = ", ".join(f"{v}: {n}" for v, n in sorted(t.versions.items()))
            parts.append(f"sent {self.sent:,} · scored {t.scores:,} · shadow {t.shadow:,} · "
                         f"alerts {t.alerts:,} · duplicates {t.duplicates} · drift events {len(t.drift)} · "
                         f"model events {len(t.models)} · by version: {versions or '-'}")
        return Group(*parts)


def free_port() -> int:
    from txmon.broker.ports import free_port_block

    return free_port_block(1)


def run(demo: Demo) -> DemoRecord:
    """Run the loop; always writes the report; raises :class:`DemoFailed` when the loop broke."""
    from txmon.broker import cluster_for

    cluster = cluster_for(demo.settings)
    failure: BaseException | None = None
    try:
        with Live(demo.view(), console=demo.console, refresh_per_second=2,
                  get_renderable=demo.view, transient=False), \
                Supervisor(demo.home / "logs", demo.env) as sup:
            try:
                _loop(demo, cluster, sup)
            finally:
                demo.stopping.set()
                if demo.stream_thread is not None:
                    demo.stream_thread.join(timeout=30)
                if demo.collector is not None:
                    time.sleep(1.0)  # let the last committed output arrive
                    demo.collector.stop()
    except BaseException as exc:  # report on every failure, Ctrl-C included
        failure = exc
    finally:
        cluster.down()
    _finish(demo, failure)
    if failure is not None:
        if isinstance(failure, DemoFailed | KeyboardInterrupt):
            raise failure
        raise DemoFailed(_failed_stage(demo), str(failure)) from failure
    return demo.record


def _failed_stage(demo: Demo) -> str:
    return next((s.name for s in demo.record.stages if s.status in ("failed", "running")), "demo")


def _loop(demo: Demo, cluster: Any, sup: Supervisor) -> None:
    from txmon.broker.topics import ensure_topics

    plan = demo.plan
    with demo.step("broker") as st:
        cluster.up()
        ensure_topics(demo.settings)
        st.detail = f"Apache Kafka {cluster.version} (KRaft) at {cluster.bootstrap_servers}"

    with demo.step("simulate") as st:
        result = simulate_world(plan)
        frame = result.frame
        history, warmup, live = split(frame, plan)
        demo.record.drift_onset = plan.drift_start
        st.detail = (f"{plan.accounts} accounts, {len(history):,} history + {len(live):,} live "
                     f"transactions; drift '{result.drift_truth[0]['name']}' at "
                     f"{plan.drift_start:%Y-%m-%d} (the world of {plan.sim_start:%Y-%m-%d} moved "
                     f"{plan.shift.days // 7} weeks)")

    with demo.step("champion") as st:
        artifact = _build_champion(demo, history)
        st.detail = f"v1 at {artifact}"
        sup.start("register", "models", "register", str(artifact), "--promote", "--by", "demo")
        _wait_child(sup, "register", 120)

    truth = Truth(event_time=dict(zip(frame["tx_id"], list(frame["event_time"]), strict=True)),
                  positive=dict(zip(frame["tx_id"], frame["label"].isin(["fraud", "sar"]),
                                    strict=True)))
    demo.collector = Collector(demo.settings, truth, group=f"demo-{secrets.token_hex(4)}")
    demo.collector.start()

    with demo.step("services") as st:
        metrics_port = free_port()
        sup.env = demo.env_for(TXMON_WORKER__METRICS_PORT=str(metrics_port),
                               TXMON_WORKER__METRICS_HOST="127.0.0.1",
                               TXMON_WORKER__DRIFT_WARMUP_EVENTS=str(plan.drift_warmup_events),
                               TXMON_WORKER__DRIFT_COLD_EVENTS=str(plan.drift_cold_events),
                               TXMON_WORKER__DRIFT_MONITOR=json.dumps(plan.drift_monitor))
        # Budget mode: the day's alerts go to the highest scores; the floor only stops noise.
        sup.start("worker", "worker", "--instance-id", "demo-1",
                  "--daily-budget", str(plan.daily_alert_budget), "--threshold", "0.01")
        sup.env = demo.env
        sup.start("controller", "retrain-controller", "--policy", str(_policy_file(demo)))
        st.detail = f"txmon worker (metrics :{metrics_port}), txmon retrain-controller"

    stream = pd.concat([warmup, live], ignore_index=True)
    hold_at = pd.Timestamp(plan.live_start) + pd.Timedelta(days=plan.live_days * plan.hold_fraction)
    demo.stream_thread = threading.Thread(target=_stream, args=(demo, stream, hold_at),
                                          name="demo-traffic", daemon=True)
    demo.stream_thread.start()

    def first_version() -> bool:
        return "v1" in demo.collector.snapshot().versions  # type: ignore[union-attr]

    demo.wait_for("warm-up", first_version, sup, lambda _: "worker is scoring with v1")
    demo.stage("live traffic").status = "running"

    def drift() -> Any:
        t = demo.collector.snapshot()  # type: ignore[union-attr]
        return t.drift[0] if t.drift else None

    demo.wait_for("drift detected", drift, sup,
                  lambda d: f"{d.detector} ({d.scope}) {d.statistic:.3g} > {d.threshold:.3g}")

    def model_event(*kinds: str) -> Callable[[], Any]:
        def find() -> Any:
            t = demo.collector.snapshot()  # type: ignore[union-attr]
            for m in t.models:
                if m.event in kinds and m.version != "v1":
                    return m
            rejected = [m for m in t.models if m.event == "rejected"]
            if rejected and "rejected" not in kinds:
                raise DemoFailed("gates passed", f"candidate {rejected[0].version} rejected: "
                                 f"{rejected[0].reason}")
            return None
        return find

    # The job ends with its candidate validated or rejected (jobs publish no separate event first).
    demo.wait_for("retrain job", model_event("candidate", "validated", "rejected"), sup,
                  lambda m: f"candidate {m.version}: {m.event}")
    demo.wait_for("gates passed", model_event("validated"), sup,
                  lambda m: f"{sum(g.passed for g in m.gate_results)}/{len(m.gate_results)} gates")
    ran_out: list[float] = []

    def promoted_or_starved() -> Any:
        found = model_event("promoted")()
        t = demo.collector.snapshot()  # type: ignore[union-attr]
        if found is None and demo.stream_done.is_set() and t.scores >= len(stream):
            # The controller checks the shadow every 15 s: a minute and a half with nothing left
            # to score or label means it never will (a late detection left no traffic for it).
            ran_out.append(time.monotonic())
            if ran_out[-1] - ran_out[0] > 90:
                raise DemoFailed("shadow", f"the live traffic ran out during the shadow period "
                                           f"({t.shadow:,} events shadow-scored)")
        return found

    promoted = demo.wait_for("shadow", promoted_or_starved, sup,
                             lambda m: "shadow comparison passed")
    demo.stage("promoted").status = "done"
    demo.stage("promoted").detail = f"{promoted.version} promoted (sha256 {promoted.artifact_sha256[:12]}…)"

    def swapped() -> Any:
        t = demo.collector.snapshot()  # type: ignore[union-attr]
        new = [v for v in t.versions if v != "v1"]
        if not new and demo.stream_done.is_set() and t.scores >= len(stream):
            raise DemoFailed("hot swap", "the live traffic ran out before the promoted model "
                                         "scored any of it")
        return new[0] if new else None

    version = demo.wait_for("hot swap", swapped, sup, lambda v: f"worker serving {v}")
    demo.release.set()
    with demo.step("live traffic"):
        while not demo.stream_done.is_set():
            sup.check()
            if demo.remaining() <= 0:
                raise DemoFailed("live traffic", "traffic did not finish in time")
            time.sleep(0.5)
        _drain(demo, len(stream))
    demo.record.promoted_at = demo.collector.snapshot().first_seen.get(version)


def _stream(demo: Demo, frame: pd.DataFrame, hold_at: pd.Timestamp) -> None:
    """Warm-up as fast as possible, then live traffic in slices of event time: at the plan's rate,
    slowed to a trickle past ``hold_at`` until the retrained model serves (so the shadow still sees
    traffic, and traffic is left afterwards to show recovery), and paused while the retrain job
    trains (so a slow machine does not run out of traffic before the shadow period)."""
    from txmon.replay import Pacing, publish

    def count(n: int) -> None:
        demo.sent += n

    def send(lo: pd.Timestamp | None, hi: pd.Timestamp | None, pacing: Pacing) -> None:
        ev, lt = frame["event_time"], frame["label_time"]
        inside = pd.Series(True, index=frame.index)
        if lo is not None:
            inside &= (ev >= lo) | (lt >= lo)
        if hi is not None:
            inside &= (ev < hi) | (lt < hi)
        publish(frame[inside], demo.settings, pacing, window=(lo, hi), progress=count,
                source="demo", label_source="demo", event_timestamps=True)

    try:
        live_start = pd.Timestamp(demo.plan.live_start)
        send(None, live_start, Pacing())
        step = pd.Timedelta(hours=6)
        end = max(frame["event_time"].max(), frame["label_time"].max()) + pd.Timedelta(seconds=1)
        t = live_start
        while t < end:
            while demo.holding() and not demo.stopping.is_set():
                time.sleep(0.2)
            if demo.stopping.is_set():
                return
            slow = t >= hold_at and not demo.release.is_set()
            rate = demo.plan.rate / demo.plan.trickle if slow else demo.plan.rate
            send(t, t + step, Pacing(rate=rate))
            t += step
    except BaseException as exc:
        import traceback

        (demo.home / "logs" / "traffic.log").write_text(traceback.format_exc())
        demo.stream_error = exc
    finally:
        demo.stream_done.set()


@contextmanager
def _nullcontext():
    yield


def _drain(demo: Demo, expected: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if demo.collector.snapshot().scores >= expected:  # type: ignore[union-attr]
            return
        time.sleep(0.5)


def _wait_child(sup: Supervisor, name: str, timeout: float) -> None:
    child = next(c for c in sup.children if c.name == name)
    try:
        code = child.proc.wait(timeout=timeout)
    finally:
        sup.children.remove(child)
    if code != 0:
        raise RuntimeError(f"`txmon {name}` failed ({code}):\n{child.tail()}")


def _policy_file(demo: Demo) -> Path:
    """The demo's retraining policy (windows sized for compressed time, shadow required)."""
    from importlib import resources

    import yaml

    policy = yaml.safe_load(resources.files("txmon.demo").joinpath("policy.yaml").read_text())
    policy["snapshot"]["window_days"] = demo.plan.snapshot_days
    policy["controller"]["labels_after_drift"] = demo.plan.labels_after_drift
    policy["controller"]["positives_after_drift"] = demo.plan.positives_after_drift
    path = demo.home / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def _build_champion(demo: Demo, history: pd.DataFrame) -> Path:
    from models.artifact import HmacSigner
    from models.finetune import TrainConfig, build_champion
    from models.pretrain import PretrainConfig

    out = demo.home / "artifacts" / "v1"
    cfg = TrainConfig(show_progress=False, threads=2)
    cfg.pretrain = PretrainConfig(**{**cfg.pretrain.__dict__, "epochs": demo.plan.pretrain_epochs})
    cfg.finetune.epochs = demo.plan.finetune_epochs
    signer = HmacSigner(demo.env["TXMON_SIGNING_KEY"].encode())
    build_champion(history, out, "v1", cfg, signer=signer)
    return out


def _finish(demo: Demo, failure: BaseException | None) -> None:
    """Fill the record from what was observed, judge it, write the report."""
    rec = demo.record
    plan = demo.plan
    with demo.step("report") if failure is None else nullcontext():
        if demo.collector is not None:
            f = demo.collector.frame()
            t = demo.collector.snapshot()
            rec.drift_events = t.drift
            rec.model_events = t.models
            rec.buckets = buckets(f, "12h")
            live = f[f["event_time"] >= pd.Timestamp(plan.live_start)]
            onset = pd.Timestamp(plan.drift_start)
            before = live[live["event_time"] < onset]
            rec.scores_before = before["score"].to_numpy()
            if rec.promoted_at is not None:
                swap = pd.Timestamp(rec.promoted_at)
                during = live[(live["event_time"] >= onset) & (live["event_time"] < swap)]
                after = live[live["event_time"] >= swap]
                rec.scores_after = after["score"].to_numpy()
                k = plan.daily_alert_budget
                rec.figures = {
                    "precision_at_budget_before_drift": precision_at_budget(before, k),
                    "precision_at_budget_during_drift": precision_at_budget(during, k),
                    "precision_at_budget_after_promotion": precision_at_budget(after, k),
                    "alert_precision_during_drift": _alert_precision(during),
                    "alert_precision_after_promotion": _alert_precision(after),
                    "events_after_promotion": len(after),
                    "positives_after_promotion": int(after["positive"].sum()),
                    "scored": len(f), "duplicates": t.duplicates,
                    **_detection_figures(t.drift, onset),
                    "daily_alert_budget": plan.daily_alert_budget,
                }
            candidate = next((m.version for m in t.models
                              if m.event == "promoted" and m.version != "v1"), None)
            if candidate is not None:
                rec.figures["same_events"] = same_events(
                    demo.collector.pairs("v1", candidate), plan.daily_alert_budget)
        rec.audit = _audit(demo.home)
        rec.ok, rec.verdict = _judge(rec, failure)
        if failure is None:
            recovery = demo.stage("recovery")
            recovery.status = "done" if rec.ok else "failed"
            recovery.detail = rec.verdict.split("; ")[-1][:200]
            demo.stage("report").status = "done"
        path = render(rec, demo.report_dir)
    demo.console.print(f"report: {path}")


def _detection_figures(drifts: list[Any], onset: pd.Timestamp) -> dict[str, Any]:
    """Detections against the known onset: one before it is a false alarm, whatever followed."""
    early = [d for d in drifts if pd.Timestamp(d.detected_at) < onset]
    late = [d for d in drifts if pd.Timestamp(d.detected_at) >= onset]
    first = (pd.Timestamp(late[0].detected_at) - onset) / pd.Timedelta(hours=1) if late else None
    return {"detections_before_onset": len(early),
            "false_alarms": [f"{d.detector} ({d.scope}) at {d.detected_at:%Y-%m-%d %H:%M}"
                             for d in early],
            "first_detection_hours_after_onset": None if first is None else round(first, 1)}


def _alert_precision(f: pd.DataFrame) -> float:
    alerts = f[f["alerted"]]
    return float(alerts["positive"].mean()) if len(alerts) else float("nan")


def _judge(rec: DemoRecord, failure: BaseException | None) -> tuple[bool, str]:
    """Completed, no duplicates, and the candidate better than the champion on the same events:
    its AP gap's lower bound above 0 and its top-k daily precision higher. Precision before and
    after the promotion is reported, not judged: it is measured on different traffic (a few
    hundred events after the swap in a quick run), so it moves with where the swap lands."""
    if failure is not None:
        stage = next((s.name for s in rec.stages if s.status == "failed"), "demo")
        return False, f"The loop did not complete: stage '{stage}' failed: {failure}"
    fig = rec.figures
    if fig.get("duplicates"):
        return False, f"{fig['duplicates']} transactions were scored twice in committed output"
    same = fig.get("same_events") or {}
    if not same.get("events"):
        return False, "The loop completed but no live event was scored by both models"
    k = fig["daily_alert_budget"]
    pair = (f"on the same {same['events']:,} shadow events ({same['positives']} positive) the "
            f"candidate's AP was {same['candidate_ap']:.3f} vs the champion's "
            f"{same['champion_ap']:.3f} (gap at least {same['ap_gap_low']:+.3f} at "
            f"{same['confidence']:.0%}), top-{k} daily precision "
            f"{same['candidate_precision_at_budget']:.3f} vs "
            f"{same['champion_precision_at_budget']:.3f}")
    better = (np.isfinite(same["ap_gap_low"]) and same["ap_gap_low"] > 0
              and same["candidate_precision_at_budget"] > same["champion_precision_at_budget"])
    if not better:
        return False, f"The loop completed but the candidate was not shown better: {pair}"
    during = fig.get("precision_at_budget_during_drift", float("nan"))
    after = fig.get("precision_at_budget_after_promotion", float("nan"))
    moved = (f"top-{k} daily precision on live traffic {during:.3f} during the drift, "
             f"{after:.3f} after the promotion ({fig.get('events_after_promotion', 0):,} events, "
             f"{fig.get('positives_after_promotion', 0)} positive; other traffic, not judged)")
    early = fig.get("detections_before_onset", 0)
    detected = ("drift detected" if not early else
                f"drift detected, but {early} detection(s) came before the true onset (false "
                f"alarms: {'; '.join(fig['false_alarms'][:3])})")
    return True, (f"Loop completed: {detected}, candidate validated, shadowed, promoted and "
                  f"swapped; {moved}; {pair}")


def _audit(home: Path) -> list[dict[str, Any]]:
    import json

    path = home / "audit" / "audit.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        rows.append({k: (v if isinstance(v, str | int | float) else json.dumps(v)[:80])
                     for k, v in e.items()})
    return rows


def default_home() -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(os.environ.get("TXMON_DEMO_HOME", Path.home() / ".cache" / "txmon" / "demo")) / stamp
