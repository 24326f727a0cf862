"""Command: ``txmon demo`` — the whole loop, end to end, on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        quick: Annotated[bool, typer.Option("--quick", help="smaller world, at most ~5 minutes")] = False,
        report_out: Annotated[Path, typer.Option("--report-out", help="folder for report.html")] = Path(
            "demo-report"),
        home: Annotated[Path | None, typer.Option(help="working folder (default: a new one under "
                                                       "~/.cache/txmon/demo)")] = None,
        seed: Annotated[int | None, typer.Option(
            help="simulation seed [default: the world's own: 7 quick, 8 default]")] = None,
        today: Annotated[str | None, typer.Option(
            help="end the world near this date (YYYY-MM-DD, not after today) instead of today; the "
                 "world itself is the same, moved by whole weeks")] = None,
    ) -> None:
        """Start Kafka, train a champion, stream traffic with a drift, retrain under governance,
        promote, hot-swap, and write an HTML report. Exits 1 when the loop did not complete (naming
        the stage) or the candidate was not better than the champion on the same live events."""
        import signal
        from dataclasses import replace
        from datetime import UTC, date, datetime

        from rich.console import Console

        from txmon.demo.run import Demo, DemoFailed, default_home, free_port, run
        from txmon.demo.scenario import DemoPlan

        def stop(*_: object) -> None:
            raise KeyboardInterrupt  # so everything the demo started is stopped on SIGTERM too

        signal.signal(signal.SIGTERM, stop)
        console = Console()
        day = date.fromisoformat(today) if today else None
        if day is not None and day > datetime.now(UTC).date():
            raise typer.BadParameter("--today must not be after today: Kafka refuses records "
                                     "from the future")
        plan = DemoPlan.quick() if quick else DemoPlan.default()
        plan = replace(plan, seed=plan.seed if seed is None else seed, today=day)
        d = Demo(plan=plan, home=(home or default_home()).resolve(), report_dir=report_out.resolve(),
                 port=free_port(), console=console)
        try:
            record = run(d)
        except DemoFailed as exc:
            console.print(f"[red]demo failed at stage '{exc.stage}':[/red] {exc}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print("[yellow]demo interrupted; everything it started is stopped[/yellow]")
            raise typer.Exit(130) from None
        colour = "green" if record.ok else "red"
        console.print(f"[{colour}]{record.verdict}[/{colour}]")
        if not record.ok:
            raise typer.Exit(1)
