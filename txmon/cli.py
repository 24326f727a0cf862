"""``txmon``: the operator command line."""

from __future__ import annotations

import sys

import typer

from txmon.commands import contracts, data, demo, drift, governance, kafka, model, stream

app = typer.Typer(
    name="txmon",
    help="Streaming transaction monitoring for fraud and AML teams.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

for area in (kafka, contracts, data, model, stream, drift, governance, demo):
    area.register(app)


def _kafka_unreachable(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"NoBrokersAvailable", "KafkaConnectionError", "KafkaTimeoutError"}) or (
        "NodeNotReady" in names)


def main() -> None:
    """Entry point: turns an unreachable broker into advice instead of a traceback."""
    try:
        app(standalone_mode=True)
    except Exception as exc:
        if not _kafka_unreachable(exc):
            raise
        from txmon.settings import get_settings

        servers = get_settings().kafka.bootstrap_servers
        typer.echo(f"Kafka at {servers} is not reachable ({type(exc).__name__}: {exc}).\n"
                   "Start the managed broker with `txmon kafka up`, or point "
                   "TXMON_KAFKA__BOOTSTRAP_SERVERS at your cluster.", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
