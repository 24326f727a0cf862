"""Apache Kafka's jars, resolved from Maven Central by the pom shipped with txmon.

Resolved once into ``<home>/kafka-<version>/libs`` and reused; nothing is built, and no jar lives in
the repository.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path


class BrokerSetupError(RuntimeError):
    """The broker cannot be installed or started; the message says what to do."""


def jars_cache() -> Path:
    """Where jars are kept: shared by every TXMON_HOME on the machine (``TXMON_JARS`` overrides)."""
    return Path(os.environ.get("TXMON_JARS", Path.home() / ".cache" / "txmon" / "jars"))


def libs_dir(home: Path, version: str) -> Path:
    return home / f"kafka-{version}" / "libs"


def resolve(home: Path, version: str, quiet: bool = True) -> Path:
    """Make sure Kafka ``version``'s runtime jars are under ``home``; returns the libs folder."""
    libs = libs_dir(home, version)
    done = libs.parent / ".resolved"
    if done.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerSetupError("Maven (mvn) is not on PATH: it resolves the Kafka jars from "
                               "Maven Central. Install Maven 3.8+ and Java 17+.")
    if shutil.which("java") is None:
        raise BrokerSetupError("java is not on PATH: Apache Kafka 4.x needs Java 17 or newer.")
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test sessions must not resolve into one folder
        if done.exists():
            return libs
        pom = resources.files("txmon.broker") / "pom.xml"
        with resources.as_file(pom) as pom_path:
            cmd = [mvn, "-B", "-f", str(pom_path), "dependency:copy-dependencies",
                   f"-Dkafka.version={version}", f"-DoutputDirectory={libs}",
                   "-DincludeScope=runtime"]
            if quiet:
                cmd.insert(1, "-q")
            proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BrokerSetupError("Maven could not resolve Apache Kafka "
                                   f"{version}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        if not any(libs.glob(f"kafka_2.13-{version}.jar")):
            raise BrokerSetupError(f"Maven finished but kafka_2.13-{version}.jar is not in {libs}")
        done.write_text(version)
    return libs
