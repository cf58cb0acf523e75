"""The interface documents an integrator reads (docs/openapi, docs/asyncapi) are what the code
generates, and they leave nothing out: every HTTP route of every service with who may call it,
every event each service receives with its payload's schema and its dead letters, and every
event each service publishes, checked against the payloads its source builds."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from dealbooks_contracts import REGISTRY, dlq_topic
from dealbooks_kit import Access, ServiceApp

ROOT = Path(__file__).resolve().parents[2]
SCHEMES = {
    Access.PORTAL: "portalGrant",
    Access.OPERATOR: "operatorBearer",
    Access.SERVICE: "serviceBearer",
    Access.CRM_SIGNED: "crmSignature",
    Access.SESSION: "session",
}
PAYLOADS = {spec.model.__name__: spec for spec in REGISTRY.specs()}
# Where each service's own code lives (the sync services publish through their kinds'
# outcomes, named in their packages).
PACKAGES = {
    "connector-auth": "connector_auth",
    "webhook-gateway": "webhook_gateway",
    "invoice-builder": "invoice_builder",
    "status-tracker": "status_tracker",
    "reminders": "reminders",
    "contact-sync": "contact_sync",
    "product-sync": "product_sync",
    "mapping-registry": "mapping_registry",
    "console": "console",
}


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dealbooks_interfaces", ROOT / "docs/interfaces.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


interfaces = _load_generator()
every_service = pytest.mark.parametrize("service", list(interfaces.SERVICES))
event_services = pytest.mark.parametrize(
    "service", [s for s in interfaces.SERVICES if s != "console"]
)


@cache
def _built(service: str) -> Any:
    return interfaces.SERVICES[service]()


@cache
def _documents(service: str) -> dict[str, dict[str, Any]]:
    found = interfaces.documents(service, _built(service))
    return {path.parent.name: json.loads(text) for path, text in found.items()}


def test_the_service_list_is_every_service_directory() -> None:
    on_disk = {p.name for p in (ROOT / "services").iterdir() if (p / "src").is_dir()}
    assert set(interfaces.SERVICES) == on_disk == set(PACKAGES)


@every_service
def test_committed_documents_are_what_the_code_generates(service: str) -> None:
    generated = interfaces.documents(service, _built(service))
    problems = [p for p in interfaces.differences(generated) if service in p.split("/")[-1]]
    stale = [p for p in problems if "no service generates it" not in p]
    assert not stale, f"run `make schemas`: {stale}"


def test_no_committed_document_is_left_without_a_service() -> None:
    committed = {p.stem for d in ("openapi", "asyncapi") for p in (ROOT / "docs" / d).glob("*")}
    assert committed <= set(interfaces.SERVICES)


# ---- OpenAPI: every route, with who may call it


def _routes(service: str) -> list[tuple[str, str, frozenset[Access]]]:
    app = _built(service)
    api = app._api if isinstance(app, ServiceApp) else app
    while not hasattr(api, "routes") and hasattr(api, "app"):  # under an ASGI middleware
        api = api.app
    found = [
        (r.path, method, frozenset(r.access))
        for r in api.routes
        for method in sorted(set(r.methods or ()) - {"HEAD"})
    ]
    if isinstance(app, ServiceApp):
        found += [(path, "GET", frozenset({Access.PUBLIC})) for path, _ in app.routes]
    return found


@every_service
def test_every_route_is_in_the_openapi_document_with_who_may_call_it(service: str) -> None:
    document = _documents(service)["openapi"]
    routes = _routes(service)
    assert routes
    for path, method, access in routes:
        operation = document["paths"].get(path, {}).get(method.lower())
        assert operation is not None, f"{service}: {method} {path} is not documented"
        if Access.PUBLIC in access:
            assert operation["security"] == [], f"{service}: {method} {path}"
            assert operation["x-dealbooks-public"], f"{service}: {method} {path} says not why"
        else:
            schemes = {name for option in operation["security"] for name in option}
            assert schemes == {SCHEMES[a] for a in access}, f"{service}: {method} {path}"
            assert "401" in operation["responses"]
    documented = {(p, m.upper()) for p, ops in document["paths"].items() for m in ops}
    assert documented == {(p, m) for p, m, _ in routes}
    assert set(document["components"]["securitySchemes"]) >= set(SCHEMES.values())


def _operation(service: str, path: str, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = _documents(service)["openapi"]["paths"][path][method]
    return operation


def _schema(service: str, ref: dict[str, Any]) -> dict[str, Any]:
    name = ref["$ref"].rsplit("/", 1)[-1]
    schema: dict[str, Any] = _documents(service)["openapi"]["components"]["schemas"][name]
    return schema


MAIN_ROUTES = [
    ("invoice-builder", "/portals/{portal_id}/accounts/{realm_id}/preview", "post", True),
    ("invoice-builder", "/portals/{portal_id}/accounts/{realm_id}/invoice-requests", "post", True),
    ("invoice-builder", "/portals/{portal_id}/invoice-requests/{request_id}", "get", False),
    (
        "status-tracker",
        "/portals/{portal_id}/records/{object_type}/{object_id}/invoices",
        "get",
        False,
    ),
    ("contact-sync", "/portals/{portal_id}/accounts/{realm}/backfill", "post", True),
    ("contact-sync", "/portals/{portal_id}/accounts/{realm}/backfill", "get", False),
    ("product-sync", "/portals/{portal_id}/accounts/{realm}/backfill/resume", "post", True),
    ("product-sync", "/portals/{portal_id}/accounts/{realm}/backfill/{run_id}", "get", False),
    (
        "mapping-registry",
        "/portals/{portal_id}/accounts/{realm}/{object_type}/mappings",
        "get",
        False,
    ),
    (
        "mapping-registry",
        "/portals/{portal_id}/accounts/{realm}/{object_type}/mappings",
        "post",
        True,
    ),
    ("connector-auth", "/v1/portals/{portal_id}/accounts", "get", False),
]


@pytest.mark.parametrize(("service", "path", "method", "has_body"), MAIN_ROUTES)
def test_main_routes_document_their_body_and_answers(
    service: str, path: str, method: str, has_body: bool
) -> None:
    paths = _documents(service)["openapi"]["paths"]
    if path not in paths:  # connector-auth's prefix is its own; find the route by its tail
        [path] = [p for p in paths if p.endswith(path.removeprefix("/v1"))]
    operation = _operation(service, path, method)
    ok = [s for s in operation["responses"] if s.startswith("2")]
    assert ok, f"{service} {method} {path}: no success answer"
    for status in ok:
        schema = _schema(
            service, operation["responses"][status]["content"]["application/json"]["schema"]
        )
        assert schema["properties"], f"{service} {method} {path} {status}"
    if has_body:
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert _schema(service, body)["properties"]


# ---- AsyncAPI: every event received and published, with its payload's schema


def _channels(service: str) -> dict[str, tuple[str, str, str]]:
    """Channel -> (address, action, payload schema name)."""
    document = _documents(service)["asyncapi"]
    found = {}
    for name, channel in document["channels"].items():
        [message] = channel["messages"].values()
        key = message["$ref"].rsplit("/", 1)[-1]
        payload = document["components"]["messages"][key]["payload"]
        assert "$ref" in payload, f"{service} {name}: the payload has no schema ({payload})"
        schema = payload["$ref"].rsplit("/", 1)[-1]
        found[name] = (channel["address"], document["operations"][name]["action"], schema)
    return found


def _envelope_of(topic: str) -> str:
    return f"{REGISTRY.by_topic(topic).model.__name__}Envelope"


@event_services
def test_every_consumed_event_is_documented_with_its_payload_and_dead_letters(
    service: str,
) -> None:
    broker = _built(service).broker
    consumed = {
        (s.specification.config.title_, topic)
        for s in broker.subscribers
        for topic in s.specification.topics
    }
    assert consumed
    channels = _channels(service)
    received = {(n, a) for n, (a, action, _) in channels.items() if action == "receive"}
    assert received == consumed
    for name, topic in consumed:
        assert channels[name][2] == _envelope_of(topic), f"{service} {name}"
        assert channels[f"{name}.dlq"] == (dlq_topic(topic), "send", _envelope_of(topic))
    document = _documents(service)["asyncapi"]
    for schema_name in {schema for _, _, schema in channels.values()}:
        schema = document["components"]["schemas"][schema_name]
        payload = PAYLOADS[schema_name.removesuffix("Envelope")]
        assert schema["properties"]["type"]["const"] == payload.type
        assert schema["properties"]["data"]["$ref"].endswith(f"/{payload.model.__name__}")
    assert "EmptyPayload" not in json.dumps(document)


def _declared(service: str) -> set[str]:
    return {
        REGISTRY.by_topic(address).model.__name__
        for address, action, _ in _channels(service).values()
        if action == "send" and not address.endswith(".dlq")
    }


def _published_in_source(package: str) -> set[str]:
    """The registered payloads a package builds (`X(...)`, `X.model_validate(...)`) or names
    as what it publishes (`synced_event=X`, `failed_event=X`: the sync kinds' outcomes)."""
    [src] = list((ROOT / "services").glob(f"*/src/{package}"))
    return _scan(src)


def _scan(src: Path) -> set[str]:
    found: set[str] = set()
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in PAYLOADS:
                    found.add(func.id)
                if (
                    isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Name)
                    and func.value.id in PAYLOADS
                    and func.attr in {"model_validate", "model_validate_json", "model_construct"}
                ):
                    found.add(func.value.id)
                for keyword in node.keywords:
                    value = keyword.value
                    if (
                        (keyword.arg or "").endswith("_event")
                        and isinstance(value, ast.Name)
                        and value.id in PAYLOADS
                    ):
                        found.add(value.id)
    return found


