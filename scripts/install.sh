#!/usr/bin/env bash
# Install txmon on a fresh machine: a virtualenv in .venv with the pinned dependency set
# (constraints.txt), the project itself (editable), and Apache Kafka's jars from Maven Central.
# Needs: Python 3.11+, Java 17+, Maven. Idempotent; pip's cache makes reruns fast.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
"$PY" - <<'PYCHECK' || { echo "txmon needs Python >= 3.11" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PYCHECK
for tool in java mvn; do
  command -v "$tool" >/dev/null || { echo "txmon needs $tool (Java 17+ and Maven run the Kafka broker)" >&2; exit 1; }
done

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# EXTRAS=gpu installs onnxruntime-gpu instead of the CPU build.
.venv/bin/pip install -q -c constraints.txt -e ".[${EXTRAS:-cpu},dev]"
# Resolve the broker's jars now so the first `txmon kafka up` does not wait on Maven.
.venv/bin/python -c "from txmon.broker.jars import jars_cache, resolve; from txmon.settings import BrokerSettings; print('Kafka jars:', resolve(jars_cache(), BrokerSettings().kafka_version))"
echo "txmon installed: .venv/bin/txmon --help"
