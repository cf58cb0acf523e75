"""Generated bad input at the wizard API from a person signed in for the portal: bodies of any
shape, wrong types and odd values get a 4xx with a reason, or are accepted as a request whose
outcome says why it failed; never a 5xx, and a refused body is not published."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import pytest_asyncio
from dealbooks_infra.fuzzing import json_of_any_shape, json_scalars
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `builder` fixture of conftest.py
PORTAL = "fuzz-portal"

scalars = json_scalars(text_size=30)
any_json = json_of_any_shape(scalars, list_size=3, key_size=10, leaves=15)
money = st.fixed_dictionaries({}, optional={"amount": scalars, "currency": scalars})
line = st.fixed_dictionaries(
    {},
    optional={
        "qbo_item_id": scalars,
        "quantity": scalars | st.sampled_from(["1", "-1", "0", "1e309", "NaN"]),
        "unit_price": money | scalars,
        "description": scalars,
        "tax_code_id": scalars,
    },
)
wizard_body = st.fixed_dictionaries(
    {},
    optional={
        "request_id": st.uuids().map(str) | scalars,
        "deal_id": scalars,
        "quote_id": scalars,
        "customer": st.fixed_dictionaries(
            {},
            optional={
                "kind": st.sampled_from(["existing", "new", "??"]) | scalars,
                "qbo_customer_id": scalars,
                "display_name": scalars,
                "email": scalars,
            },
        )
        | scalars,
        "lines": st.lists(line, max_size=3) | scalars,
        "terms_id": scalars,
        "due_date": scalars | st.sampled_from(["2026-02-30", "2026-12-31", "yesterday"]),
        "customer_message": scalars,
        "qbo_invoice_id": scalars,
        "target": any_json,
        "realm_id": scalars,
        "deal_stage": scalars,
    },
)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here is a regression, not luck
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
ROUTES = ["preview", "invoice-requests", "invoice-links"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def realm(builder: Harness, qbo_sandbox: Any) -> str:
    return str(await builder.us_company(qbo_sandbox, PORTAL))


@FUZZ
@given(route=st.sampled_from(ROUTES), body=st.one_of(wizard_body, any_json, st.binary(max_size=80)))
async def test_generated_wizard_bodies_are_never_a_5xx(
    builder: Harness, realm: str, route: str, body: Any
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with builder.wizard(PORTAL) as wizard:
        answer = await wizard.post(
            f"/portals/{PORTAL}/accounts/{realm}/{route}",
            content=content,
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code < 500, (answer.status_code, answer.text[:300])
        if answer.status_code >= 400:
            assert answer.json(), "a refusal says why"
        if answer.status_code == 202:
            # Accepted: the request has an outcome a person can poll, with a reason if refused.
            request_id = answer.json()["request_id"]
            polled = await wizard.get(f"/portals/{PORTAL}/invoice-requests/{request_id}")
            assert polled.status_code == 200


@FUZZ
@given(body=st.one_of(wizard_body, any_json))
async def test_generated_auto_draft_rules_are_never_a_5xx(
    builder: Harness, realm: str, body: Any
) -> None:
    async with builder.wizard(PORTAL) as wizard:
        answer = await wizard.put(
            f"/portals/{PORTAL}/auto-draft-rules/{uuid.uuid4().hex}",
            content=json.dumps(body).encode(),  # Infinity and NaN too, as a sloppy client sends
            headers={"Content-Type": "application/json"},
        )
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
