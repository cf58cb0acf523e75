"""Notes: a record type of its own, created with `hs_timestamp` and associated with the deals,
contacts and companies whose timelines show it (notes guide; association type ids 214/213,
202/201, 190/189)."""

from __future__ import annotations

import httpx
import pytest
from crm_sandbox.testing import CrmSandbox, SandboxPortal


@pytest.fixture
def http(crm_sandbox: CrmSandbox, crm_portal: SandboxPortal) -> httpx.Client:
    return httpx.Client(
        base_url=crm_sandbox.base_url,
        headers={"Authorization": f"Bearer {crm_portal.access_token}"},
        timeout=10,
    )


def note_on(to_id: str, type_id: int, body: str = "<p>Paid</p>") -> dict[str, object]:
    return {
        "properties": {"hs_timestamp": "2026-09-30T12:00:00Z", "hs_note_body": body},
        "associations": [
            {
                "to": {"id": to_id},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
            }
        ],
    }


def test_a_note_created_on_a_deal_is_associated_both_ways(
    http: httpx.Client, crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    deal = http.post("/crm/v3/objects/deals", json={"properties": {"dealname": "D"}}).json()

    created = http.post("/crm/v3/objects/notes", json=note_on(deal["id"], 214))

    assert created.status_code == 201
    note = created.json()
    # Read without `properties`, a note answers only its dates and id.
    plain = http.get(f"/crm/v3/objects/notes/{note['id']}").json()
    assert set(plain["properties"]) == {"hs_createdate", "hs_lastmodifieddate", "hs_object_id"}
    read = http.get(
        f"/crm/v3/objects/notes/{note['id']}",
        params={"properties": "hs_note_body,hs_timestamp", "associations": "deals"},
    ).json()
    assert read["properties"]["hs_note_body"] == "<p>Paid</p>"
    assert read["properties"]["hs_timestamp"] == "2026-09-30T12:00:00.000Z"
    assert read["associations"]["deals"]["results"] == [{"id": deal["id"], "type": "note_to_deal"}]
    back = http.get(f"/crm/v4/objects/deals/{deal['id']}/associations/notes").json()
    assert [
        (str(r["toObjectId"]), r["associationTypes"][0]["typeId"]) for r in back["results"]
    ] == [(note["id"], 213)]
    [shown] = crm_sandbox.notes_on(crm_portal.portal_id, "deals", deal["id"])
    assert (shown["id"], shown["body"]) == (note["id"], "<p>Paid</p>")


@pytest.mark.parametrize(("object_type", "type_id"), [("contacts", 202), ("companies", 190)])
def test_notes_go_on_contacts_and_companies(
    http: httpx.Client,
    crm_sandbox: CrmSandbox,
    crm_portal: SandboxPortal,
    object_type: str,
    type_id: int,
) -> None:
    props = {"contacts": {"email": "n@x.example"}, "companies": {"name": "Acme"}}[object_type]
    record = http.post(f"/crm/v3/objects/{object_type}", json={"properties": props}).json()

    assert http.post("/crm/v3/objects/notes", json=note_on(record["id"], type_id)).is_success

    assert len(crm_sandbox.notes_on(crm_portal.portal_id, object_type, record["id"])) == 1


def test_a_note_needs_hs_timestamp(http: httpx.Client) -> None:
    response = http.post("/crm/v3/objects/notes", json={"properties": {"hs_note_body": "x"}})
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"


def test_a_note_cannot_be_associated_with_a_wrong_type_id(http: httpx.Client) -> None:
    deal = http.post("/crm/v3/objects/deals", json={"properties": {"dealname": "D"}}).json()
    response = http.post("/crm/v3/objects/notes", json=note_on(deal["id"], 202))
    assert response.status_code == 400  # 202 is note -> contact


def test_notes_are_searchable_by_the_record_they_are_on(http: httpx.Client) -> None:
    deal = http.post("/crm/v3/objects/deals", json={"properties": {"dealname": "D"}}).json()
    other = http.post("/crm/v3/objects/deals", json={"properties": {"dealname": "E"}}).json()
    http.post("/crm/v3/objects/notes", json=note_on(deal["id"], 214, "<p>ref-42</p>"))
    http.post("/crm/v3/objects/notes", json=note_on(other["id"], 214, "<p>ref-43</p>"))

    found = http.post(
        "/crm/v3/objects/notes/search",
        json={
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "associations.deal", "operator": "EQ", "value": deal["id"]}
                    ]
                }
            ],
            "properties": ["hs_note_body"],
        },
    ).json()

    assert [r["properties"]["hs_note_body"] for r in found["results"]] == ["<p>ref-42</p>"]
