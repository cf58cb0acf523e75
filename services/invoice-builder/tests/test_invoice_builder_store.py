"""invoice-builder's store on a real MongoDB-wire server: what it remembers of companies."""

from __future__ import annotations

from typing import Any

import pytest
from dealbooks_contracts import Envelope, Tenant
from dealbooks_infra.testing import account_connected
from invoice_builder.store import Store
from pymongo import AsyncMongoClient

pytestmark = pytest.mark.integration


def connected(realm: str, **facts: Any) -> Envelope[Any]:
    return Envelope.build(
        account_connected(**facts),
        source="connector-auth",
        tenant=Tenant(portal_id="p1", account_id=realm),
    )


async def test_company_facts_are_remembered_briefly_and_replaced_at_once_by_this_process(
    mongo_uri: str, namespace: str
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    try:
        db = client[namespace]
        here = Store(db, outbox=None, remember_accounts_seconds=60)  # type: ignore[arg-type]
        replica = Store(db, outbox=None)  # type: ignore[arg-type]
        await replica.save_account(connected("r1", custom_transaction_numbers=False))
        first = await here.account("r1")
        assert first is not None and not first.custom_transaction_numbers
        # Another replica's change is not seen while the facts are remembered...
        await replica.save_account(connected("r1", custom_transaction_numbers=True))
        remembered = await here.account("r1")
        assert remembered is not None and not remembered.custom_transaction_numbers
        # ...but this process's own changes are, at once.
        await here.save_account(connected("r1", custom_transaction_numbers=True))
        changed = await here.account("r1")
        assert changed is not None and changed.custom_transaction_numbers
        await here.disconnect_account("r1")
        gone = await here.account("r1")
        assert gone is not None and not gone.connected
        # A company that is not connected is not remembered: a reconnection through another
        # replica counts at once (a request refused on old facts would stay refused).
        await replica.save_account(connected("r1"))
        back = await here.account("r1")
        assert back is not None and back.connected
        assert await here.account("unknown") is None
    finally:
        await client.close()
