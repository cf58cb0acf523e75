"""Requests generated from invoice-builder's own OpenAPI document (schemathesis), sent by a person
signed in for the portal to the service on real Kafka, the MongoDB-wire server and both
sandboxes: every route of the document, with path, query and body drawn from its schema (and
beyond it); never a 5xx, and a refusal says why."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_asyncio
import schemathesis
from dealbooks_kit import Guard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invoice_builder.api import build_api

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `builder` fixture of conftest.py
PORTAL = "openapi-fuzz-portal"
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same requests every run: a failure is a regression, not luck
    suppress_health_check=list(HealthCheck),
)


def portal_operations(builder: Harness) -> list[Any]:
    """The document's operations a portal grant may call (the kit's public routes and the
    operator's are the route matrix's business)."""
    api = build_api(builder.service, Guard(builder.settings, builder.settings.service_name))
    doc = builder.service.runtime.openapi(api, title="invoice-builder")
    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(doc)))
    operations = [result.ok() for result in schema.get_all_operations()]
    return [op for op in operations if op.path.startswith("/portals/{portal_id}")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def realm(builder: Harness, qbo_sandbox: Any) -> str:
    return str(await builder.us_company(qbo_sandbox, PORTAL))


@FUZZ
@given(data=st.data())
async def test_requests_generated_from_the_openapi_document_are_never_a_5xx(
    builder: Harness, realm: str, data: st.DataObject
) -> None:
    operation = data.draw(st.sampled_from(portal_operations(builder)), label="operation")
    case = data.draw(operation.as_strategy(), label="request")
    # The person's own portal and company, so the request gets past the guard to the route.
    case.path_parameters = {**(case.path_parameters or {}), "portal_id": PORTAL}
    if "realm_id" in case.path_parameters:
        case.path_parameters["realm_id"] = realm
    sent = case.as_transport_kwargs(base_url="http://wizard")
    body = case.body if not isinstance(case.body, schemathesis.core.NotSet) else None
    async with builder.wizard(PORTAL) as wizard:
        answer = await wizard.request(
            sent["method"],
            sent["url"],
            params=sent.get("params"),
            json=body if body is not None and not isinstance(body, bytes) else None,
            content=body if isinstance(body, bytes) else None,
        )
    assert answer.status_code < 500, (case.method, case.formatted_path, answer.text[:300])
    if answer.status_code >= 400:
        assert answer.content, "a refusal says why"
