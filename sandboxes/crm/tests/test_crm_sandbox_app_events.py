"""App events (timeline v4): event types from an app project's `app-events/*-hsmeta.json`,
occurrences sent to `/integrators/timeline/v4/events`, validated against their type, immutable,
and refused where the app's app events are not approved."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from crm_sandbox.api_app_events import find_app_events_dir
from crm_sandbox.testing import CrmSandbox, SandboxPortal, running_sandbox

REPO = Path(__file__).resolve().parents[3]
V4 = "/integrators/timeline/v4/events"


def definition(uid: str = "test_payment", object_type: str = "DEAL") -> dict[str, Any]:
    return {
        "uid": uid,
        "type": "app-event",
        "config": {
            "name": "Test payment",
            "objectType": object_type,
            "headerTemplate": "{{amount}} paid",
            "properties": [
                {"name": "amount", "label": "Amount", "type": "number"},
                {"name": "note", "label": "Note", "type": "string"},
                {
                    "name": "change",
                    "label": "Change",
                    "type": "enumeration",
                    "options": [{"value": "applied", "label": "Applied"}],
                },
            ],
        },
    }


@pytest.fixture
def http(crm_sandbox: CrmSandbox, crm_portal: SandboxPortal) -> Iterator[httpx.Client]:
    crm_sandbox.add_app_event_type(definition())
    with httpx.Client(
        base_url=crm_sandbox.base_url,
        headers={"Authorization": f"Bearer {crm_portal.access_token}"},
        timeout=10,
    ) as client:
        yield client


@pytest.fixture
def deal_id(http: httpx.Client) -> str:
    deal = http.post("/crm/v3/objects/deals", json={"properties": {"dealname": "D"}})
    return str(deal.json()["id"])


def occurrence(deal_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "eventTypeName": "test_payment",
        "objectId": deal_id,
        "id": f"pay-{uuid.uuid4().hex[:8]}",
        "properties": {"amount": "220.00", "change": "applied"},
        **fields,
    }


def test_an_occurrence_is_accepted_without_a_body_and_shows_on_the_deal(
    http: httpx.Client, crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, deal_id: str
) -> None:
    sent = occurrence(deal_id, timestamp="2026-09-30T12:00:00Z")

    response = http.post(V4, json=sent)

    assert (response.status_code, response.content) == (204, b"")
    [shown] = crm_sandbox.record_timeline(crm_portal.portal_id, "deals", deal_id)
    assert shown["kind"] == "app-event"
    assert (shown["id"], shown["properties"]) == (sent["id"], sent["properties"])
    assert shown["timestamp"] == "2026-09-30T12:00:00.000Z"
    # The v3 listing shows occurrences too, their values also under `tokens`.
    [listed] = crm_sandbox.timeline_events(crm_portal.portal_id, object_id=deal_id)
    assert listed["tokens"]["amount"] == "220.00"


def test_the_same_occurrence_id_twice_is_a_conflict_and_leaves_one(
    http: httpx.Client, crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, deal_id: str
) -> None:
    sent = occurrence(deal_id)
    assert http.post(V4, json=sent).status_code == 204

    again = http.post(V4, json={**sent, "properties": {"amount": "1.00"}})

    assert again.status_code == 409
    assert again.json()["category"] == "CONFLICT"
    [kept] = crm_sandbox.app_events(crm_portal.portal_id, object_id=deal_id)
    assert kept["properties"]["amount"] == "220.00"  # immutable


def test_the_full_name_and_the_dated_path_work_too(
    http: httpx.Client, crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, deal_id: str
) -> None:
    [deployed] = [t for t in crm_sandbox.app_event_types() if t["uid"] == "test_payment"]
    sent = occurrence(deal_id, eventTypeName=deployed["fullyQualifiedName"])

    assert http.post("/integrators/timeline/2026-03/events", json=sent).status_code == 204

    assert len(crm_sandbox.app_events(crm_portal.portal_id, event_type="test_payment")) >= 1


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"properties": {"unknown": "x"}}, 400),
        ({"properties": {"amount": "lots"}}, 400),
        ({"properties": {"change": "refunded"}}, 400),
        ({"timestamp": "yesterday"}, 400),
        ({"id": None}, 400),
        ({"objectId": None}, 400),
        ({"objectTypeFullyQualifiedName": "p1_cats"}, 400),
        ({"eventTypeName": None}, 400),
        ({"eventTypeName": "never_deployed"}, 404),
        ({"objectId": "1"}, 404),
    ],
)
def test_occurrences_that_do_not_match_their_type_are_refused(
    http: httpx.Client,
    crm_sandbox: CrmSandbox,
    crm_portal: SandboxPortal,
    deal_id: str,
    change: dict[str, Any],
    status: int,
) -> None:
    sent = {k: v for k, v in {**occurrence(deal_id), **change}.items() if v is not None}

    response = http.post(V4, json=sent)

    assert response.status_code == status
    assert {"status", "message", "correlationId", "category"} <= set(response.json())
    assert crm_sandbox.app_events(crm_portal.portal_id, object_id=deal_id) == []


def test_a_portal_without_approved_app_events_gets_403_and_nothing_is_stored(
    http: httpx.Client, crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, deal_id: str
) -> None:
    crm_sandbox.set_app_events_approved(crm_portal.portal_id, False)
    assert crm_sandbox.read_portal(crm_portal.portal_id)["appEventsApproved"] is False

    refused = http.post(V4, json=occurrence(deal_id))
    batch = http.post(V4 + "/batch", json={"inputs": [occurrence(deal_id)]})

    assert (refused.status_code, batch.status_code) == (403, 403)
    assert crm_sandbox.app_events(crm_portal.portal_id) == []
    crm_sandbox.set_app_events_approved(crm_portal.portal_id, True)
    assert http.post(V4, json=occurrence(deal_id)).status_code == 204


def test_occurrences_need_an_oauth_token_with_the_timeline_scope(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, http: httpx.Client, deal_id: str
) -> None:
    scoped = crm_sandbox.issue_token(crm_portal.portal_id, scopes=["crm.objects.deals.read"])
    for token in (crm_portal.private_app_token, scoped):
        response = httpx.post(
            crm_sandbox.base_url + V4,
            json=occurrence(deal_id),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 403
        assert response.json()["category"] == "MISSING_SCOPES"


def test_a_batch_answers_each_occurrence(
    http: httpx.Client, crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, deal_id: str
) -> None:
    good, bad = occurrence(deal_id), occurrence(deal_id, properties={"amount": "x"})

    mixed = http.post(V4 + "/batch", json={"inputs": [good, bad]})
    clean = http.post(V4 + "/batch", json={"inputs": [occurrence(deal_id)]})

    assert mixed.status_code == 207
    body = mixed.json()
    assert [r["id"] for r in body["results"]] == [good["id"]]
    assert body["numErrors"] == 1 and body["errors"][0]["context"] == {"id": [bad["id"]]}
    assert clean.status_code == 201 and clean.json()["status"] == "COMPLETE"
    assert len(crm_sandbox.app_events(crm_portal.portal_id, object_id=deal_id)) == 2


@pytest.mark.parametrize(
    "broken",
    [
        {"type": "card"},
        {"config": {"name": "x" * 51, "objectType": "DEAL"}},
        {"config": {"name": "Bad", "objectType": "INVOICE"}},
        {"config": {"name": "Bad", "objectType": "DEAL", "properties": [{"name": "p"}]}},
        {
            "config": {
                "name": "Bad",
                "objectType": "DEAL",
                "properties": [{"name": "p", "label": "P", "type": "enumeration"}],
            }
        },
    ],
)
def test_event_type_definitions_are_checked_as_a_project_build_would(
    crm_sandbox: CrmSandbox, broken: dict[str, Any]
) -> None:
    with pytest.raises(httpx.HTTPStatusError) as refused:
        crm_sandbox.add_app_event_type({**definition("broken_type"), **broken})
    assert refused.value.response.status_code == 400


def test_an_event_type_keeps_its_object_type(crm_sandbox: CrmSandbox) -> None:
    crm_sandbox.add_app_event_type(definition("fixed_type"))
    with pytest.raises(httpx.HTTPStatusError):
        crm_sandbox.add_app_event_type(definition("fixed_type", object_type="CONTACT"))


# ---- flags ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lenient_sandbox() -> Iterator[CrmSandbox]:
    """A sandbox deploying this repository's app project, with repeated occurrence ids
    ignored and app events not approved for new portals."""
    folder = REPO / "hubspot-app/src/app/app-events"
    with running_sandbox(
        "--app-events",
        str(folder),
        "--app-event-duplicate",
        "ignore",
        "--app-events-unapproved",
    ) as sandbox:
        yield sandbox


def test_the_app_projects_event_types_are_deployed_at_start(lenient_sandbox: CrmSandbox) -> None:
    deployed = {t["uid"]: t for t in lenient_sandbox.app_event_types()}
    for path in (REPO / "hubspot-app/src/app/app-events").glob("*-hsmeta.json"):
        uid = json.loads(path.read_text())["uid"]
        assert deployed[uid]["objectType"] == "deals"


def test_flags_make_new_portals_unapproved_and_repeats_ignored(lenient_sandbox: CrmSandbox) -> None:
    lenient_sandbox.add_app_event_type(definition())
    portal = lenient_sandbox.create_portal()
    headers = {"Authorization": f"Bearer {portal.access_token}"}
    with httpx.Client(base_url=lenient_sandbox.base_url, headers=headers, timeout=10) as http:
        deal = http.post("/crm/v3/objects/deals", json={"properties": {"dealname": "D"}}).json()
        sent = occurrence(deal["id"])
        assert http.post(V4, json=sent).status_code == 403
        lenient_sandbox.set_app_events_approved(portal.portal_id, True)
        assert http.post(V4, json=sent).status_code == 204
        assert http.post(V4, json=sent).status_code == 204
    assert len(lenient_sandbox.app_events(portal.portal_id)) == 1


def test_the_app_events_folder_is_found_from_inside_a_checkout(tmp_path: Path) -> None:
    folder = tmp_path / "hubspot-app/src/app/app-events"
    folder.mkdir(parents=True)
    inside = tmp_path / "sandboxes/crm/src"
    inside.mkdir(parents=True)
    assert find_app_events_dir(inside) == folder
