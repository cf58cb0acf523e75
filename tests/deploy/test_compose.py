"""docker-compose.yml is valid for a real `docker compose` and comes up usefully: sandboxes
listening in their containers and seeded, QuickBooks webhooks reaching the gateway, a
healthcheck on every long-running service, OAuth URLs a browser on the host can open."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import tools

COMPOSE_FILE = tools.ROOT / "docker-compose.yml"
ONE_SHOT = {"qbo-webhooks"}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The file as `docker compose config` resolves it (which checks it against the Compose
    specification's schema first)."""
    out = subprocess.run(
        [tools.docker_compose(), "-f", COMPOSE_FILE, "config", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def test_an_invalid_file_is_refused(tmp_path: Path) -> None:
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["kafka"]["healthcheck"]["retries"] = "many"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [tools.docker_compose(), "-f", path, "config", "-q"], capture_output=True, text=True
    )
    assert result.returncode != 0


def test_every_long_running_service_has_a_healthcheck(config) -> None:
    for name, svc in config["services"].items():
        if name not in ONE_SHOT:
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_the_crm_sandbox_listens_in_its_container_and_is_seeded(config) -> None:
    crm = config["services"]["crm-sandbox"]
    assert crm["environment"]["CRM_SANDBOX_ALLOW_PUBLIC"] == "1"
    assert crm["environment"]["CRM_SANDBOX_HOST"] == "0.0.0.0"
    seed_path = crm["environment"]["CRM_SANDBOX_SEED"]
    assert [c for c in crm["configs"] if c["target"] == seed_path]
    seed = json.loads(config["configs"]["crm-seed"]["content"])
    assert seed["app"]["targetUrl"] == "http://webhook-gateway:8000/webhooks/crm"
    assert seed["portals"]
    auth = config["services"]["connector-auth"]["environment"]
    assert auth["CONNECTOR_AUTH_CRM_REDIRECT_URI"] in seed["app"]["redirectUrls"]
    assert seed["app"]["clientSecret"] == auth["CRM_CLIENT_SECRET"]


def test_quickbooks_is_seeded_and_its_webhooks_reach_the_gateway(config) -> None:
    qbo = config["services"]["qbo-sandbox"]
    assert qbo["command"][qbo["command"].index("--seed") + 1] == "demo"
    register = " ".join(config["services"]["qbo-webhooks"]["command"])
    assert "http://webhook-gateway:8000/webhooks/quickbooks" in register
    token = config["services"]["webhook-gateway"]["environment"][
        "WEBHOOK_GATEWAY_QBO_VERIFIER_TOKEN"
    ]
    assert token in register


def _published(svc: dict[str, Any]) -> set[str]:
    return {f"{p['host_ip']}:{p['published']}" for p in svc.get("ports", [])}


def test_browser_urls_resolve_from_the_host(config) -> None:
    services = config["services"]
    auth = services["connector-auth"]["environment"]
    browser_urls = [
        auth["CONNECTOR_AUTH_REDIRECT_URI"],
        auth["CONNECTOR_AUTH_CRM_REDIRECT_URI"],
        auth["CONNECTOR_AUTH_CRM_OAUTH_URL"],
        auth["CONNECTOR_AUTH_QBO_OAUTH_BASE_URL"],
        auth["CONNECTOR_AUTH_CONSOLE_URL"],
        services["console"]["environment"]["CONSOLE_PUBLIC_BASE_URL"],
    ]
    published = set().union(*(_published(s) for s in services.values()))
    for url in browser_urls:
        host_port = url.split("//")[1].split("/")[0]
        host, port = host_port.rsplit(":", 1)
        assert host == "127.0.0.1" or host.endswith(".localhost"), url
        assert f"127.0.0.1:{port}" in published, f"{url}: port not published on the host"
    # The QBO OAuth URL is also called from inside the network: the same name must work there.
    qbo = services["qbo-sandbox"]
    aliases = qbo["networks"]["default"]["aliases"]
    assert auth["CONNECTOR_AUTH_QBO_OAUTH_BASE_URL"].split("//")[1].split(":")[0] in aliases
