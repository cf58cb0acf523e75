"""The deployment descriptions name every service the same way and parse."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S_BASE = ROOT / "deploy" / "k8s" / "base"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_services", ROOT / "deploy/k8s/services.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _declared_services() -> list[str]:
    return [row[0] for row in _generator().SERVICES]


def test_every_service_package_is_deployed_in_k8s_and_compose() -> None:
    declared = set(_declared_services())
    present = {p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists()}
    assert present <= declared, f"services without a k8s entry: {present - declared}"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert declared <= set(compose["services"]), "docker-compose.yml misses a service"
    kustomization = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())
    assert {f"{name}.yaml" for name in declared} <= set(kustomization["resources"])


def test_service_packages_follow_the_image_naming_rule() -> None:
    # The Dockerfile installs the package named like the directory and runs its snake-case module.
    for path in (ROOT / "services").iterdir():
        pyproject = path / "pyproject.toml"
        if not pyproject.exists():
            continue
        name = tomllib.loads(pyproject.read_text())["project"]["name"]
        assert name == path.name
        module = path.name.replace("-", "_")
        assert (path / "src" / module / "__main__.py").exists(), f"{module} has no __main__"


def test_k8s_manifests_parse_and_probe_health() -> None:
    for manifest in K8S_BASE.glob("*.yaml"):
        docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
        for doc in docs:
            if doc["kind"] != "Deployment":
                continue
            container = doc["spec"]["template"]["spec"]["containers"][0]
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_generated_k8s_base_is_up_to_date(tmp_path: Path) -> None:
    _generator().write_base(tmp_path)
    for generated in tmp_path.glob("*.yaml"):
        committed = K8S_BASE / generated.name
        assert committed.read_text() == generated.read_text(), (
            f"{committed} is stale: run python deploy/k8s/services.py and commit the result"
        )
