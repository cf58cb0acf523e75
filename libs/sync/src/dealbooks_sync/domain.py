"""Pure rules of QBO -> CRM record sync: which QBO fields and CRM properties exist, which
mappings are valid, what a mapping writes, and what a sync does with one record.

The mapping registry (validation, dry run) and the sync services (the real write) share these
functions, so a dry run shows exactly what the next sync will write. No I/O here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from dealbooks_contracts import (
    CreateUpdatePolicy,
    DeletePolicy,
    EventPayload,
    FieldMapping,
    MappingTransform,
    SyncAction,
    SyncFailureCode,
    SyncObjectType,
    SyncSettings,
    SyncTrigger,
)

__all__ = [
    "CONTACT_ID_PROPERTY",
    "DEALBOOKS_PROPERTY_GROUP",
    "OWNED_PROPERTIES",
    "PRODUCT_ID_PROPERTY",
    "QBO_FIELDS",
    "REQUIRED_CRM_PROPERTY",
    "Archive",
    "CrmProperty",
    "Decision",
    "MappedRecord",
    "MappingProblem",
    "MappingRejected",
    "ProblemCode",
    "RecordFacts",
    "RecordOutcomes",
    "Skip",
    "ValueKind",
    "Write",
    "add_mapping",
    "apply_mappings",
    "check_mapping",
    "cleared_properties",
    "crm_types_for",
    "decide",
    "default_mappings",
    "default_settings",
    "delete_mapping",
    "edit_mapping",
    "fingerprint",
    "mapping_id_for",
    "retries_exhausted",
    "settings_changed",
]


class ValueKind(StrEnum):
    """What a QBO field holds (after any transform)."""

    TEXT = "text"
    NUMBER = "number"
    BOOL = "bool"
    DATE = "date"
    DATETIME = "datetime"
    ADDRESS = "address"


_T, _N, _B, _D, _DT, _A = (
    ValueKind.TEXT,
    ValueKind.NUMBER,
    ValueKind.BOOL,
    ValueKind.DATE,
    ValueKind.DATETIME,
    ValueKind.ADDRESS,
)
_ADDRESS_PARTS = ("Line1", "Line2", "City", "CountrySubDivisionCode", "PostalCode", "Country")


def _address_fields(prefix: str) -> dict[str, ValueKind]:
    return {prefix: _A, **{f"{prefix}.{part}": _T for part in _ADDRESS_PARTS}}


_COMMON_FIELDS: dict[str, ValueKind] = {
    "Id": _T,
    "MetaData.CreateTime": _DT,
    "MetaData.LastUpdatedTime": _DT,
}

QBO_FIELDS: dict[SyncObjectType, dict[str, ValueKind]] = {
    SyncObjectType.CONTACTS: {
        **_COMMON_FIELDS,
        "DisplayName": _T,
        "Title": _T,
        "GivenName": _T,
        "MiddleName": _T,
        "FamilyName": _T,
        "Suffix": _T,
        "CompanyName": _T,
        "PrimaryEmailAddr.Address": _T,
        "PrimaryPhone.FreeFormNumber": _T,
        "Mobile.FreeFormNumber": _T,
        "Fax.FreeFormNumber": _T,
        "WebAddr.URI": _T,
        "Notes": _T,
        "CurrencyRef.value": _T,
        "Balance": _N,
        "Active": _B,
        "Taxable": _B,
        **_address_fields("BillAddr"),
        **_address_fields("ShipAddr"),
    },
    SyncObjectType.PRODUCTS: {
        **_COMMON_FIELDS,
        "Name": _T,
        "FullyQualifiedName": _T,
        "Sku": _T,
        "Description": _T,
        "Type": _T,
        "IncomeAccountRef.name": _T,
        "UnitPrice": _N,
        "PurchaseCost": _N,
        "QtyOnHand": _N,
        "Active": _B,
        "Taxable": _B,
        "TrackQtyOnHand": _B,
        "InvStartDate": _D,
    },
}
"""Every QBO field a mapping may read, per object type, as a dotted path."""

# CRM property types (HubSpot `type`) each value kind may be written into. Text never goes into
# a number, a date or an enumeration: the CRM would reject or silently mangle it.
_COMPATIBLE: dict[ValueKind, frozenset[str]] = {
    _T: frozenset({"string", "phone_number"}),
    _N: frozenset({"number", "string"}),
    _B: frozenset({"bool", "string"}),
    _D: frozenset({"date", "datetime", "string"}),
    _DT: frozenset({"datetime", "string"}),
    _A: frozenset(),
}


def crm_types_for(kind: ValueKind) -> frozenset[str]:
    """The CRM property types a value of `kind` can be written into."""
    return _COMPATIBLE[kind]


# transform -> (value kinds it accepts, value kind it produces)
_TRANSFORMS: dict[MappingTransform, tuple[frozenset[ValueKind], ValueKind]] = {
    MappingTransform.JOIN_GIVEN_FAMILY_NAME: (frozenset({_T}), _T),
    MappingTransform.DECIMAL_TO_STRING: (frozenset({_N}), _T),
    MappingTransform.BOOLEAN_TO_STRING: (frozenset({_B}), _T),
    MappingTransform.DATE_TO_STRING: (frozenset({_D, _DT}), _T),
    MappingTransform.ADDRESS_TO_TEXT: (frozenset({_A}), _T),
}

DEALBOOKS_PROPERTY_GROUP = "dealbooks"
CONTACT_ID_PROPERTY = "dealbooks_qbo_customer_id"
"""Contact property holding the QBO customer id: the CRM side of the link."""
PRODUCT_ID_PROPERTY = "dealbooks_qbo_item_id"
"""Unique product property holding the QBO item id: the key products are upserted by."""
PRODUCT_ACTIVE_PROPERTY = "dealbooks_qbo_active"


@dataclass(frozen=True)
class CrmProperty:
    """What validation needs to know about one CRM property."""

    name: str
    type: str
    read_only: bool = False
    label: str = ""


OWNED_PROPERTIES: dict[SyncObjectType, tuple[CrmProperty, ...]] = {
    SyncObjectType.CONTACTS: (
        CrmProperty(CONTACT_ID_PROPERTY, "string", read_only=True, label="QuickBooks customer id"),
    ),
    SyncObjectType.PRODUCTS: (
        CrmProperty(PRODUCT_ID_PROPERTY, "string", read_only=True, label="QuickBooks item id"),
        CrmProperty(PRODUCT_ACTIVE_PROPERTY, "bool", label="Active in QuickBooks"),
    ),
}
"""Properties dealbooks creates in every portal. The read-only ones only dealbooks writes."""

REQUIRED_CRM_PROPERTY: dict[SyncObjectType, str] = {
    SyncObjectType.CONTACTS: "email",
    SyncObjectType.PRODUCTS: "name",
}
"""The CRM property each object type cannot be synced without (contacts are keyed by email)."""


# ---- mapping sets ------------------------------------------------------------------------


def mapping_id_for(crm_property: str) -> str:
    """The stable id of the mapping that writes `crm_property` (one mapping per property)."""
    return f"m-{crm_property.replace('_', '-')}"


def _mapping(
    crm_property: str, qbo_field: str, transform: MappingTransform | None = None
) -> FieldMapping:
    return FieldMapping(
        mapping_id=mapping_id_for(crm_property),
        crm_property=crm_property,
        qbo_field=qbo_field,
        transform=transform,
    )


def default_mappings(object_type: SyncObjectType) -> list[FieldMapping]:
    """The mappings a newly connected account starts with."""
    if object_type is SyncObjectType.CONTACTS:
        mappings = [
            _mapping("email", "PrimaryEmailAddr.Address"),
            _mapping("firstname", "GivenName"),
            _mapping("lastname", "FamilyName"),
            _mapping("company", "CompanyName"),
            _mapping("phone", "PrimaryPhone.FreeFormNumber"),
            _mapping("mobilephone", "Mobile.FreeFormNumber"),
            _mapping("address", "BillAddr.Line1"),
            _mapping("city", "BillAddr.City"),
            _mapping("state", "BillAddr.CountrySubDivisionCode"),
            _mapping("zip", "BillAddr.PostalCode"),
            _mapping("country", "BillAddr.Country"),
        ]
    else:
        mappings = [
            _mapping("name", "Name"),
            _mapping("hs_sku", "Sku"),
            _mapping("description", "Description"),
            _mapping("price", "UnitPrice"),
            _mapping(PRODUCT_ACTIVE_PROPERTY, "Active"),
        ]
    required = REQUIRED_CRM_PROPERTY[object_type]
    return [m.model_copy(update={"required": m.crm_property == required}) for m in mappings]


def default_settings() -> SyncSettings:
    """Sync starts switched off: the portal turns it on (the behaviour users know)."""
    return SyncSettings(
        enabled=False,
        create_update_policy=CreateUpdatePolicy.CREATE_AND_UPDATE,
        delete_policy=DeletePolicy.ARCHIVE,
    )


def settings_changed(current: SyncSettings, proposed: SyncSettings, now: datetime) -> SyncSettings:
    """The settings to store: switching sync on stamps `enabled_since`, which decides which
    QBO records count as new; other changes keep the stamp."""
    if proposed.enabled and not current.enabled:
        return proposed.model_copy(update={"enabled_since": now})
    if not proposed.enabled:
        return proposed.model_copy(update={"enabled_since": None})
    return proposed.model_copy(update={"enabled_since": current.enabled_since})


class ProblemCode(StrEnum):
    """Why a mapping change was refused."""

    UNKNOWN_CRM_PROPERTY = "UNKNOWN_CRM_PROPERTY"
    UNKNOWN_QBO_FIELD = "UNKNOWN_QBO_FIELD"
    INCOMPATIBLE_TYPES = "INCOMPATIBLE_TYPES"
    DUPLICATE_CRM_PROPERTY = "DUPLICATE_CRM_PROPERTY"
    REQUIRED_MAPPING = "REQUIRED_MAPPING"
    READ_ONLY_PROPERTY = "READ_ONLY_PROPERTY"
    UNKNOWN_MAPPING = "UNKNOWN_MAPPING"


@dataclass(frozen=True)
class MappingProblem:
    """One reason a mapping change is refused, in words a portal admin can act on."""

    code: ProblemCode
    message: str
    field: str | None = None


class MappingRejected(Exception):
    """A proposed mapping change breaks one or more rules."""

    def __init__(self, problems: Sequence[MappingProblem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = list(problems)


def _source_kind(object_type: SyncObjectType, qbo_field: str) -> ValueKind | None:
    return QBO_FIELDS[object_type].get(qbo_field)


def check_mapping(
    object_type: SyncObjectType,
    mapping: FieldMapping,
    crm_properties: Mapping[str, CrmProperty],
) -> list[MappingProblem]:
    """Problems of one mapping on its own: unknown names, read-only target, type clash."""
    problems: list[MappingProblem] = []
    source = _source_kind(object_type, mapping.qbo_field)
    target = crm_properties.get(mapping.crm_property)
    if source is None:
        problems.append(
            MappingProblem(
                ProblemCode.UNKNOWN_QBO_FIELD,
                f"QuickBooks has no field '{mapping.qbo_field}' on "
                f"{_qbo_entity(object_type)} records.",
                "qbo_field",
            )
        )
    if target is None:
        problems.append(
            MappingProblem(
                ProblemCode.UNKNOWN_CRM_PROPERTY,
                f"The CRM has no {object_type.value} property '{mapping.crm_property}'.",
                "crm_property",
            )
        )
    elif target.read_only:
        problems.append(
            MappingProblem(
                ProblemCode.READ_ONLY_PROPERTY,
                f"The {object_type.value} property '{mapping.crm_property}' is read-only.",
                "crm_property",
            )
        )
    if source is None or target is None:
        return problems
    produced = source
    if mapping.transform is not None:
        accepts, produced = _TRANSFORMS[mapping.transform]
        if source not in accepts:
            problems.append(
                MappingProblem(
                    ProblemCode.INCOMPATIBLE_TYPES,
                    f"The transform '{mapping.transform.value}' cannot read '{mapping.qbo_field}' "
                    f"({source.value}).",
                    "transform",
                )
            )
            return problems
    if target.type not in _COMPATIBLE[produced]:
        hint = " Use the address_to_text transform." if produced is _A else ""
        problems.append(
            MappingProblem(
                ProblemCode.INCOMPATIBLE_TYPES,
                f"'{mapping.qbo_field}' holds {produced.value}, which cannot be written into "
                f"'{mapping.crm_property}' ({target.type}).{hint}",
                "crm_property",
            )
        )
    return problems


def _check_set(object_type: SyncObjectType, mappings: Sequence[FieldMapping]) -> None:
    problems: list[MappingProblem] = []
    seen: set[str] = set()
    for mapping in mappings:
        if mapping.crm_property in seen:
            problems.append(
                MappingProblem(
                    ProblemCode.DUPLICATE_CRM_PROPERTY,
                    f"Another mapping already writes '{mapping.crm_property}'.",
                    "crm_property",
                )
            )
        seen.add(mapping.crm_property)
    required = REQUIRED_CRM_PROPERTY[object_type]
    if required not in seen:
        problems.append(
            MappingProblem(
                ProblemCode.REQUIRED_MAPPING,
                f"The mapping to '{required}' is required for {object_type.value}.",
                "crm_property",
            )
        )
    if problems:
        raise MappingRejected(problems)


def _owned_or_portal(
    object_type: SyncObjectType, crm_properties: Mapping[str, CrmProperty]
) -> dict[str, CrmProperty]:
    return {**crm_properties, **{p.name: p for p in OWNED_PROPERTIES[object_type]}}


def add_mapping(
    object_type: SyncObjectType,
    current: Sequence[FieldMapping],
    crm_property: str,
    qbo_field: str,
    transform: MappingTransform | None,
    crm_properties: Mapping[str, CrmProperty],
) -> list[FieldMapping]:
    """The mapping set with one mapping added; raises `MappingRejected` with every reason."""
    new = FieldMapping(
        mapping_id=mapping_id_for(crm_property),
        crm_property=crm_property,
        qbo_field=qbo_field,
        transform=transform,
    )
    problems = check_mapping(object_type, new, _owned_or_portal(object_type, crm_properties))
    if problems:
        raise MappingRejected(problems)
    proposed = [*current, new]
    _check_set(object_type, proposed)
    return proposed


def edit_mapping(
    object_type: SyncObjectType,
    current: Sequence[FieldMapping],
    mapping_id: str,
    changes: Mapping[str, Any],
    crm_properties: Mapping[str, CrmProperty],
) -> list[FieldMapping]:
    """The mapping set with one mapping changed (crm_property, qbo_field and/or transform)."""
    old = _find(current, mapping_id)
    allowed = {k: v for k, v in changes.items() if k in {"crm_property", "qbo_field", "transform"}}
    edited = FieldMapping.model_validate({**old.model_dump(), **allowed})
    if old.required and edited.crm_property != old.crm_property:
        raise MappingRejected(
            [
                MappingProblem(
                    ProblemCode.REQUIRED_MAPPING,
                    f"The mapping to '{old.crm_property}' is required; its CRM property "
                    "cannot change.",
                    "crm_property",
                )
            ]
        )
    problems = check_mapping(object_type, edited, _owned_or_portal(object_type, crm_properties))
    if problems:
        raise MappingRejected(problems)
    proposed = [edited if m.mapping_id == mapping_id else m for m in current]
    _check_set(object_type, proposed)
    return proposed


def delete_mapping(
    object_type: SyncObjectType, current: Sequence[FieldMapping], mapping_id: str
) -> list[FieldMapping]:
    """The mapping set without one mapping; a required mapping cannot be deleted."""
    old = _find(current, mapping_id)
    if old.required:
        raise MappingRejected(
            [
                MappingProblem(
                    ProblemCode.REQUIRED_MAPPING,
                    f"The mapping to '{old.crm_property}' is required for {object_type.value} "
                    "and cannot be deleted.",
                )
            ]
        )
    proposed = [m for m in current if m.mapping_id != mapping_id]
    _check_set(object_type, proposed)
    return proposed


def _find(current: Sequence[FieldMapping], mapping_id: str) -> FieldMapping:
    for mapping in current:
        if mapping.mapping_id == mapping_id:
            return mapping
    raise MappingRejected(
        [MappingProblem(ProblemCode.UNKNOWN_MAPPING, f"There is no mapping '{mapping_id}'.")]
    )


def _qbo_entity(object_type: SyncObjectType) -> str:
    return "Customer" if object_type is SyncObjectType.CONTACTS else "Item"


# ---- applying mappings ---------------------------------------------------------------------


@dataclass(frozen=True)
class MappedRecord:
    """What the mappings write for one QBO record: CRM property values (strings, as the CRM
    stores them), which mappings wrote a value, and the mappings whose value was unusable."""

    properties: dict[str, str]
    written: list[str]
    errors: dict[str, str] = field(default_factory=dict)


def _lookup(entity: Mapping[str, Any], path: str) -> Any:
    value: Any = entity
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _as_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    # str() first: a float from a JSON parser becomes its shortest exact decimal spelling.
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"'{value}' is not a number") from exc


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise ValueError(f"'{value}' is not true or false")


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _address_text(value: Any) -> str:
    if not isinstance(value, Mapping):
        raise ValueError("not an address")
    street = ", ".join(str(value[p]) for p in ("Line1", "Line2") if value.get(p))
    region = " ".join(
        str(value[p]) for p in ("CountrySubDivisionCode", "PostalCode") if value.get(p)
    )
    parts = [street, str(value.get("City") or ""), region, str(value.get("Country") or "")]
    return ", ".join(p for p in parts if p)


def _render(kind: ValueKind, value: Any, crm_type: str) -> str:
    """A value as the CRM stores it: numbers exact, booleans 'true'/'false', ISO dates."""
    if kind is _N:
        return format(_as_decimal(value), "f")
    if kind is _B:
        return "true" if _as_bool(value) else "false"
    if kind in (_D, _DT):
        moment = _as_datetime(value).astimezone(UTC)
        if crm_type == "date" or (kind is _D and crm_type != "datetime"):
            return moment.date().isoformat()
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if kind is _A:
        return _address_text(value)
    return str(value).strip()


def _transformed(
    mapping: FieldMapping, entity: Mapping[str, Any], source: ValueKind, value: Any
) -> tuple[ValueKind, Any]:
    transform = mapping.transform
    if transform is None:
        return source, value
    if transform is MappingTransform.JOIN_GIVEN_FAMILY_NAME:
        names = [_lookup(entity, "GivenName"), _lookup(entity, "FamilyName")]
        return _T, " ".join(str(n).strip() for n in names if n and str(n).strip()) or None
    if transform is MappingTransform.DECIMAL_TO_STRING:
        return _T, format(_as_decimal(value), "f")
    if transform is MappingTransform.BOOLEAN_TO_STRING:
        return _T, "true" if _as_bool(value) else "false"
    if transform is MappingTransform.DATE_TO_STRING:
        return _T, _as_datetime(value).astimezone(UTC).date().isoformat()
    return _T, _address_text(value)


def apply_mappings(
    object_type: SyncObjectType,
    entity: Mapping[str, Any],
    mappings: Sequence[FieldMapping],
    crm_types: Mapping[str, str] | None = None,
) -> MappedRecord:
    """What `mappings` write for one QBO record (its JSON as QBO returns it).

    A field QBO leaves out or empty is not written here; `cleared_properties` decides which of
    those the sync clears. `crm_types` (property -> CRM type) refines date rendering; strings
    otherwise.
    """
    properties: dict[str, str] = {}
    written: list[str] = []
    errors: dict[str, str] = {}
    for mapping in mappings:
        source = _source_kind(object_type, mapping.qbo_field)
        if source is None:
            errors[mapping.mapping_id] = f"QuickBooks has no field '{mapping.qbo_field}'"
            continue
        raw = _lookup(entity, mapping.qbo_field)
        joins = mapping.transform is MappingTransform.JOIN_GIVEN_FAMILY_NAME
        if raw is None and not joins:
            continue
        try:
            kind, value = _transformed(mapping, entity, source, raw)
            if value is None:
                continue
            rendered = _render(kind, value, (crm_types or {}).get(mapping.crm_property, "string"))
        except (ValueError, TypeError) as exc:
            errors[mapping.mapping_id] = f"'{mapping.qbo_field}': {exc}"
            continue
        if rendered == "":
            continue
        properties[mapping.crm_property] = rendered
        written.append(mapping.mapping_id)
    return MappedRecord(properties, written, errors)


def cleared_properties(
    mappings: Sequence[FieldMapping], mapped: MappedRecord, previously_written: Collection[str]
) -> dict[str, str]:
    """The CRM properties a sync clears, each with the mapping that clears it.

    QuickBooks is the source of a mapped property, so when a field dealbooks filled last time
    is now empty in QuickBooks, the CRM value is cleared rather than left stale. A property
    dealbooks never filled (a value someone set in the CRM before the record was linked) is
    left alone, as is one whose QBO value could not be used (that is reported as an error).
    """
    return {
        m.crm_property: m.mapping_id
        for m in mappings
        if m.crm_property in previously_written
        and m.crm_property not in mapped.properties
        and m.mapping_id not in mapped.errors
    }


def fingerprint(properties: Mapping[str, str]) -> str:
    """A stable digest of what was written, to recognise a sync that would change nothing."""
    canonical = json.dumps(dict(sorted(properties.items())), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# ---- what a sync does with one record -------------------------------------------------------


@dataclass(frozen=True)
class RecordFacts:
    """What the sync knows about one QBO record before deciding."""

    active: bool
    created_at: datetime | None
    linked: bool
    trigger: SyncTrigger = SyncTrigger.WEBHOOK
    merged_away: bool = False


@dataclass(frozen=True)
class Write:
    """Write the mapped properties; `create_allowed` False means update an existing record only."""

    create_allowed: bool


@dataclass(frozen=True)
class Archive:
    """Archive the linked CRM record (the delete policy says so)."""


@dataclass(frozen=True)
class Skip:
    """Leave the CRM alone, for a reason a person can read."""

    reason: str


Decision = Write | Archive | Skip


def decide(settings: SyncSettings, facts: RecordFacts) -> Decision:
    """Apply the portal's switch, create-and-update policy and delete policy to one record."""
    if not settings.enabled:
        return Skip("sync is switched off")
    if not facts.active or facts.merged_away:
        gone = "merged into another record" if facts.merged_away else "inactive in QuickBooks"
        if settings.delete_policy is DeletePolicy.DO_NOTHING:
            return Skip(f"{gone}; the delete policy keeps the CRM record")
        if not facts.linked:
            return Skip(f"{gone} and never synced")
        return Archive()
    policy = settings.create_update_policy
    if policy is CreateUpdatePolicy.DO_NOTHING:
        return Skip("the create-and-update policy is 'do nothing'")
    if facts.linked:
        return Write(create_allowed=False)
    if policy is CreateUpdatePolicy.UPDATE_EXISTING_ONLY:
        return Write(create_allowed=False)
    # QBO stamps CreateTime in whole seconds: a record made in the second sync was switched on
    # counts as new.
    switched_on = settings.enabled_since.replace(microsecond=0) if settings.enabled_since else None
    created_before_switch = (
        switched_on is not None and facts.created_at is not None and facts.created_at < switched_on
    )
    if facts.trigger is SyncTrigger.WEBHOOK and created_before_switch:
        return Skip("created in QuickBooks before sync was switched on; a backfill syncs it")
    return Write(create_allowed=True)


