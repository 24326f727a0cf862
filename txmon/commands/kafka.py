"""Commands: ``txmon kafka up | down | status | logs | topics | smoke`` — the Kafka broker."""

from __future__ import annotations

import time
from collections import deque
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from txmon.settings import Settings, get_settings

console = Console()
kafka_app = typer.Typer(help="Run a real Apache Kafka 4.x broker (KRaft) on this machine.",
                        no_args_is_help=True)

Brokers = Annotated[int | None, typer.Option("--brokers", help="nodes: 1, or 3 for replication tests")]
Port = Annotated[int | None, typer.Option("--port", help="first broker port (default 9092)")]


def _settings(port: int | None, brokers: int | None, secure: bool | None = None) -> Settings:
    s = get_settings()
    update = {k: v for k, v in {"port": port, "brokers": brokers, "secure": secure}.items()
              if v is not None}
    if update:
        s = s.model_copy(update={"broker": s.broker.model_copy(update=update)})
    return s


def _cluster(s: Settings):
    from txmon.broker import cluster_for

    return cluster_for(s)


def _client_settings(s: Settings, bootstrap: str) -> Settings:
    return s.model_copy(update={"kafka": s.kafka.model_copy(update={"bootstrap_servers": bootstrap})})


@kafka_app.command()
def up(port: Port = None, brokers: Brokers = None,
       partitions: Annotated[int | None, typer.Option(help="partitions per topic")] = None,
       topics: Annotated[bool, typer.Option(help="create txmon's topics")] = True,
       secure: Annotated[bool | None, typer.Option(
           "--secure", help="also listen with SASL_SSL (SCRAM) on port+200, local CA")] = None) -> None:
    """Start the broker (formats storage on first start) and create txmon's topics. Idempotent."""
    from txmon.broker import BrokerSetupError
    from txmon.broker.topics import ensure_topics

    s = _settings(port, brokers, secure)
    cluster = _cluster(s)
    t0 = time.monotonic()
    try:
        with console.status(f"Starting Apache Kafka {cluster.version} "
                            f"({cluster.plan.brokers} node(s), KRaft)…"):
            cluster.up()
            created = ensure_topics(_client_settings(s, cluster.bootstrap_servers),
                                    partitions) if topics else []
    except BrokerSetupError as exc:
        console.print(f"[red]Kafka did not start:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"[green]Kafka {cluster.version} is up[/green] at {cluster.bootstrap_servers} "
                  f"in {time.monotonic() - t0:.1f}s; data in {cluster.root}")
    if created:
        console.print(f"created topics: {', '.join(created)}")
    if cluster.plan.secure:
        sec = cluster.security()
        console.print(f"SASL_SSL listener: {cluster.plan.secure_bootstrap_servers} "
                      f"(SCRAM-SHA-512, user {sec.username!r}; CA {sec.ca_pem}; password in "
                      f"{sec.ca_pem.parent / 'scram.json'}, readable by you only)")


@kafka_app.command()
def down(port: Port = None, brokers: Brokers = None) -> None:
    """Stop the broker cleanly (SIGTERM, then SIGKILL after 30 s). Data is kept."""
    cluster = _cluster(_settings(port, brokers))
    was = [st for st in cluster.status() if st.running]
    cluster.down()
    console.print("Kafka stopped." if was else "Kafka was not running.")


@kafka_app.command()
def status(port: Port = None, brokers: Brokers = None) -> None:
    """Is the broker running, which version, which topics. Exits 1 when it is not running."""
    s = _settings(port, brokers)
    cluster = _cluster(s)
    nodes = cluster.status()
    table = Table(title=f"Apache Kafka {cluster.version} (KRaft) — {cluster.root}")
    for col in ("node", "address", "pid", "state"):
        table.add_column(col)
    for st in nodes:
        table.add_row(str(st.node_id), st.address, str(st.pid or "-"),
                      "[green]running[/green]" if st.running else "[red]stopped[/red]")
    console.print(table)
    if not all(st.running for st in nodes):
        console.print("Kafka is not running: start it with [bold]txmon kafka up[/bold]")
        raise typer.Exit(1)
    from txmon.broker.topics import list_topics

    topics = list_topics(_client_settings(s, cluster.bootstrap_servers))
    console.print("topics: " + (", ".join(f"{t} ({n})" for t, n in sorted(topics.items()))
                                or "none"))


@kafka_app.command()
def logs(port: Port = None, brokers: Brokers = None,
         lines: Annotated[int, typer.Option("-n", help="lines per node")] = 40) -> None:
    """The last lines of each broker's server.log."""
    cluster = _cluster(_settings(port, brokers))
    for node in cluster.plan.nodes:
        path = cluster.log_file(node)
        console.rule(f"node {node.node_id}: {path}")
        if not path.exists():
            console.print("(no log yet)")
            continue
        with open(path, errors="replace") as f:
            for line in deque(f, maxlen=lines):
                typer.echo(line.rstrip())


@kafka_app.command()
def topics(partitions: Annotated[int | None, typer.Option(help="partitions per topic")] = None) -> None:
    """Create txmon's topics on the cluster in TXMON_KAFKA__BOOTSTRAP_SERVERS (yours or ours)."""
    from txmon.broker.topics import ensure_topics

    created = ensure_topics(get_settings(), partitions)
    console.print(f"created: {', '.join(created)}" if created else "all txmon topics exist")


@kafka_app.command()
def smoke(count: Annotated[int, typer.Option(help="transactions to send")] = 1000) -> None:
    """Produce transactions with kafka-python, read them back, check none is lost."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from kafka import KafkaConsumer, KafkaProducer

    from txmon.contracts import Transaction, decode

    s = get_settings()
    topic = f"{s.topics.prefix}smoke.{uuid.uuid4().hex[:8]}"
    t0 = datetime.now(UTC)
    conf = s.kafka.kafka_python_config()
    producer = KafkaProducer(**conf, acks="all", linger_ms=5)
    for i in range(count):
        tx = Transaction(tx_id=f"smoke-{i}", event_time=t0 + timedelta(milliseconds=i),
                         account_id=f"a{i % 10}", counterparty_id="m1", amount="1.00")
        producer.send(topic, key=tx.account_id.encode(), value=tx.to_bytes())
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(topic, **conf, auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000)
    seen = {decode(Transaction, m.value).tx_id for m in consumer}
    consumer.close()
    from txmon.broker.topics import admin_client

    admin = admin_client(s)
    admin.delete_topics([topic])
    admin.close()
    if len(seen) != count:
        console.print(f"[red]smoke check failed:[/red] sent {count}, read back {len(seen)}")
        raise typer.Exit(1)
    console.print(f"[green]smoke check passed:[/green] {count} transactions produced and consumed")


def register(app: typer.Typer) -> None:
    app.add_typer(kafka_app, name="kafka")
