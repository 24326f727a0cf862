"""Commands: ``txmon retrain-controller``, ``txmon retrain``, ``txmon models …``, ``txmon audit verify``.

The governed retraining loop's operator surface. Heavy modules (MLflow, torch, kafka) are imported
inside the commands so ``txmon --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

console = Console()
models_app = typer.Typer(help="The model registry: list, show, approve, promote, roll back.",
                         no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)

PolicyOpt = Annotated[Path | None, typer.Option("--policy", help="policy YAML (default: shipped)",
                                                exists=True, dir_okay=False)]
By = Annotated[str, typer.Option("--by", help="who does this (recorded in the audit log)")]


def _settings() -> Any:
    from txmon.settings import get_settings

    return get_settings()


def _governance(policy: Path | None = None, publish: bool = True) -> Any:
    from models.registry import Registry
    from retrain.audit import AuditLog
    from retrain.job import Paths, signer_from_settings
    from retrain.policy import load_policy
    from retrain.promotion import Governance, KafkaPublisher, MemoryPublisher

    s = _settings()
    paths = Paths(Path(s.home))
    return Governance(Registry.from_settings(s), AuditLog(paths.audit),
                      KafkaPublisher(s) if publish else MemoryPublisher(), load_policy(policy),
                      verifier=signer_from_settings(s), cards_dir=paths.cards)


def _fail(message: str) -> None:
    console.print(f"[red]{message}[/red]")
    raise typer.Exit(1)


# -- controller and jobs --------------------------------------------------------------------------
def retrain_controller(policy: PolicyOpt = None) -> None:
    """Run the retrain controller: consume txmon.drift and txmon.labels, start jobs by policy."""
    from retrain.policy import load_policy
    from retrain.service import controller_for, serve

    s = _settings()
    pol = load_policy(policy)
    ctl = controller_for(s, pol, policy)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def show(event: Any, decision: Any) -> None:
        colour = {"retrain": "green", "held": "yellow"}.get(decision.action, "dim")
        console.print(f"{datetime.now(UTC):%H:%M:%S} drift {event.scope}/{event.severity} "
                      f"({event.detector}) -> [{colour}]{decision.action}[/{colour}]: {decision.reason}")

    console.print(f"retrain controller: policy {pol.source_sha256[:12]}, cooldown "
                  f"{pol.controller.cooldown_hours:g} h, ≤{pol.controller.max_jobs_per_day} jobs/day, "
                  f"≥{pol.controller.min_new_labels} new labels; audit {ctl.audit.path}")
    from retrain.shadow_watch import ShadowWatch

    gov = _governance(policy)
    watch = ShadowWatch(s, lambda: gov)
    with contextlib.suppress(KeyboardInterrupt):
        serve(s, ctl, stop, on_decision=show, watch=watch)
    console.print("controller stopped")


def retrain(reason: Annotated[str, typer.Option("--reason", help="why (recorded)")],
            by: By = "operator", policy: PolicyOpt = None,
            wait: Annotated[bool, typer.Option(help="wait for the job and show its result")] = True) -> None:
    """Start a retraining job by hand (same policy budget and one-at-a-time rule as the controller)."""
    from retrain.policy import load_policy
    from retrain.service import controller_for

    s = _settings()
    ctl = controller_for(s, load_policy(policy), policy)
    decision = ctl.on_manual(reason, by)
    if decision.action != "retrain":
        _fail(f"not started: {decision.reason}")
    console.print(f"job started ({decision.reason}); log in {ctl.launcher.log_dir}")
    if not wait:
        return
    with console.status("retraining: snapshot -> fine-tune -> export -> gates -> registry…"):
        while (code := ctl.tick()) is None:
            time.sleep(1)
    if code != 0:
        _fail(f"job failed with exit code {code}; see the job log and `txmon audit show`")
    console.print("[green]job finished[/green]; `txmon models list` shows the candidate")


# -- registry -------------------------------------------------------------------------------------
@models_app.command("list")
def list_versions() -> None:
    """Every model version with its status, aliases and failed gates."""
    from models.registry import Registry

    reg = Registry.from_settings(_settings())
    table = Table("version", "model version", "status", "aliases", "parent", "failed gates",
                  "sha256", "created")
    for v in reg.versions():
        table.add_row(v.version, v.tags.get("model_version", ""), v.status, ",".join(v.aliases),
                      v.tags.get("parent_version", ""), v.tags.get("gates_failed", ""),
                      (v.artifact_sha256 or "")[:12],
                      datetime.fromtimestamp(v.created_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@models_app.command()
def show(version: str) -> None:
    """One version: its model card (lineage, data window, gates, approvals)."""
    from models.registry import RegistryError

    gov = _governance(publish=False)
    try:
        console.print(Markdown(gov.card(version)))
    except RegistryError as exc:
        _fail(str(exc))


@models_app.command()
def approve(version: str, by: By, note: Annotated[str, typer.Option(help="review note")] = "",
            policy: PolicyOpt = None) -> None:
    """Approve a validated candidate; it is promoted at once and workers hot-swap."""
    from retrain.promotion import PromotionError

    gov = _governance(policy)
    try:
        gov.approve(version, by=by, note=note)
    except PromotionError as exc:
        _fail(str(exc))
    console.print(f"[green]version {version} approved by {by} and promoted[/green]")


@models_app.command()
def promote(version: str, by: By, policy: PolicyOpt = None) -> None:
    """Make a version champion (e.g. re-promote a retired one). Rejected versions are refused."""
    from models.artifact import ArtifactError
    from models.registry import RegistryError
    from retrain.promotion import PromotionError

    try:
        ev = _governance(policy).promote(version, by=by)
    except (PromotionError, RegistryError, ArtifactError) as exc:
        _fail(str(exc))
    console.print(f"[green]promoted {version}[/green] ({ev.version}, sha256 {ev.artifact_sha256[:12]}…)")


@models_app.command()
def rollback(by: By, reason: Annotated[str, typer.Option(help="why (recorded)")] = "") -> None:
    """Restore the previous champion in one step."""
    from models.artifact import ArtifactError
    from models.registry import RegistryError

    try:
        demoted, restored = _governance().rollback(by=by, reason=reason)
    except (RegistryError, ArtifactError) as exc:
        _fail(f"rollback refused (recorded in the audit log), champion unchanged: {exc}")
    console.print(f"[yellow]rolled back[/yellow]: champion {demoted} -> {restored}")


@models_app.command("register")
def register_artifact(directory: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
                      by: By = "operator",
                      make_champion: Annotated[bool, typer.Option("--promote",
                                                                  help="make it champion")] = False) -> None:
    """Register an existing artifact (e.g. the first model from `txmon train`)."""
    from models.artifact import verify

    gov = _governance(publish=make_champion)
    manifest = verify(directory, verifier=gov.verifier)
    metrics_file = directory / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    info = gov.registry.register(
        directory, artifact_sha256=manifest.artifact_sha256,
        metrics={k: v for k, v in metrics.items() if isinstance(v, int | float)},
        params={}, tags={"model_version": manifest.version, "registered_by": by,
                         "signature_algorithm": manifest.signature_algorithm or "none"})
    gov.audit.append("candidate", actor=by, version=info.version, model_version=manifest.version,
                     artifact_sha256=manifest.artifact_sha256, source="registered by hand")
    console.print(f"registered {directory} as version {info.version}")
    if make_champion:
        gov.promote(info.version, by=by)
        console.print(f"[green]version {info.version} is champion[/green]")


@models_app.command()
def shadow(version: str, hours: Annotated[float, typer.Option(help="look back this many hours")] = 24.0,
           policy: PolicyOpt = None) -> None:
    """Compare a challenger's shadow scores with the champion's; record the shadow gate."""
    from datetime import timedelta

    from models.registry import CHAMPION
    from retrain.shadow import read_shadow, shadow_gate

    gov = _governance(policy)
    s = _settings()
    champ = gov.registry.alias(CHAMPION)
    if champ is None:
        _fail("no champion")
    cand = gov.registry.get(version)
    until = datetime.now(UTC)
    with console.status("reading shadow scores and labels from Kafka…"):
        summary = read_shadow(s, until - timedelta(hours=hours), until,
                              champ.tags.get("model_version", champ.version),
                              cand.tags.get("model_version", version), gov.policy.gates.alert_budget,
                              confidence=gov.policy.shadow.confidence,
                              bootstraps=gov.policy.shadow.bootstraps)
    gate = shadow_gate(summary, gov.policy.shadow)
    outcome = gov.record_shadow(version, gate, summary.to_dict())
    console.print(f"shadow gate {'[green]passed' if gate.passed else '[red]failed'}[/]: {gate.detail}"
                  f" -> {outcome}")


# -- audit ----------------------------------------------------------------------------------------
@audit_app.command("verify")
def audit_verify(path: Annotated[Path | None, typer.Option(help="audit log (default: under TXMON_HOME)")]
                 = None,
                 registry: Annotated[bool, typer.Option(
                     help="also check the entries anchored in the model registry (catches a "
                          "truncated or rewritten log)")] = False) -> None:
    """Check the hash chain: any edited, deleted or reordered entry is reported with its line."""
    from retrain.audit import check_anchors, verify
    from retrain.job import Paths

    path = path or Paths(Path(_settings().home)).audit
    result = verify(path)
    if not result.ok:
        _fail(f"audit log {path} is NOT intact: line {result.line}: {result.problem} "
              f"({result.entries} entries verified before it)")
    if registry:
        anchored = check_anchors(path, _governance(publish=False).audit_anchors())
        if not anchored.ok:
            _fail(f"audit log {path} is NOT intact: {anchored.problem}")
        console.print(f"{anchored.entries} entries match their registry anchors")
    console.print(f"[green]audit log intact[/green]: {result.entries} entries, {path}")


@audit_app.command("show")
def audit_show(last: Annotated[int, typer.Option(help="how many entries")] = 20) -> None:
    """The last entries of the audit log."""
    from retrain.audit import AuditLog
    from retrain.job import Paths

    entries = list(AuditLog(Paths(Path(_settings().home)).audit).entries())[-last:]
    table = Table("seq", "at", "kind", "actor", "details")
    for e in entries:
        table.add_row(str(e["seq"]), e["at"][:19], e["kind"], e["actor"],
                      json.dumps(e["details"], default=str)[:120])
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the `txmon` app."""
    app.command("retrain-controller")(retrain_controller)
    app.command("retrain")(retrain)
    app.add_typer(models_app, name="models")
    app.add_typer(audit_app, name="audit")
