"""The interface documents of every service, as its code generates them: the OpenAPI document
of its HTTP API (docs/openapi/<service>.json) and the AsyncAPI document of the events it
receives and publishes, dead letters included (docs/asyncapi/<service>.json).

`python docs/interfaces.py write` regenerates them (`make schemas`); `check` fails when a
committed document differs from what the code generates. Each document is read from the
service's own app, built by its `build_app` with fixed settings whose Kafka and MongoDB
addresses are never contacted, and asked over ASGI for what it serves at /docs/openapi.json and
/docs/asyncapi.json.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

DOCS = Path(__file__).resolve().parent
OPENAPI_DIR = DOCS / "openapi"
ASYNCAPI_DIR = DOCS / "asyncapi"


def settings(**extra: Any) -> dict[str, Any]:
    """Fixed settings every service accepts; building the app contacts none of the addresses,
    and the documents name only the Kafka address (as the AsyncAPI server)."""
    return {
        "kafka_bootstrap": "127.0.0.1:9092",
        "topic_prefix": "",
        "mongodb_uri": "mongodb://127.0.0.1:27017/?serverSelectionTimeoutMS=200",
        "connector_auth_url": "http://127.0.0.1:8001",
        "connector_auth_credential": "documents-connector-auth-credential",
        "service_credentials": "documents-service-credential",
        "operator_credentials": "documents-operator-credential",
        "grant_keys": "docs:documents-grant-key-0123456789",
        "crm_client_secret": "documents-crm-client-secret",
        **extra,
    }


def _connector_auth() -> Any:
    from connector_auth.app import build_app
    from connector_auth.settings import ConnectorAuthSettings

    key = base64.urlsafe_b64encode(b"documents-token-key-32-bytes-ok!").decode().rstrip("=")
    return build_app(
        ConnectorAuthSettings(
            **settings(
                state_secret="documents-oauth-state-secret",  # noqa: S106  (a placeholder)
                session_keys="s1:documents-session-key-0123456789",
                token_keys=f"k1:{key}",
            )
        )
    )


def _webhook_gateway() -> Any:
    from webhook_gateway.app import build_app
    from webhook_gateway.settings import WebhookGatewaySettings

    verifier = "documents-verifier"  # a placeholder: building the app checks one is set
    return build_app(WebhookGatewaySettings(**settings(qbo_verifier_token=verifier)))


def _invoice_builder() -> Any:
    from invoice_builder.app import build_app
    from invoice_builder.settings import InvoiceBuilderSettings

    return build_app(InvoiceBuilderSettings(**settings()))


def _status_tracker() -> Any:
    from status_tracker.app import build_app
    from status_tracker.settings import StatusTrackerSettings

    return build_app(StatusTrackerSettings(**settings()))


def _reminders() -> Any:
    from reminders.app import build_app
    from reminders.settings import RemindersSettings

    return build_app(RemindersSettings(**settings()))


def _contact_sync() -> Any:
    from contact_sync.app import Settings, build_app

    return build_app(Settings(**settings()))


def _product_sync() -> Any:
    from product_sync.app import Settings, build_app

    return build_app(Settings(**settings()))


def _mapping_registry() -> Any:
    from mapping_registry.app import Settings, build_app

    return build_app(Settings(**settings()))


def _console() -> Any:
    from console.app import build_app
    from console.settings import ConsoleSettings

    return build_app(ConsoleSettings(**settings()))


# Every service, and how its app is built.
SERVICES: dict[str, Callable[[], Any]] = {
    "connector-auth": _connector_auth,
    "webhook-gateway": _webhook_gateway,
    "invoice-builder": _invoice_builder,
    "status-tracker": _status_tracker,
    "reminders": _reminders,
    "contact-sync": _contact_sync,
    "product-sync": _product_sync,
    "mapping-registry": _mapping_registry,
    "console": _console,
}


def render(document: dict[str, Any]) -> str:
    """The committed text of a document: sorted keys, two-space indent, final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


async def served(app: Any, path: str) -> dict[str, Any] | None:
    """What `app` answers at `path` (None: it serves nothing there)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://documents") as http:
        answer = await http.get(path)
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    document: dict[str, Any] = answer.json()
    return document


def documents(service: str, app: Any | None = None) -> dict[Path, str]:
    """The documents of `service` and where they are committed."""
    app = app if app is not None else SERVICES[service]()

    async def read() -> dict[Path, str]:
        found: dict[Path, str] = {}
        openapi = await served(app, "/docs/openapi.json")
        if openapi is None:
            raise LookupError(f"{service} serves no /docs/openapi.json")
        found[OPENAPI_DIR / f"{service}.json"] = render(openapi)
        asyncapi = await served(app, "/docs/asyncapi.json")
        if asyncapi is not None:
            found[ASYNCAPI_DIR / f"{service}.json"] = render(asyncapi)
        return found

    return asyncio.run(read())


def every_document() -> dict[Path, str]:
    """The documents of every service."""
    found: dict[Path, str] = {}
    for service in SERVICES:
        found.update(documents(service))
    return found


def differences(generated: dict[Path, str]) -> list[str]:
    """Where the committed documents differ from `generated` (missing, stale or orphaned)."""
    problems = []
    for path, text in generated.items():
        if not path.exists():
            problems.append(f"{path.relative_to(DOCS)}: not committed")
        elif path.read_text("utf-8") != text:
            problems.append(f"{path.relative_to(DOCS)}: out of date")
    for directory in (OPENAPI_DIR, ASYNCAPI_DIR):
        for path in sorted(directory.glob("*.json")):
            if path not in generated:
                problems.append(f"{path.relative_to(DOCS)}: no service generates it")
    return problems


def write() -> list[str]:
    """Regenerate every document; returns what changed."""
    generated = every_document()
    changed = differences(generated)
    for directory in (OPENAPI_DIR, ASYNCAPI_DIR):
        directory.mkdir(parents=True, exist_ok=True)
        for path in directory.glob("*.json"):
            if path not in generated:
                path.unlink()
    for path, text in generated.items():
        if not path.exists() or path.read_text("utf-8") != text:
            path.write_text(text, "utf-8")
    return changed


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    if command == "write":
        for line in write():
            print(f"updated {line}")
        return 0
    if command == "check":
        problems = differences(every_document())
        for line in problems:
            print(line)
        return 1 if problems else 0
    print("usage: python docs/interfaces.py write|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
