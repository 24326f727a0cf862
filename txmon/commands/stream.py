"""Commands: ``txmon worker`` (the scoring worker) and ``txmon alerts tail``."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
alerts_app = typer.Typer(help="Alerts for operations teams.", no_args_is_help=True)

_SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}


def worker(
    model: Annotated[Path | None, typer.Option(help="artifact directory to serve until a promoted "
                                                     "event on txmon.models says otherwise")] = None,
    instance_id: Annotated[str | None, typer.Option(help="stable id of this worker slot "
                                                         "(its Kafka transactional.id suffix)")] = None,
    group_id: Annotated[str | None, typer.Option(help="consumer group (default txmon-scorer)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="records per micro-batch")] = None,
    max_wait_ms: Annotated[int | None, typer.Option(help="longest wait to fill a batch")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="/metrics and /health port; -1 for none")] = None,
    threshold: Annotated[float | None, typer.Option(help="alert threshold (or budget floor)")] = None,
    daily_budget: Annotated[int | None, typer.Option(help="alert budget per day; switches the policy "
                                                          "to budget mode")] = None,
    shadow: Annotated[bool | None, typer.Option(
        "--shadow/--no-shadow", help="shadow-score a validated challenger beside the champion "
                                     "(default on; TXMON_WORKER__SHADOW)")] = None,
    drift: Annotated[bool | None, typer.Option(
        "--drift/--no-drift", help="drift-monitor the champion (default on; TXMON_WORKER__DRIFT)")] = None,
    drift_warmup: Annotated[int | None, typer.Option(
        help="events of a new champion that become its drift reference when none is cached")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Score every transaction exactly once (Kafka transactions; read outputs read_committed)."""
    import logging

    from streams.config import WorkerConfig
    from streams.worker import run_worker
    from txmon.settings import get_settings

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    cfg = WorkerConfig()
    update = {k: v for k, v in {"model_dir": model, "instance_id": instance_id, "group_id": group_id,
                                "batch_size": batch_size, "max_wait_ms": max_wait_ms,
                                "metrics_port": metrics_port, "shadow": shadow, "drift": drift,
                                "drift_warmup_events": drift_warmup}.items() if v is not None}
    policy = {k: v for k, v in {"threshold": threshold, "daily_budget": daily_budget}.items()
              if v is not None}
    if daily_budget is not None:
        policy["mode"] = "budget"
    if policy:
        update["policy"] = cfg.policy.model_copy(update=policy)
    cfg = WorkerConfig.model_validate(cfg.model_dump() | update)
    console.print(f"txmon worker [bold]{cfg.transactional_id}[/bold]: batches of {cfg.batch_size} "
                  f"within {cfg.max_wait_ms} ms, policy {cfg.policy.mode} at {cfg.policy.threshold}; "
                  f"shadow {'on' if cfg.shadow else 'off'}, drift "
                  + (f"on (warm-up {cfg.drift_warmup_events:,} events)" if cfg.drift else "off"))
    run_worker(get_settings(), cfg)


@alerts_app.command("tail")
def tail(
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="replay stored alerts")] = False,
    limit: Annotated[int, typer.Option(help="stop after this many alerts (0: run until Ctrl-C)")] = 0,
    rows: Annotated[int, typer.Option(help="rows kept on screen")] = 25,
    min_severity: Annotated[str, typer.Option(help="low, medium, high or critical")] = "low",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON alert per line, no table")] = False,
) -> None:
    """Alerts as they arrive (committed ones only), newest at the bottom."""
    import asyncio

    from txmon.settings import get_settings

    order = ["low", "medium", "high", "critical"]
    if min_severity not in order:
        raise typer.BadParameter(f"min-severity must be one of {', '.join(order)}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(get_settings(), from_beginning, limit, rows, order.index(min_severity),
                          as_json))


def _table(alerts: list, title: str):
    from rich.table import Table

    t = Table(title=title, expand=True)
    for col, kw in (("created", {}), ("severity", {}), ("score", {"justify": "right"}),
                    ("account", {}), ("tx", {}), ("model", {}), ("why", {"ratio": 3}),
                    ("rules", {"ratio": 1})):
        t.add_column(col, **kw)
    for a in alerts:
        style = _SEVERITY_STYLE.get(a.severity, "")
        why = "; ".join(f"{r.description} ({r.contribution:+.2f})" for r in a.reasons[:3])
        t.add_row(a.created_at.strftime("%H:%M:%S"), f"[{style}]{a.severity}[/{style}]",
                  f"{a.score:.3f}", a.account_id, a.tx_id, a.model_version, why or "-",
                  ", ".join(a.rule_hits) or "-")
    return t


async def _tail(settings, from_beginning: bool, limit: int, rows: int, min_level: int,
                as_json: bool) -> None:
    import uuid
    from collections import deque

    from aiokafka import AIOKafkaConsumer
    from rich.live import Live

    from txmon.contracts import Alert, ContractError, decode

    order = ["low", "medium", "high", "critical"]
    topic = settings.topic("alerts")
    consumer = AIOKafkaConsumer(topic, **settings.kafka.aiokafka_config(),
                                group_id=f"txmon-alerts-tail-{uuid.uuid4().hex[:8]}",
                                enable_auto_commit=False, isolation_level="read_committed",
                                auto_offset_reset="earliest" if from_beginning else "latest")
    await consumer.start()
    shown: deque = deque(maxlen=rows)
    seen = 0
    try:
        with Live(_table([], f"{topic}: waiting for alerts"), console=console,
                  auto_refresh=False, transient=False) if not as_json else _nothing() as live:
            while not limit or seen < limit:
                batches = await consumer.getmany(timeout_ms=500)
                for recs in batches.values():
                    for r in recs:
                        try:
                            a = decode(Alert, r.value)
                        except ContractError:
                            continue
                        if order.index(a.severity) < min_level:
                            continue
                        seen += 1
                        if as_json:
                            typer.echo(json.dumps(a.model_dump(mode="json")))
                        else:
                            shown.append(a)
                        if limit and seen >= limit:
                            break
                if live is not None:
                    live.update(_table(list(shown), f"{topic}: {seen} alert(s)"), refresh=True)
    finally:
        await consumer.stop()


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def register(app: typer.Typer) -> None:
    """Add this area's commands to the `txmon` app."""
    app.command("worker")(worker)
    app.add_typer(alerts_app, name="alerts")
