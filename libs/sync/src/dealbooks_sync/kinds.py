"""What differs between the record syncs: a `RecordKind` says which QBO entity goes into which
CRM object type, under which keys (customers -> contacts, items -> products)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dealbooks_contracts import SyncObjectType
from dealbooks_crm import PropertyDefinition
from dealbooks_qbo import Entity

from dealbooks_sync.domain import (
    DEALBOOKS_PROPERTY_GROUP,
    OWNED_PROPERTIES,
    MappedRecord,
    RecordOutcomes,
)


@dataclass(frozen=True)
class RecordKind:
    """How one QBO entity maps onto one CRM object type."""

    object_type: SyncObjectType
    qbo_entity: str
    qbo_model: type[Entity]
    crm_object: str
    link_property: str
    upsert_property: str
    key_of: Callable[[str, MappedRecord], str | None]
    outcomes: RecordOutcomes

    def property_definitions(self) -> list[PropertyDefinition]:
        """The dealbooks-owned CRM properties this kind writes."""
        defs = []
        for prop in OWNED_PROPERTIES[self.object_type]:
            fields: dict[str, Any] = {
                "name": prop.name,
                "label": prop.label,
                "type": prop.type,
                "fieldType": "booleancheckbox" if prop.type == "bool" else "text",
                "groupName": DEALBOOKS_PROPERTY_GROUP,
            }
            if prop.name == self.upsert_property or prop.name == self.link_property:
                fields["hasUniqueValue"] = True
            defs.append(PropertyDefinition.model_validate(fields))
        return defs
