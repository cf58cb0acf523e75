"""What the CRM sandbox's control API takes to create a record as a portal's user would: its
properties and its associations (HubSpot-defined type ids, e.g. 3 deal->contact, 5
deal->company, 20 line item->deal, 64 quote->deal, 68 line item->quote). The demo, the
end-to-end and browser tests, the chaos run and the benchmarks seed the CRM this way."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def association(object_id: str, type_id: int) -> dict[str, Any]:
    """One association of a record being created."""
    return {
        "to": {"id": object_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    }


def crm_record(props: dict[str, str], assocs: Iterable[tuple[str, int]] = ()) -> dict[str, Any]:
    """The body of `POST {crm}/_sandbox/portals/{portal}/objects/{type}`."""
    body: dict[str, Any] = {"properties": props}
    linked = [association(object_id, type_id) for object_id, type_id in assocs]
    if linked:
        body["associations"] = linked
    return body
