"""The portal's CRM owners by name (`GET /portals/{portal}/owners`), read from the CRM sandbox
over HTTP, for picking an approver or a task owner: listed by name, and when the app's install
lacks the owners scope, no list but what to do."""

from __future__ import annotations

from typing import Any

import pytest
from crm_sandbox.state import OWNER_ID_OFFSET

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `builder` fixture of conftest.py


async def test_the_portals_owners_are_listed_by_name_or_what_to_do_without_the_scope(
    builder: Harness, crm_sandbox: Any, crm_portal: Any
) -> None:
    portal = crm_portal.key
    added = crm_sandbox.add_user(crm_portal.portal_id, "aaron@harbour.example", "Aaron", "Vale")
    builder.crm_tokens.set(portal, crm_portal.access_token)
    async with builder.wizard(portal) as rep:
        listed = await rep.get(f"/portals/{portal}/owners")
        with builder.without_owners_scope(crm_sandbox, crm_portal):
            unscoped = await rep.get(f"/portals/{portal}/owners")
    async with builder.wizard("another-portal") as stranger:
        foreign = await stranger.get(f"/portals/{portal}/owners")

    assert listed.status_code == 200, listed.text
    owners = listed.json()["owners"]
    users = crm_sandbox.users(crm_portal.portal_id)
    assert {o["id"] for o in owners} == {str(int(u["userId"]) + OWNER_ID_OFFSET) for u in users}
    # Each owner with the CRM user it stands for: the id a person's requests carry.
    user_id = str(added["userId"])
    assert {"id": str(int(user_id) + OWNER_ID_OFFSET), "name": "Aaron Vale",
            "email": "aaron@harbour.example", "user_id": user_id} in owners  # fmt: skip
    assert [o["name"] for o in owners] == sorted((o["name"] for o in owners), key=str.casefold)
    assert unscoped.status_code == 200
    assert unscoped.json()["owners"] is None
    assert "crm.objects.owners.read" in unscoped.json()["reason"]
    assert foreign.status_code == 403
