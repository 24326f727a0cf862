"""``txmon``: the operator command line."""

from __future__ import annotations

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


if __name__ == "__main__":
    app()
