"""Every overlay builds with kustomize and validates against the pinned schemas; the KEDA
triggers and Kafka ACLs name exactly the consumer groups the services run."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import tools

ROOT = tools.ROOT
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["local", "production"]
SCHEMAS = K8S / "schemas" / "{{ .ResourceKind }}{{ .KindSuffix }}.json"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generator = _load("k8s_services", K8S / "services.py")


def build(overlay: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(tools.kustomize()), "build", str(overlay)], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict[str, Any]]]:
    return {name: build(K8S / "overlays" / name) for name in OVERLAYS}


def service_groups() -> dict[str, str]:
    """Every consumer group a service runs, with its topic, read from the services' source."""
    return {
        c.group: c.topic for s in generator.SERVICES for c in generator.service_consumers(s.name)
    }


def manifest_groups(docs: list[dict[str, Any]]) -> dict[str, str]:
    found = {}
    for doc in docs:
        if doc["kind"] == "ScaledObject":
            for t in doc["spec"]["triggers"]:
                found[t["metadata"]["consumerGroup"]] = t["metadata"]["topic"]
    return found


def mismatched_groups(docs: list[dict[str, Any]]) -> list[str]:
    real, named = service_groups(), manifest_groups(docs)
    wrong = [f"{g} ({t}) is no service's consumer" for g, t in named.items() if real.get(g) != t]
    missing = [f"{g} has no trigger" for g in real if g not in named]
    return wrong + missing


def test_generated_manifests_are_current(tmp_path: Path) -> None:
    generator.write_all(tmp_path)
    for generated in tmp_path.rglob("*.yaml"):
        committed = K8S / generated.relative_to(tmp_path)
        assert committed.read_text() == generated.read_text(), (
            f"{committed} is stale: run .venv/bin/python deploy/k8s/services.py and commit"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_pinned_schemas(overlay: str, built, tmp_path: Path) -> None:
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(yaml.safe_dump_all(built[overlay]))
    result = subprocess.run(
        [tools.kubeconform(), "-strict", "-summary", "-schema-location", SCHEMAS, rendered],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Skipped: 0" in result.stdout and "Errors: 0" in result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_consumer_group_has_exactly_one_trigger(overlay: str, built) -> None:
    assert len(service_groups()) >= 20
    assert mismatched_groups(built[overlay]) == []
    assert not [g for g in manifest_groups(built[overlay]) if "*" in g]


def test_a_misnamed_group_in_the_manifests_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("schemas"))
    scaling = copy / "overlays" / "local" / "generated" / "scaling.yaml"
    text = scaling.read_text()
    assert "invoice-builder.invoice-requests" in text
    scaling.write_text(text.replace("invoice-builder.invoice-requests", "invoice-builder.requests"))
    problems = mismatched_groups(build(copy / "overlays" / "local"))
    assert (
        "invoice-builder.requests (crm.invoice-requested.v1) is no service's consumer" in problems
    )
    assert "invoice-builder.invoice-requests has no trigger" in problems


def test_scaling_is_bounded_and_replicas_left_to_keda(built) -> None:
    for overlay, docs in built.items():
        scaled = {d["metadata"]["name"] for d in docs if d["kind"] == "ScaledObject"}
        for doc in docs:
            if doc["kind"] == "ScaledObject":
                spec = doc["spec"]
                behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
                assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
                assert spec["maxReplicaCount"] <= generator.TOPIC_PARTITIONS
                for t in spec["triggers"]:
                    m = t["metadata"]
                    assert m["bootstrapServersFromEnv"] == "KAFKA_BOOTSTRAP"
                    assert m["allowIdleConsumers"] == "false"
                    assert m["limitToPartitionsWithLag"] == "true"
                    assert m["excludePersistentLag"] == "true"
            if doc["kind"] == "Deployment" and doc["metadata"]["name"] in scaled:
                assert "replicas" not in doc["spec"], f"{overlay}: KEDA owns the replica count"


def test_pods_meet_the_restricted_pod_security_standard(built) -> None:
    for overlay, docs in built.items():
        namespaces = [d for d in docs if d["kind"] == "Namespace"]
        assert namespaces[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
            "restricted"
        )
        for doc in docs:
            if doc["kind"] not in {"Deployment", "Job"}:
                continue
            pod = doc["spec"]["template"]["spec"]
            ours = doc["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "dealbooks"
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            assert pod["automountServiceAccountToken"] is False
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"]["drop"] == ["ALL"]
                assert ":" in c["image"], f"{overlay}: {c['image']} has no tag"
                if ours:
                    assert sc["readOnlyRootFilesystem"] is True
                    assert {"name": "tmp", "mountPath": generator.SCRATCH} in c["volumeMounts"]


def test_every_service_has_a_disruption_budget_and_a_network_policy(built) -> None:
    for docs in built.values():
        kinds: dict[str, set[str]] = {}
        for doc in docs:
            kinds.setdefault(doc["kind"], set()).add(doc["metadata"]["name"])
        for s in generator.SERVICES:
            assert s.name in kinds["PodDisruptionBudget"]
            assert s.name in kinds["NetworkPolicy"]
        assert "default-deny" in kinds["NetworkPolicy"]


def test_ingress_exposes_only_the_public_services(built) -> None:
    public = {s.name for s in generator.SERVICES if s.public}
    for overlay, docs in built.items():
        (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
        backends = {
            p["backend"]["service"]["name"]
            for rule in ingress["spec"]["rules"]
            for p in rule["http"]["paths"]
        }
        allowed = public | ({"crm-sandbox"} if overlay == "local" else set())
        assert backends <= allowed
        paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
        assert not [p for p in paths if p.startswith(("/internal", "/sweeps", "/metrics"))]
    (prod,) = [d for d in built["production"] if d["kind"] == "Ingress"]
    assert "cert-manager.io/cluster-issuer" in prod["metadata"]["annotations"]
    assert prod["spec"]["tls"]


def test_production_topics_and_users(built) -> None:
    docs = built["production"]
    topics = {d["spec"]["topicName"]: d["spec"] for d in docs if d["kind"] == "KafkaTopic"}
    for topic, dlq in generator.all_topics():
        for name in (topic, dlq):
            assert topics[name]["replicas"] == 3
            assert topics[name]["config"]["min.insync.replicas"] == "2"
    users = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "KafkaUser"}
    for s in generator.SERVICES:
        if not s.kafka:
            continue
        spec = users[s.name]
        assert spec["authentication"]["type"] == "scram-sha-512"
        groups = {
            a["resource"]["name"]
            for a in spec["authorization"]["acls"]
            if a["resource"]["type"] == "group"
        }
        assert groups == {c.group for c in generator.service_consumers(s.name)}


def test_config_is_generated_and_secrets_stay_out_of_it(built) -> None:
    for docs in built.values():
        maps = [
            d
            for d in docs
            if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("dealbooks-infra")
        ]
        assert maps and maps[0]["metadata"]["name"] != "dealbooks-infra", "no content hash"
        secret_words = ("SECRET", "PASSWORD", "CREDENTIAL", "TOKEN_KEYS", "GRANT_KEYS")
        assert not [k for k in maps[0]["data"] if any(w in k for w in secret_words)]
