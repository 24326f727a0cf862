"""docker-compose.yml is valid against the Compose specification's JSON Schema.

No Docker engine runs here, so the deployment itself is not exercised. The schema ships inside the
``docker-compose`` 1.29.2 wheel on PyPI (``compose/config/compose_spec.json``); it is fetched once
with pip into the txmon cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def compose_schema() -> dict:
    cache = Path.home() / ".cache" / "txmon" / "compose-spec"
    target = cache / "compose_spec.json"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(cache),
                        "docker-compose==1.29.2"], check=True)
        wheel = next(cache.glob("docker_compose-1.29.2-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            target.write_bytes(z.read("compose/config/compose_spec.json"))
    return json.loads(target.read_text())


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_spec(compose_schema):
    jsonschema.validate(_compose(), compose_schema)


def test_compose_schema_rejects_a_broken_file(compose_schema):
    broken = _compose()
    broken["services"]["worker"]["depends_on"] = {"kafka": {"condition": "whenever"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema)


def test_compose_runs_every_part_and_commits_no_secret():
    services = _compose()["services"]
    assert {"kafka", "worker", "retrain-controller", "mlflow", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    env = services["worker"]["environment"]
    assert env["TXMON_SIGNING_KEY"].startswith("${"), "keys come from the environment, not the file"
    for path in ("deploy/prometheus.yml", "deploy/grafana/provisioning/dashboards/txmon.yml"):
        assert yaml.safe_load((ROOT / path).read_text())
    dashboards = list((ROOT / "deploy/grafana/dashboards").glob("*.json"))
    assert dashboards and all(json.loads(p.read_text())["panels"] for p in dashboards)
