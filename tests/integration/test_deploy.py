"""deploy/ and docs/ say only what the code does: alert rules that pass their promtool tests, a compose
file and manifests whose commands, settings, ports and files exist, metrics that exist, and API
documents equal to the ones the code generates."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from faststream.prometheus.container import MetricsContainer
from prometheus_client import CollectorRegistry

from services.cli import VERSION
from services.runtime import Runtime, create_app
from shared.asyncapi import asyncapi_document
from shared.metrics import Metrics
from shared.settings import SERVICES, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
HTTP_PORT = "8000"


def setting_names() -> set[str]:
    """Every environment variable the settings read."""
    names = {f"THIDUA_{name.upper()}" for name in Settings.model_fields}
    return names | {"KAFKA_BOOTSTRAP_SERVERS"}


def metric_names() -> set[str]:
    """Every series name thidua and FastStream's middleware expose."""
    registry = CollectorRegistry()
    Metrics(registry)
    MetricsContainer(registry, custom_label_names=[])
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        family.name + suffix for family in registry.collect() for suffix in suffixes.get(family.type, ("",))
    }


def promtool(*args: str) -> str:
    """Run promtool in deploy/prometheus; returns what it printed, failing the test if it failed."""
    found = shutil.which("promtool")
    assert found, "promtool is missing: `make test` installs Debian's prometheus package, which has it"
    done = subprocess.run([found, *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_alert_rules_are_valid_and_pass_their_tests() -> None:
    assert "SUCCESS: 9 rules found" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_every_alert_has_a_promtool_test() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())
    tested = {
        case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]
    }
    assert alerts == tested


def expressions() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    found = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "thidua.json").read_text())
    found += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return found


def test_alerts_and_the_dashboard_use_series_that_exist() -> None:
    known = metric_names()
    external = {"up", "kafka_consumergroup_lag"}
    used = {name for expr in expressions() for name in re.findall(r"\b(thidua_\w+|faststream_\w+)", expr)}
    assert used, "no series found in the rules and dashboard"
    assert sorted(used - known) == []
    assert {name for expr in expressions() for name in re.findall(r"\b(up|kafka_\w+)\{", expr)} <= external


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_each_service_with_settings_that_exist() -> None:
    services = compose()["services"]
    served = {}
    for name, service in services.items():
        command = service.get("command")
        if service.get("image") == "thidua:latest" and command[0] == "web":
            assert command[1:] == ["--api", "http://gateway:8080"], name  # the pages, through the gateway
            assert (
                "location / { proxy_pass http://web:8000; }"
                in (DEPLOY / "gateway" / "nginx.conf").read_text()
            )
        elif service.get("image") == "thidua:latest":
            assert command[0] == "serve" and command[1] in SERVICES, name
            served[command[1]] = name
            environment = service["environment"]
            assert sorted(set(environment) - setting_names()) == []
            assert environment["THIDUA_HTTP_PORT"] == HTTP_PORT
            assert "{service}" in environment["THIDUA_DATABASE_URL"]
            assert service["stop_grace_period"]
    assert sorted(served) == sorted(SERVICES)
    for name in ("kafka", "postgres", "kafka-exporter", "prometheus", "grafana", "gateway"):
        assert name in services, name
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    init = (DEPLOY / "postgres" / "init.sql").read_text()
    for service in SERVICES:
        assert f"CREATE DATABASE thidua_{service} " in init


def test_compose_mounts_files_that_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"


def test_the_gateway_and_prometheus_reach_every_service_on_its_port() -> None:
    nginx = (DEPLOY / "gateway" / "nginx.conf").read_text()
    for service in SERVICES:
        assert f"location /{service}/ {{ proxy_pass http://{service}:{HTTP_PORT}; }}" in nginx
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    thidua = next(job for job in scrape["scrape_configs"] if job["job_name"] == "thidua")
    targets = {target for group in thidua["static_configs"] for target in group["targets"]}
    assert targets == {f"{service}:{HTTP_PORT}" for service in SERVICES}
    hosts = {
        target.split(":")[0]
        for job in scrape["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    } - {"localhost"}
    assert hosts <= set(compose()["services"])


def test_kubernetes_manifests_run_each_service_with_settings_that_exist() -> None:
    documents = [
        doc
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    deployments = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "Deployment"}
    assert sorted(deployments) == sorted(SERVICES)
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["serve", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    keys = set()
    for doc in documents:
        if doc["kind"] in ("ConfigMap", "Secret"):
            keys.update(doc.get("data", {}) or {})
            keys.update(doc.get("stringData", {}) or {})
    assert sorted(keys - setting_names()) == []
    ingress = next(doc for doc in documents if doc["kind"] == "Ingress")
    paths = {p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert paths == {f"/{service}" for service in SERVICES}
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (DEPLOY / "k8s" / resource).exists()


@pytest.fixture
def runtime_for_documents(tmp_path: Path) -> Runtime:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/{{service}}.db", _env_file=None)  # type: ignore[call-arg]
    return Runtime(settings)


def test_the_committed_asyncapi_document_is_the_one_the_code_generates(
    runtime_for_documents: Runtime,
) -> None:
    generated = asyncapi_document(
        runtime_for_documents.definitions, runtime_for_documents.handlers, "thidua", VERSION
    )
    committed = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    assert committed == generated, (
        "docs/asyncapi.json is stale: run `thidua asyncapi --output docs/asyncapi.json`"
    )
    assert set(committed["channels"]["reports"]["messages"]) == {
        "ReportSubmitted",
        "ReportConsolidated",
        "ReportOverdue",
        "ReportApproved",
        "ReportReturned",
        "ReportAccepted",
    }
    receive = committed["operations"]["reporting.receive.reports"]
    assert [m["$ref"].rsplit("/", 1)[-1] for m in receive["messages"]] == ["ReportSubmitted"]


def test_the_committed_openapi_document_is_the_one_the_code_serves(runtime_for_documents: Runtime) -> None:
    generated = create_app(runtime_for_documents, manage_lifecycle=False).openapi()
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(generated)), "docs/openapi.json is stale: run `thidua openapi`"
    for service in SERVICES:
        assert any(path.startswith(f"/{service}/") for path in committed["paths"]), service


def test_every_setting_the_documents_name_exists() -> None:
    documents = [ROOT / "README.md", DEPLOY / "TOPOLOGIES.md", ROOT / "docker-compose.yml"]
    named = {
        name for path in documents for name in re.findall(r"\bTHIDUA_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())
    }
    assert named, "no settings found in the documents"
    assert sorted(named - setting_names() - {"THIDUA_API_URL"}) == []


def test_mirrormaker_mirrors_what_each_stack_consumes_and_nothing_else() -> None:
    properties = dict(
        line.split("=", 1)
        for line in (DEPLOY / "mirrormaker" / "mm2.properties").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    )
    config = {key.strip(): value.strip() for key, value in properties.items()}
    assert config["replication.policy.class"].endswith("IdentityReplicationPolicy")
    up, down = re.compile(config["hn->vn.topics"]), re.compile(config["vn->hn.topics"])
    for stream in ("org", "plans", "reports", "awards"):
        assert up.fullmatch(f"thidua.hn.{stream}"), stream
        assert not down.fullmatch(f"thidua.hn.{stream}")
    for stream in ("org", "plans", "awards"):
        assert down.fullmatch(f"thidua.vn.{stream}"), stream
    for never in (
        "thidua.hn.notifications",
        "thidua.hn.reports.dlq",
        "thidua.vn.reports",
        "thidua.vn.plans.dlq",
    ):
        assert not up.fullmatch(never) and not down.fullmatch(never), never
