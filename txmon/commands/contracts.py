"""Commands: ``txmon schemas`` — JSON Schema of every topic contract, for publishers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def schemas(out: Annotated[Path, typer.Option(help="folder to write into")] = Path(
            "docs/schemas")) -> None:
        """Write docs/schemas/<topic>.v1.json for every contract in txmon.contracts."""
        from txmon.contracts import SCHEMA_VERSION, json_schemas

        out.mkdir(parents=True, exist_ok=True)
        for topic, schema in json_schemas().items():
            path = out / f"{topic}.v{SCHEMA_VERSION}.json"
            path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
            typer.echo(str(path))
