"""Who may read and change an account's mappings: a person signed in for the portal the account
is connected to. Everyone else is refused, and a refused change is neither saved nor
announced."""

from __future__ import annotations

import pytest
from dealbooks_contracts import SyncObjectType
from dealbooks_infra.sync_world import grant

pytestmark = pytest.mark.integration

CONTACTS = SyncObjectType.CONTACTS


async def test_no_grant_or_another_portals_grant_changes_nothing(registry) -> None:
    await registry.seeded()
    other = f"{registry.portal_id}-other"
    add = {"crm_property": "jobtitle", "qbo_field": "DisplayName"}
    base, elsewhere = registry.base(), registry.base(portal_id=other)

    async with registry.client(None) as anonymous:
        unsigned = [
            await anonymous.get(f"{base}/mappings"),
            await anonymous.post(f"{base}/mappings", json=add),
            await anonymous.patch(f"{base}/settings", json={"enabled": True}),
            await anonymous.delete(f"{base}/mappings/m-phone"),
        ]
    async with registry.client(grant(other)) as outsider:
        foreign = [
            await outsider.get(f"{base}/mappings"),
            await outsider.post(f"{base}/mappings", json=add),
            await outsider.patch(f"{base}/settings", json={"enabled": True}),
        ]
        # Its own portal's path does not reach an account connected to another portal.
        own_path = [
            await outsider.get(f"{elsewhere}/mappings"),
            await outsider.post(f"{elsewhere}/mappings", json=add),
            await outsider.patch(f"{elsewhere}/settings", json={"enabled": True}),
            await outsider.delete(f"{elsewhere}/mappings/m-phone"),
            await outsider.get(f"{elsewhere}/status"),
        ]

    assert [r.status_code for r in unsigned] == [401] * 4
    assert [r.status_code for r in foreign] == [403] * 3
    assert [r.status_code for r in own_path] == [404] * 5
    mappings = (await registry.api.get(f"{base}/mappings")).json()
    assert mappings["version"] == 1 and mappings["settings"]["enabled"] is False
    assert "jobtitle" not in [m["crm_property"] for m in mappings["mappings"]]
    assert await registry.runtime.db["mapping_versions"].count_documents({}) == 2
    assert registry.versions(CONTACTS) == [1]


async def test_the_edit_links_of_a_read_point_at_the_portals_own_paths(registry) -> None:
    await registry.connected()
    await registry.announced_version(CONTACTS, 1)

    body = (await registry.api.get(f"{registry.base()}/mappings")).json()

    phone = next(m for m in body["mappings"] if m["mapping_id"] == "m-phone")
    assert phone["actions"]["delete"]["href"] == f"{registry.base()}/mappings/m-phone"
    deleted = await registry.api.delete(phone["actions"]["delete"]["href"])
    assert deleted.status_code == 200
