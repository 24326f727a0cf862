"""Commands: ``txmon simulate`` (a synthetic bank) and ``txmon replay FILE`` (a user's own log)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _progress(total: int, what: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def _pacing(speed: float | None, rate: float | None):
    from txmon.replay import Pacing

    try:
        return Pacing(speed=speed, rate=rate)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _publish(frame, pacing, **kw):
    from txmon.replay import publish
    from txmon.settings import get_settings

    with _progress(len(frame), "publishing") as bar:
        task = bar.add_task("publishing", total=len(frame))
        report = publish(frame, get_settings(), pacing, progress=lambda n: bar.advance(task, n), **kw)
    return report


def simulate(
    out: Annotated[Path | None, typer.Option("--out", help="write FILE.parquet or FILE.csv")] = None,
    to_kafka: Annotated[bool, typer.Option("--to-kafka", help="publish transactions and labels")] = False,
    accounts: Annotated[int, typer.Option(help="number of accounts")] = 2000,
    days: Annotated[int, typer.Option(help="days of activity")] = 30,
    seed: Annotated[int, typer.Option(help="same seed, same bytes")] = 0,
    start: Annotated[datetime | None, typer.Option(help="first day (UTC), e.g. 2026-01-05")] = None,
    drift: Annotated[Path | None, typer.Option("--drift", help="drift schedule (YAML/JSON)")] = None,
    speed: Annotated[float | None, typer.Option(help="--to-kafka: N x real time")] = None,
    rate: Annotated[float | None, typer.Option(help="--to-kafka: transactions per second")] = None,
) -> None:
    """Simulate a bank — everyday habits, card fraud, AML typologies, late labels, scheduled drift."""
    from txmon.sim import SimConfig, load_drift_schedule
    from txmon.sim import simulate as run
    from txmon.sim.output import truth_document, write

    if not out and not to_kafka:
        raise typer.BadParameter("give --out FILE.parquet|.csv and/or --to-kafka")
    if out and out.suffix not in (".parquet", ".csv"):
        raise typer.BadParameter("--out must end in .parquet or .csv")
    pacing = _pacing(speed, rate)
    kw = {"accounts": accounts, "days": days, "seed": seed}
    if start:
        kw["start"] = start if start.tzinfo else start.replace(tzinfo=__import__("datetime").UTC)
    if drift:
        kw["drift"] = load_drift_schedule(drift)
    with console.status(f"Simulating {accounts} accounts x {days} days…"):
        result = run(SimConfig(**kw))
    s = result.summary()
    console.print(f"[green]{s['rows']:,} transactions[/green], card fraud rate {s['card_fraud_rate']:.3%}, "
                  f"labelled {s['labelled_share']:.1%}")
    table = Table("scenario", "rows", "incidents")
    for k, v in s["scenario_rows"].items():
        table.add_row(k, f"{v:,}", str(s["incidents"].get(k, "")))
    console.print(table)
    for d in result.drift_truth:
        console.print(f"drift [bold]{d['name']}[/bold] starts {d['start'].isoformat()}")
    if out:
        truth = write(result, out)
        console.print(f"wrote {out} and {truth}")
    if to_kafka:
        report = _publish(result.frame, pacing, source="simulate", label_source="simulator")
        console.print(f"published {report.transactions:,} transactions and {report.labels:,} labels "
                      f"in {report.seconds:.1f}s")
        if not out:
            console.print_json(json.dumps(truth_document(result)["drift"]))


def replay(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet transaction log", exists=True, dir_okay=False)],
    map_: Annotated[list[str] | None,
                    typer.Option("--map", help="FIELD=COLUMN or FIELD:=VALUE, repeatable")] = None,
    map_file: Annotated[Path | None,
                        typer.Option("--map-file", help="mapping file (YAML/JSON or lines)")] = None,
    label: Annotated[str | None, typer.Option(help="column holding the label")] = None,
    label_delay: Annotated[str | None, typer.Option(help="labels arrive this long after, e.g. 7d")] = None,
    speed: Annotated[float | None, typer.Option(help="N x real time (default: as fast as possible)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate and summarise; no Kafka")] = False,
    show_bad: Annotated[int, typer.Option(help="bad rows to list")] = 20,
) -> None:
    """Publish a CSV/Parquet transaction log to the topics; bad rows go to the dead-letter topic."""
    from txmon.mapping import ColumnMapping, load_table
    from txmon.replay import summarize

    try:
        mapping = ColumnMapping.parse(map_ or [], label=label, label_delay=label_delay)
        if map_file:
            mapping = ColumnMapping.from_file(map_file).merged(mapping)
        with console.status(f"Reading {file}…"):
            mapped = mapping.apply(load_table(file))
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    summary = summarize(mapped)
    table = Table("", "", title=str(file))
    for k, v in summary.items():
        table.add_row(k, str(v))
    console.print(table)
    for b in mapped.bad[:show_bad]:
        console.print(f"[yellow]line {b.line}[/yellow]: {b.reason}")
    if len(mapped.bad) > show_bad:
        console.print(f"… and {len(mapped.bad) - show_bad} more bad rows")
    if dry_run:
        return
    report = _publish(mapped.frame, _pacing(speed, None), bad=mapped.bad, lines=mapped.lines,
                      source=f"file:{file.name}", label_source="replay")
    for b in report.rejected:
        console.print(f"[yellow]line {b.line}[/yellow]: {b.reason}")
    console.print(f"published {report.transactions:,} transactions, {report.labels:,} labels, "
                  f"{report.dead_letters:,} dead letters in {report.seconds:.1f}s")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the `txmon` app."""
    app.command("simulate")(simulate)
    app.command("replay")(replay)
