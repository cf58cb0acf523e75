"""Tasks (`0-27`) and owners: a task is created with `hs_timestamp` (its due date), carries a
status, priority, type and owner, and sits on deals and companies (task -> deal 216, back 215;
task -> company 192, back 191); the tasks API takes the contact scopes, owners
`crm.objects.owners.read`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from crm_sandbox.testing import CrmSandbox, SandboxPortal

DUE = "2026-10-15T09:00:00Z"


def client(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


@pytest.fixture
def http(crm_sandbox: CrmSandbox, crm_portal: SandboxPortal) -> Iterator[httpx.Client]:
    with client(crm_sandbox.base_url, crm_portal.access_token) as c:
        yield c


def owner_id(http: httpx.Client) -> str:
    return str(http.get("/crm/v3/owners").json()["results"][0]["id"])


def task(**props: Any) -> dict[str, Any]:
    return {"properties": {"hs_timestamp": DUE, "hs_task_subject": "Deposit the cheques", **props}}


def on(record_id: str, type_id: int) -> list[dict[str, Any]]:
    return [
        {
            "to": {"id": record_id},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
        }
    ]


# ---------------------------------------------------------------- tasks


def test_a_task_is_created_read_updated_and_archived(http: httpx.Client) -> None:
    owner = owner_id(http)
    created = http.post(
        "/crm/v3/objects/tasks",
        json=task(
            hs_task_body="<p>Three payments wait in Undeposited Funds.</p>",
            hs_task_status="NOT_STARTED",
            hs_task_priority="HIGH",
            hs_task_type="TODO",
            hubspot_owner_id=owner,
        ),
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["properties"]["hs_timestamp"] == "2026-10-15T09:00:00.000Z"
    assert body["properties"]["hubspot_owner_id"] == owner
    assert body["archived"] is False
    # Read without `properties`, a task answers only its dates and id.
    plain = http.get(f"/crm/v3/objects/tasks/{body['id']}").json()
    assert set(plain["properties"]) == {"hs_createdate", "hs_lastmodifieddate", "hs_object_id"}

    done = http.patch(
        f"/crm/v3/objects/tasks/{body['id']}", json={"properties": {"hs_task_status": "COMPLETED"}}
    )
    assert done.status_code == 200
    assert done.json()["properties"]["hs_task_status"] == "COMPLETED"
    assert done.json()["properties"]["hs_task_completion_date"]

    assert http.delete(f"/crm/v3/objects/tasks/{body['id']}").status_code == 204
    assert http.get(f"/crm/v3/objects/tasks/{body['id']}").status_code == 404
    archived = http.get(f"/crm/v3/objects/tasks/{body['id']}", params={"archived": "true"})
    assert archived.status_code == 200


def test_the_task_type_id_and_singular_name_address_tasks(http: httpx.Client) -> None:
    made = http.post("/crm/v3/objects/0-27", json=task()).json()
    read = http.get(
        f"/crm/objects/2026-03/tasks/{made['id']}", params={"properties": "hs_task_subject"}
    )
    assert read.json()["properties"]["hs_task_subject"] == "Deposit the cheques"


def test_a_task_without_hs_timestamp_is_refused(http: httpx.Client) -> None:
    response = http.post("/crm/v3/objects/tasks", json={"properties": {"hs_task_subject": "x"}})
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["category"] == "VALIDATION_ERROR"
    assert "hs_timestamp" in body["message"] and body["correlationId"]


def test_a_task_status_outside_the_list_is_invalid_option(http: httpx.Client) -> None:
    response = http.post("/crm/v3/objects/tasks", json=task(hs_task_status="DONE"))
    assert response.status_code == 400
    body = response.json()
    assert body["category"] == "VALIDATION_ERROR"
    assert body["errors"][0]["code"] == "INVALID_OPTION"
    assert body["errors"][0]["context"]["propertyName"] == ["hs_task_status"]


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("hs_task_priority", "URGENT", "INVALID_OPTION"),
        ("hs_task_type", "FAX", "INVALID_OPTION"),
        ("hs_task_due", "tomorrow", "PROPERTY_DOESNT_EXIST"),
        ("hubspot_owner_id", "12345", "INVALID_OWNER_ID"),
        ("hs_createdate", "2026-01-01T00:00:00Z", "READ_ONLY_VALUE"),
    ],
)
def test_task_property_errors_come_in_hubspots_body(
    http: httpx.Client, name: str, value: str, code: str
) -> None:
    response = http.post("/crm/v3/objects/tasks", json=task(**{name: value}))
    assert response.status_code == 400
    body = response.json()
    assert body["message"].startswith("Property values were not valid: ")
    assert [(e["code"], e["context"]["propertyName"]) for e in body["errors"]] == [(code, [name])]


def test_tasks_are_read_in_batches(http: httpx.Client) -> None:
    ids = [http.post("/crm/v3/objects/tasks", json=task()).json()["id"] for _ in range(2)]
    found = http.post(
        "/crm/v3/objects/tasks/batch/read",
        json={"inputs": [{"id": i} for i in [*ids, "999999"]], "properties": ["hs_task_subject"]},
    )
    assert found.status_code == 207
    body = found.json()
    assert sorted(r["id"] for r in body["results"]) == sorted(ids)
    assert body["numErrors"] == 1 and body["errors"][0]["category"] == "OBJECT_NOT_FOUND"


def test_a_task_on_a_deal_is_associated_both_ways_and_searchable_by_it(
    http: httpx.Client,
) -> None:
    deal = http.post("/crm/v3/objects/deals", json={"properties": {"dealname": "D"}}).json()
    other = http.post("/crm/v3/objects/deals", json={"properties": {"dealname": "E"}}).json()
    made = http.post(
        "/crm/v3/objects/tasks", json={**task(), "associations": on(deal["id"], 216)}
    ).json()
    http.post("/crm/v3/objects/tasks", json={**task(), "associations": on(other["id"], 216)})

    read = http.get(f"/crm/v3/objects/tasks/{made['id']}", params={"associations": "deals"})
    assert read.json()["associations"]["deals"]["results"] == [
        {"id": deal["id"], "type": "task_to_deal"}
    ]
    back = http.get(f"/crm/v4/objects/deals/{deal['id']}/associations/tasks").json()
    assert [
        (str(r["toObjectId"]), r["associationTypes"][0]["typeId"]) for r in back["results"]
    ] == [(made["id"], 215)]
    found = http.post(
        "/crm/v3/objects/tasks/search",
        json={
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "associations.deal",
                            "operator": "EQ",
                            "value": deal["id"],
                        },
                        {"propertyName": "hs_task_status", "operator": "NOT_HAS_PROPERTY"},
                    ]
                }
            ]
        },
    ).json()
    assert [r["id"] for r in found["results"]] == [made["id"]]


def test_a_task_goes_on_a_company_inline_or_through_the_v4_api(http: httpx.Client) -> None:
    company = http.post("/crm/v3/objects/companies", json={"properties": {"name": "Acme"}}).json()
    inline = http.post(
        "/crm/v3/objects/tasks", json={**task(), "associations": on(company["id"], 192)}
    )
    later = http.post("/crm/v3/objects/tasks", json=task()).json()
    put = http.put(
        f"/crm/v4/objects/tasks/{later['id']}/associations/default/companies/{company['id']}"
    )
    assert inline.status_code == 201 and put.status_code == 200
    back = http.get(f"/crm/v4/objects/companies/{company['id']}/associations/tasks").json()
    assert sorted(str(r["toObjectId"]) for r in back["results"]) == sorted(
        [inline.json()["id"], later["id"]]
    )
    assert {r["associationTypes"][0]["typeId"] for r in back["results"]} == {191}


def test_a_task_cannot_use_the_deal_type_id_for_a_company(http: httpx.Client) -> None:
    company = http.post("/crm/v3/objects/companies", json={"properties": {"name": "Acme"}}).json()
    response = http.post(
        "/crm/v3/objects/tasks", json={**task(), "associations": on(company["id"], 216)}
    )
    assert response.status_code == 400  # 216 is task -> deal


# ---------------------------------------------------------------- scopes


def test_tasks_need_the_contact_scopes(crm_sandbox: CrmSandbox, crm_portal: SandboxPortal) -> None:
    portal = crm_portal.portal_id
    deals_only = crm_sandbox.issue_token(portal, scopes=["crm.objects.deals.write"])
    read_only = crm_sandbox.issue_token(portal, scopes=["crm.objects.contacts.read"])
    writer = crm_sandbox.issue_token(portal, scopes=["crm.objects.contacts.write"])
    with client(crm_sandbox.base_url, deals_only) as http:
        refused = http.post("/crm/v3/objects/tasks", json=task())
        listed = http.get("/crm/v3/objects/tasks")
        deals = http.get("/crm/v3/objects/deals")
    with client(crm_sandbox.base_url, read_only) as http:
        read_refused = http.post("/crm/v3/objects/tasks", json=task())
        read_listed = http.get("/crm/v3/objects/tasks")
    with client(crm_sandbox.base_url, writer) as http:
        written = http.post("/crm/v3/objects/tasks", json=task())
    assert deals.status_code == 200
    for response, accepted in (
        (refused, ["crm.objects.contacts.write"]),
        (listed, ["crm.objects.contacts.read", "crm.objects.contacts.write"]),
        (read_refused, ["crm.objects.contacts.write"]),
    ):
        assert response.status_code == 403
        body = response.json()
        assert body["category"] == "MISSING_SCOPES"
        assert body["errors"][0]["context"]["requiredGranularScopes"] == accepted
    assert read_listed.status_code == 200 and written.status_code == 201


# ---------------------------------------------------------------- owners


def test_owners_are_the_portals_users(
    http: httpx.Client, crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    added = crm_sandbox.add_user(crm_portal.portal_id, "rep@tasks.example")
    owners = http.get("/crm/v3/owners").json()["results"]
    assert [o["email"] for o in owners][-1] == "rep@tasks.example"
    rep = owners[-1]
    assert rep["userId"] == added["userId"] and rep["type"] == "PERSON"
    assert rep["id"] != str(rep["userId"]) and rep["archived"] is False
    by_email = http.get("/crm/v3/owners", params={"email": "REP@tasks.example"}).json()
    assert [o["id"] for o in by_email["results"]] == [rep["id"]]
    assert http.get(f"/crm/v3/owners/{rep['id']}").json() == rep
    by_user = http.get(f"/crm/v3/owners/{rep['userId']}", params={"idProperty": "userId"})
    assert by_user.json()["id"] == rep["id"]
    missing = http.get("/crm/v3/owners/1")
    assert missing.status_code == 404 and missing.json()["category"] == "OBJECT_NOT_FOUND"
    page = http.get("/crm/v3/owners", params={"limit": 1}).json()
    assert len(page["results"]) == 1 and page["paging"]["next"]["after"]


def test_an_owner_carries_its_users_name_and_user_id(
    http: httpx.Client, crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    added = crm_sandbox.add_user(crm_portal.portal_id, "ada@tasks.example", " Ada", "Lee ")
    unnamed = crm_sandbox.add_user(crm_portal.portal_id, "bo@tasks.example")
    owners = {o["email"]: o for o in http.get("/crm/v3/owners").json()["results"]}
    ada, bo = owners["ada@tasks.example"], owners["bo@tasks.example"]
    assert (added["firstName"], added["lastName"]) == ("Ada", "Lee")
    assert (ada["firstName"], ada["lastName"], ada["userId"]) == ("Ada", "Lee", added["userId"])
    assert (bo["firstName"], bo["lastName"], bo["userId"]) == ("", "", unnamed["userId"])
    assert http.get(f"/crm/v3/owners/{ada['id']}").json() == ada


def test_owners_need_the_owners_scope(crm_sandbox: CrmSandbox, crm_portal: SandboxPortal) -> None:
    token = crm_sandbox.issue_token(crm_portal.portal_id, scopes=["crm.objects.contacts.read"])
    with client(crm_sandbox.base_url, token) as http:
        response = http.get("/crm/v3/owners")
    assert response.status_code == 403
    assert response.json()["errors"][0]["context"]["requiredGranularScopes"] == [
        "crm.objects.owners.read"
    ]
