"""Commands: ``txmon drift status`` — each detector's statistic vs threshold and last detection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
drift_app = typer.Typer(help="Online drift monitoring (alibi-detect, river ADWIN).",
                        no_args_is_help=True)


def _default_state_dir() -> Path:
    from txmon.settings import get_settings

    return get_settings().home / "drift" / "state"


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else "—" if v is None else str(v)


@drift_app.command()
def status(state_dir: Annotated[Path | None, typer.Option(
        help="the drift monitor's state directory (default: $TXMON_HOME/drift/state)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the raw summary")] = False) -> None:
    """Each detector: its statistic vs threshold, checks so far, detections and the last one."""
    import json

    from streams.drift import read_status

    directory = state_dir or _default_state_dir()
    summary = read_status(directory)
    if summary is None:
        console.print(f"[yellow]No drift checkpoint in {directory}[/yellow] (has a worker run?)")
        raise typer.Exit(1)
    if as_json:
        console.print_json(json.dumps(summary, default=str))
        return
    console.print(f"champion [bold]{summary['champion_version']}[/bold] · "
                  f"{summary['events_seen']:,} events in {summary['blocks_seen']:,} checks · "
                  f"saved {summary['saved_at']}")
    table = Table("detector", "scope", "statistic", "threshold", "steps", "detections",
                  "last detection", "top evidence")
    for row in summary["status"]:
        last = row.get("last_detection") or {}
        evidence = last.get("evidence") or []
        top = ", ".join(f"{e['feature']} ({_fmt(e['statistic'])})" for e in evidence[:2])
        stat, thr = row.get("statistic"), row.get("threshold")
        style = "red" if isinstance(stat, float) and isinstance(thr, float) and stat > thr else ""
        table.add_row(row["detector"], row["scope"], f"[{style}]{_fmt(stat)}[/]" if style else _fmt(stat),
                      _fmt(thr), _fmt(row.get("steps")), _fmt(row.get("detections")),
                      last.get("detected_at", "—"), top or "—")
    console.print(table)
    for row in summary["status"]:
        if row.get("blind"):
            console.print(f"[yellow]{row['detector']} cannot fire on {', '.join(row['blind'])}[/yellow]: "
                          "their consecutive blocks move together more than its longest window can "
                          "outweigh at this ERT (longer windows or more reference blocks would see them)")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the `txmon` app."""
    app.add_typer(drift_app, name="drift")