# Payloads a service builds without publishing them, and why.
BUILT_NOT_PUBLISHED = {
    ("invoice-builder", "CrmObjectChanged"): "the stage sweep hands a deal it found in a "
    "rule's stage to its own crm.object-changed handler, as if the CRM's webhook had come",
}


@event_services
def test_every_payload_a_service_builds_is_declared_as_published(service: str) -> None:
    built = _published_in_source(PACKAGES[service])
    declared = _declared(service)
    kept = {payload for (owner, payload) in BUILT_NOT_PUBLISHED if owner == service}
    assert built, f"{service}: its source builds no event; is the scan still right?"
    assert built - declared - kept == set(), f"{service} publishes undeclared events"
    assert declared - built == set(), f"{service} declares events its source never builds"
    assert kept <= built - declared, f"{service}: BUILT_NOT_PUBLISHED lists what is not so"


def test_the_source_scan_finds_what_a_service_would_publish(tmp_path: Path) -> None:
    (tmp_path / "sample.py").write_text(
        "async def go(p, x):\n"
        "    await p.publish(Envelope.build(InvoiceDrafted(**x), source='s'))\n"
        "    later = InvoiceLinked.model_validate(x)\n"
        "    kind = Outcomes(synced_event=ContactSynced, other=ProductSynced)\n"
        "    isinstance(x, MappingChanged)\n"
    )
    assert _scan(tmp_path) == {"InvoiceDrafted", "InvoiceLinked", "ContactSynced"}