def retries_exhausted(attempts: int, last_error: str) -> str:
    """Why a record was given up on after temporary failures, and what the user can do; the
    sync services prefix it with the record ("Customer 58 was not synced: ...")."""
    error = last_error if len(last_error) <= 200 else last_error[:199] + "\u2026"
    return (
        f"QuickBooks or the CRM kept failing temporarily through {attempts} attempts "
        f"(last error: {error}); it syncs again with its next change in QuickBooks, "
        "or start a backfill to sync it now"
    )


@dataclass(frozen=True)
class RecordOutcomes:
    """The `*.synced` and `*.sync-failed` payloads of one record kind, whose id fields carry
    the kind's names (`qbo_customer_id`, `crm_contact_id`, ...)."""

    synced_event: type[EventPayload]
    failed_event: type[EventPayload]
    qbo_entity: str
    qbo_id_field: str
    crm_id_field: str

    def synced(
        self,
        *,
        qbo_id: str,
        crm_id: str | None,
        action: SyncAction,
        trigger: SyncTrigger,
        mapping_version: int,
        mapping_ids: list[str],
        skipped_reason: str | None,
    ) -> EventPayload:
        """The `*.synced` payload of one outcome."""
        return self.synced_event(
            **{self.qbo_id_field: qbo_id, self.crm_id_field: crm_id},
            action=action,
            trigger=trigger,
            mapping_version=mapping_version,
            mapping_ids=mapping_ids,
            skipped_reason=skipped_reason,
        )

    def failed(
        self,
        *,
        qbo_id: str,
        crm_id: str | None,
        code: SyncFailureCode,
        message: str,
        trigger: SyncTrigger,
        permanent: bool,
        mapping_version: int | None,
        mapping_id: str | None,
        crm_property: str | None,
        attempts: int = 1,
    ) -> EventPayload:
        """The `*.sync-failed` payload of one failure, its message naming the QBO record."""
        return self.failed_event(
            **{self.qbo_id_field: qbo_id, self.crm_id_field: crm_id},
            code=code,
            message=f"{self.qbo_entity} {qbo_id} was not synced: {message}.",
            trigger=trigger,
            permanent=permanent,
            attempts=attempts,
            mapping_version=mapping_version,
            mapping_id=mapping_id,
            crm_property=crm_property,
        )
