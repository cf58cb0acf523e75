"""What the gateway decides about one notification. Pure: no I/O, no frameworks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from dealbooks_contracts import CrmChange, CrmObjectChanged, CrmObjectType, QboEntityChanged
from dealbooks_contracts import QboOperation as Op
from pydantic import ValidationError


@dataclass(frozen=True)
class Rejected:
    """A notification we accept from the sender but cannot turn into an event."""

    reason: str


@dataclass(frozen=True)
class QboNotification:
    """One entity change as either QBO webhook format carries it."""

    realm_id: str
    entity: str
    entity_id: str
    operation: str
    occurred_at: datetime | None
    deleted_id: str | None
    event_id: str | None


# Every QuickBooks entity, spelled as its API spells it: the entities of Intuit's schema
# (IntuitRestServiceDef.xsd in intuit/QuickBooks-V3-Java-SDK) and Currency, the webhooks' name
# for CompanyCurrency. CloudEvents types carry them in lower case (qbo.companyinfo.updated.v1).
QBO_ENTITY_NAMES: tuple[str, ...] = (
    "Account",
    "Attachable",
    "Bill",
    "BillPayment",
    "BooleanTypeCustomFieldDefinition",
    "Budget",
    "ChargeCredit",
    "Class",
    "Company",
    "CompanyCurrency",
    "CompanyInfo",
    "CreditCardPaymentTxn",
    "CreditMemo",
    "Currency",
    "CustomFieldDefinition",
    "Customer",
    "CustomerType",
    "DateTypeCustomFieldDefinition",
    "Department",
    "Deposit",
    "EmailDeliveryInfo",
    "Employee",
    "Estimate",
    "ExchangeRate",
    "FixedAsset",
    "InventoryAdjustment",
    "InventorySite",
    "Invoice",
    "Item",
    "JournalCode",
    "JournalEntry",
    "MasterAccount",
    "NumberTypeCustomFieldDefinition",
    "OtherName",
    "Payment",
    "PaymentMethod",
    "Preferences",
    "PriceLevel",
    "Purchase",
    "PurchaseOrder",
    "QbdtEntityIdMapping",
    "RecurringTransaction",
    "RefundReceipt",
    "ReimburseCharge",
    "SalesOrder",
    "SalesReceipt",
    "SalesRep",
    "StatementCharge",
    "Status",
    "StringTypeCustomFieldDefinition",
    "SyncActivity",
    "TDSMetadata",
    "Tag",
    "Task",
    "TaxAgency",
    "TaxClassification",
    "TaxCode",
    "TaxPayment",
    "TaxRate",
    "TaxReturn",
    "Term",
    "TimeActivity",
    "Transfer",
    "UserAlert",
    "Vendor",
    "VendorCredit",
    "VendorType",
)
_QBO_ENTITY_CASE = {name.lower(): name for name in QBO_ENTITY_NAMES}


def qbo_entity_name(raw: str) -> str:
    """QuickBooks' own spelling of an entity name in any case ("companyinfo" is CompanyInfo);
    a name QuickBooks does not have is kept as given."""
    return _QBO_ENTITY_CASE.get(raw.lower(), raw)


def qbo_dedupe_key(n: QboNotification) -> str:
    """Stable across redeliveries: the CloudEvents id, else the change's own coordinates."""
    if n.event_id:
        return f"qbo:{n.event_id}"
    when = n.occurred_at.isoformat() if n.occurred_at else ""
    return f"qbo:{n.realm_id}:{n.entity}:{n.entity_id}:{n.operation}:{when}"


def qbo_event(n: QboNotification, received_at: datetime) -> QboEntityChanged | Rejected:
    """The `qbo.entity-changed` payload, or why the notification cannot be one."""
    if not n.realm_id:
        return Rejected("notification without a realm id")
    if n.operation not in {op.value for op in Op}:
        return Rejected(f"unknown operation {n.operation!r}")
    when = n.occurred_at or received_at
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return QboEntityChanged(
            realm_id=n.realm_id,
            entity=qbo_entity_name(n.entity),
            entity_id=n.entity_id,
            operation=Op(n.operation),
            last_updated=when,
            deleted_id=n.deleted_id or None,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        return Rejected(f"invalid {field}: {first['msg']}")


_CRM_TYPES = {t.value: t for t in CrmObjectType}
_CRM_CHANGES = {
    "creation": CrmChange.CREATED,
    "propertyChange": CrmChange.PROPERTY_CHANGED,
    "deletion": CrmChange.DELETED,
    "merge": CrmChange.MERGED,
    "restore": CrmChange.RESTORED,
    "associationChange": CrmChange.ASSOCIATION_CHANGED,
}


@dataclass(frozen=True)
class CrmNotification:
    """One element of a CRM webhook delivery."""

    portal_id: str
    event_id: str
    subscription_id: str
    subscription_type: str
    object_id: str
    occurred_at_ms: int
    property_name: str | None
    property_value: str | None
    change_source: str | None
    source_id: str | None
    merged_object_ids: list[str] | None = None


def crm_dedupe_key(n: CrmNotification) -> str:
    """The CRM's eventId is not unique on its own; this combination is."""
    return f"crm:{n.portal_id}:{n.subscription_id}:{n.event_id}:{n.object_id}:{n.occurred_at_ms}"


def is_own_write(n: CrmNotification, own_source_ids: frozenset[str]) -> bool:
    """Dealbooks wrote this change itself; publishing it would start a sync loop."""
    return n.source_id is not None and n.source_id in own_source_ids


def crm_event(n: CrmNotification) -> CrmObjectChanged | Rejected:
    """The `crm.object-changed` payload, or why this notification is not one we carry."""
    kind, _, verb = n.subscription_type.partition(".")
    object_type = _CRM_TYPES.get(kind)
    change = _CRM_CHANGES.get(verb)
    if object_type is None or change is None:
        return Rejected(f"unsupported subscription type {n.subscription_type!r}")
    if not n.object_id:
        return Rejected("event without an object id")
    return CrmObjectChanged(
        crm_event_id=n.event_id,
        object_type=object_type,
        object_id=n.object_id,
        change=change,
        changed_at=datetime.fromtimestamp(n.occurred_at_ms / 1000, tz=UTC),
        property_name=n.property_name,
        property_value=n.property_value,
        change_source=n.change_source,
        merged_object_ids=n.merged_object_ids,
    )
