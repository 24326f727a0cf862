"""Commands: ``txmon train FILE`` (pre-train + fine-tune + export an artifact) and
``txmon backtest FILE`` (transformer vs LightGBM vs rules on a held-out period)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()

MapOpt = Annotated[list[str] | None, typer.Option("--map", help="field=column or field:=VALUE (repeat)")]
MapFileOpt = Annotated[Path | None, typer.Option("--map-file", help="mapping file (YAML/JSON or lines)")]
LabelOpt = Annotated[str | None, typer.Option("--label", help="label column (fraud/sar or 1 = positive)")]
DelayOpt = Annotated[str, typer.Option("--label-delay", help="labels are known this long after the "
                                                             "transaction, e.g. 7d")]


def _load(file: Path, map_: list[str] | None, map_file: Path | None, label: str | None, delay: str):
    from txmon.mapping import ColumnMapping, load_table

    try:
        mapping = ColumnMapping.parse(map_ or [], label=label, label_delay=delay)
        if map_file:
            mapping = ColumnMapping.from_file(map_file).merged(mapping)
        mapped = mapping.apply(load_table(file))
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc)) from None
    if mapped.bad:
        console.print(f"[yellow]{len(mapped.bad)} row(s) skipped as invalid "
                      f"(first: line {mapped.bad[0].line}, {mapped.bad[0].field})[/]")
    if "label" not in mapped.frame.columns or mapped.frame["label"].isna().all():
        raise typer.BadParameter("no labels: give --label COLUMN (or map label=COLUMN)")
    return mapped.frame


def _window(frame, since: datetime | None, until: datetime | None):
    import pandas as pd

    et = pd.to_datetime(frame["event_time"], utc=True)
    keep = pd.Series(True, index=frame.index)
    if since:
        keep &= et >= pd.Timestamp(since, tz="UTC") if since.tzinfo is None else et >= since
    if until:
        keep &= et <= pd.Timestamp(until, tz="UTC") if until.tzinfo is None else et <= until
    return frame.loc[keep].reset_index(drop=True)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the `txmon` app."""

    @app.command()
    def train(
        file: Annotated[Path, typer.Argument(help="transaction log (CSV or Parquet)", exists=True)],
        out: Annotated[Path, typer.Option(help="artifact directory to create")] = Path("artifacts/v1"),
        version: Annotated[str, typer.Option(help="model version")] = "v1",
        map_: MapOpt = None, map_file: MapFileOpt = None, label: LabelOpt = None,
        label_delay: DelayOpt = "7d",
        train_from: Annotated[datetime | None, typer.Option("--train-from")] = None,
        train_until: Annotated[datetime | None, typer.Option("--train-until")] = None,
        base: Annotated[Path | None, typer.Option(help="fine-tune from this artifact (champion)")] = None,
        max_len: Annotated[int | None, typer.Option(help="transactions per sequence (K); "
                                                          "default: TrainConfig's")] = None,
        pretrain_epochs: Annotated[int, typer.Option()] = 1,
        epochs: Annotated[int | None, typer.Option(help="fine-tuning epochs (early stopped); "
                                                         "default: FinetuneConfig's")] = None,
        quantize: Annotated[bool, typer.Option(help="also export an int8 graph")] = False,
        threads: Annotated[int, typer.Option(help="torch threads")] = 2,
        seed: Annotated[int, typer.Option()] = 0,
        drift_reference: Annotated[bool, typer.Option(
            help="ship a drift reference of the validation window, calibrated for the worker's "
                 "drift settings (TXMON_WORKER__DRIFT_MONITOR); the first build of a setting "
                 "simulates thresholds (minutes at the default ERT)")] = True,
    ) -> None:
        """Pre-train (masked fields) + fine-tune the transformer and export a verified artifact."""
        from models.artifact import HmacSigner
        from models.finetune import FinetuneConfig, TrainConfig, finetune
        from models.pretrain import PretrainConfig
        from txmon.settings import get_settings

        frame = _window(_load(file, map_, map_file, label, label_delay), train_from, train_until)
        cfg = TrainConfig(label_delay=label_delay, threads=threads, quantize=quantize,
                          pretrain=PretrainConfig(epochs=pretrain_epochs, seed=seed),
                          finetune=FinetuneConfig(seed=seed))
        cfg.max_len = max_len or cfg.max_len
        cfg.finetune.epochs = epochs or cfg.finetune.epochs
        if drift_reference:
            from streams.config import WorkerConfig

            cfg.drift_reference = dict(WorkerConfig().drift_monitor)
            cfg.drift_threshold_cache = str(get_settings().home / "drift" / "thresholds")
        key = get_settings().signing_key
        signer = HmacSigner(key.get_secret_value().encode()) if key else None
        metrics = finetune(frame, base, out, version, cfg, signer=signer)
        console.print_json(json.dumps(metrics, default=str))
        console.print(f"artifact [bold]{out}[/] sha256 {metrics['artifact_sha256']}")

    @app.command()
    def backtest(
        file: Annotated[Path, typer.Argument(help="transaction log (CSV or Parquet)", exists=True)],
        train_from: Annotated[datetime, typer.Option("--train-from")],
        train_until: Annotated[datetime, typer.Option("--train-until")],
        test_from: Annotated[datetime, typer.Option("--test-from")],
        test_until: Annotated[datetime | None, typer.Option("--test-until")] = None,
        map_: MapOpt = None, map_file: MapFileOpt = None, label: LabelOpt = None,
        label_delay: DelayOpt = "7d",
        scores_out: Annotated[Path, typer.Option("--scores-out")] = Path("scores.csv"),
        report_out: Annotated[Path, typer.Option("--report-out")] = Path("report.json"),
        budget: Annotated[int, typer.Option(help="alerts per day the team can work")] = 100,
        top_k: Annotated[int, typer.Option(help="k of the top-k precision metrics")] = 20,
        max_len: Annotated[int | None, typer.Option(help="transactions per sequence (K); "
                                                          "default: TrainConfig's")] = None,
        epochs: Annotated[int | None, typer.Option(help="fine-tuning epochs (early stopped); "
                                                         "default: FinetuneConfig's")] = None,
        threads: Annotated[int, typer.Option()] = 2,
        artifact_out: Annotated[Path | None, typer.Option(help="keep the trained artifact")] = None,
    ) -> None:
        """Train on [T0, T1] with labels known by T1 + delay, replay the test period in time order,
        and compare the transformer with LightGBM and rules."""
        from models.backtest import BacktestConfig, run
        from models.finetune import TrainConfig
        from txmon.mapping import parse_duration

        frame = _load(file, map_, map_file, label, label_delay)
        delay = parse_duration(label_delay)
        tc = TrainConfig(threads=threads)
        tc.max_len = max_len or tc.max_len
        tc.finetune.epochs = epochs or tc.finetune.epochs
        cfg = BacktestConfig(train_from=train_from, train_until=train_until, test_from=test_from,
                             test_until=test_until, label_delay=str(delay), daily_budget=budget,
                             top_k=top_k, artifact_dir=artifact_out, train=tc)
        try:
            scores, report = run(frame, cfg)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        scores_out.parent.mkdir(parents=True, exist_ok=True)
        scores.to_csv(scores_out, index=False)
        report_out.parent.mkdir(parents=True, exist_ok=True)
        report_out.write_text(json.dumps(report, indent=2, default=str))
        table = Table("model", "AUC-ROC", "AP", f"recall@{budget}/day", f"precision top-{top_k}",
                      f"account precision top-{top_k}")
        for name, m in report["models"].items():
            table.add_row(name, *(f"{m[k]:.4f}" for k in ("auc_roc", "average_precision",
                                                          "recall_at_budget", "precision_top_k",
                                                          "account_precision_top_k")))
        console.print(table)
        if report.get("aml"):
            console.print("AML at the rules' recall:", report["aml"])
        console.print(f"{len(scores)} scores -> {scores_out}; report -> {report_out}")
