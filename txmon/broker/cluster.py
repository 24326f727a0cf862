"""A real Apache Kafka cluster (KRaft, no ZooKeeper) run as local java processes.

``up`` resolves the jars, formats each node's storage on first start, starts ``kafka.Kafka`` and
returns once the cluster answers a metadata request; it is idempotent. ``down`` stops the nodes
with SIGTERM (a controlled shutdown) and SIGKILL only after a grace period. Data stays in
``<home>/cluster`` across down/up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from txmon.broker import security
from txmon.broker.config import ClusterPlan, Node, render
from txmon.broker.jars import BrokerSetupError, jars_cache, resolve
from txmon.broker.security import SecurityFiles


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    address: str
    pid: int | None
    running: bool


class Cluster:
    """The managed cluster under ``home`` (one folder per node, a pid file each)."""

    def __init__(self, home: Path, plan: ClusterPlan, version: str = "4.1.1", heap: str = "1g"):
        self.home = Path(home)
        self.plan = plan
        self.version = version
        self.heap = heap
        self.root = self.home / "cluster"

    # -- layout -----------------------------------------------------------------------------
    def node_dir(self, node: Node) -> Path:
        return self.root / f"node-{node.node_id}"

    def _pid_file(self, node: Node) -> Path:
        return self.node_dir(node) / "kafka.pid"

    def log_file(self, node: Node) -> Path:
        return self.node_dir(node) / "logs" / "server.log"

    @property
    def bootstrap_servers(self) -> str:
        return self.plan.bootstrap_servers

    # -- processes ---------------------------------------------------------------------------
    def _pid(self, node: Node) -> int | None:
        try:
            pid = int(self._pid_file(node).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_kafka(pid) else None

    def status(self) -> list[NodeStatus]:
        out = []
        for node in self.plan.nodes:
            pid = self._pid(node)
            out.append(NodeStatus(node.node_id, f"{node.host}:{node.broker_port}", pid,
                                  pid is not None))
        return out

    def running(self) -> bool:
        return all(s.running for s in self.status())

    def up(self, timeout: float = 120.0) -> None:
        libs = resolve(jars_cache(), self.version)
        self._check_layout()
        cluster_id = self._cluster_id(libs)
        started = []
        for node in self.plan.nodes:
            if self._pid(node) is not None:
                continue
            self._format(node, libs, cluster_id)
            started.append(self._start(node, libs))
        deadline = time.monotonic() + timeout
        for node in self.plan.nodes:
            self._wait_port(node, deadline)
        wait_ready(self.bootstrap_servers, expected_brokers=self.plan.brokers,
                   timeout=max(1.0, deadline - time.monotonic()))
        if self.plan.secure:
            self._ensure_scram_user()

    def security(self) -> SecurityFiles:
        """The CA, server certificate and SCRAM credential of the SASL_SSL listener."""
        return security.ensure(self.root / "security", self.plan.host)

    def _ensure_scram_user(self) -> None:
        # Through the admin API on the loopback listener, so the password never sits in a
        # command line (``kafka-storage format --add-scram`` would put it in ``ps``).
        from kafka import KafkaAdminClient
        from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

        sec = self.security()
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers.split(","),
                                 client_id="txmon-setup")
        try:
            for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
                # One credential per request: Kafka refuses two alterations of one user at once.
                errors = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
                    sec.username, mechanism, sec.password)])
                failed = {u: e for u, e in (errors or {}).items() if e}
                if failed:
                    raise BrokerSetupError(f"could not create the SCRAM user: {failed}")
        finally:
            admin.close()

    def down(self, grace: float = 30.0) -> None:
        for node in reversed(self.plan.nodes):
            pid = self._pid(node)
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for node in self.plan.nodes:
            pid = self._pid(node)
            while pid is not None and _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGKILL)
            self._pid_file(node).unlink(missing_ok=True)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: for fault-injection tests."""
        node = self.plan.nodes[node_id - 1]
        pid = self._pid(node)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
            self._pid_file(node).unlink(missing_ok=True)

    def start_node(self, node_id: int, timeout: float = 60.0) -> None:
        node = self.plan.nodes[node_id - 1]
        if self._pid(node) is None:
            self._start(node, resolve(jars_cache(), self.version))
        self._wait_port(node, time.monotonic() + timeout)

    # -- steps ---------------------------------------------------------------------------------
    def _check_layout(self) -> None:
        """Refuse to start a data folder formatted for a different cluster shape."""
        marker = self.root / "plan"
        shape = f"{self.plan.host}:{self.plan.port} x{self.plan.brokers}"
        if marker.exists() and marker.read_text() != shape:
            raise BrokerSetupError(f"{self.root} holds a cluster of shape {marker.read_text()!r}, "
                                   f"not {shape!r}: use another TXMON_HOME or remove that folder")
        self.root.mkdir(parents=True, exist_ok=True)
        marker.write_text(shape)

    def _cluster_id(self, libs: Path) -> str:
        path = self.root / "cluster.id"
        if not path.exists():
            # KRaft wants a base64 UUID; any random 16 bytes in Kafka's encoding will do.
            out = _java(libs, ["kafka.tools.StorageTool", "random-uuid"])
            path.write_text(out.strip().splitlines()[-1] if out.strip() else _b64uuid())
        return path.read_text().strip()

    def _format(self, node: Node, libs: Path, cluster_id: str) -> None:
        d = self.node_dir(node)
        data = d / "data"
        (d / "logs").mkdir(parents=True, exist_ok=True)
        tls = None
        if self.plan.secure:
            sec = self.security()
            tls = (str(sec.server_pem), str(sec.ca_pem))
        (d / "server.properties").write_text(render(self.plan, node, str(data), tls))
        if (data / "meta.properties").exists():
            return
        _java(libs, ["kafka.tools.StorageTool", "format", "-t", cluster_id,
                     "-c", str(d / "server.properties"), "--ignore-formatted"])

    def _start(self, node: Node, libs: Path) -> int:
        d = self.node_dir(node)
        log4j = resources.files("txmon.broker") / "log4j2.yaml"
        with resources.as_file(log4j) as log4j_path:
            cmd = ["java", f"-Xmx{self.heap}", f"-Xms{min_heap(self.heap)}", "-XX:+UseG1GC",
                   "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
                   f"-Dlog4j2.configurationFile={log4j_path}",
                   f"-Dkafka.logs.dir={d / 'logs'}",
                   "-cp", f"{libs}/*", "kafka.Kafka", str(d / "server.properties")]
            with open(d / "logs" / "stdout.log", "ab") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, cwd=d)
        self._pid_file(node).write_text(str(proc.pid))
        return proc.pid

    def _wait_port(self, node: Node, deadline: float) -> None:
        try:
            pid = int(self._pid_file(node).read_text())
        except (FileNotFoundError, ValueError):
            pid = -1
        while time.monotonic() < deadline:
            # Liveness, not _pid(): right after exec, /proc/<pid>/cmdline can still be empty.
            if pid < 0 or not _alive(pid):
                logs = self.node_dir(node) / "logs"
                raise BrokerSetupError(f"broker {node.node_id} exited while starting; see {logs}")
            try:
                with socket.create_connection((node.host, node.broker_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise BrokerSetupError(f"broker {node.node_id} did not open {node.host}:{node.broker_port}")


def min_heap(heap: str) -> str:
    return "256m" if heap.lower().endswith("g") or int(heap.rstrip("mM") or 0) > 256 else heap


def wait_ready(bootstrap_servers: str, expected_brokers: int = 1, timeout: float = 60.0) -> int:
    """Block until the cluster answers a metadata request listing every broker; returns the count."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","),
                                     request_timeout_ms=5000, client_id="txmon-ready")
            try:
                brokers = len(admin.describe_cluster()["brokers"])
            finally:
                admin.close()
            if brokers >= expected_brokers:
                return brokers
        except (KafkaError, OSError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    raise BrokerSetupError(f"Kafka at {bootstrap_servers} did not answer a metadata request "
                           f"within {timeout:.0f}s ({last})")


def _java(libs: Path, args: list[str]) -> str:
    proc = subprocess.run(["java", "-Xmx256m", "-cp", f"{libs}/*", *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stdout[-1500:] + proc.stderr[-1500:]
        raise BrokerSetupError(f"{' '.join(args[:2])} failed: {tail}")
    return proc.stdout


def _b64uuid() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists"; reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return False


def _is_kafka(pid: int) -> bool:
    """A pid file can outlive its process and the pid be reused: check it is still kafka.Kafka."""
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline
