"""Static HubSpot facts the emulator serves: object types, built-in properties,
association type ids (direction matters) and the default deal pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OBJECT_TYPE_IDS: dict[str, str] = {
    "contacts": "0-1",
    "companies": "0-2",
    "deals": "0-3",
    "products": "0-7",
    "line_items": "0-8",
    "quotes": "0-14",
    "notes": "0-46",
    "tasks": "0-27",
}
_ALIASES: dict[str, str] = {
    **{type_id: name for name, type_id in OBJECT_TYPE_IDS.items()},
    "contact": "contacts",
    "company": "companies",
    "deal": "deals",
    "product": "products",
    "line_item": "line_items",
    "quote": "quotes",
    "note": "notes",
    "task": "tasks",
}
SINGULAR: dict[str, str] = {
    "contacts": "contact",
    "companies": "company",
    "deals": "deal",
    "products": "product",
    "line_items": "line_item",
    "quotes": "quote",
    "notes": "note",
    "tasks": "task",
}


def canonical_type(name: str) -> str | None:
    """Resolve a path's `{objectType}` (plural name, singular name or `0-x` id)."""
    if name in OBJECT_TYPE_IDS:
        return name
    return _ALIASES.get(name)


VALID_FIELD_TYPES: dict[str, set[str]] = {
    "string": {"text", "textarea", "html", "phonenumber", "file", "calculation_equation"},
    "number": {"number", "calculation_equation"},
    "enumeration": {"select", "radio", "checkbox", "booleancheckbox", "calculation_equation"},
    "bool": {"booleancheckbox", "calculation_equation"},
    "date": {"date"},
    "datetime": {"date"},
    "phone_number": {"phonenumber"},
}


@dataclass
class PropertyDef:
    name: str
    type: str = "string"
    field_type: str = "text"
    label: str = ""
    group_name: str = ""
    description: str = ""
    options: list[dict[str, Any]] = field(default_factory=list)
    has_unique_value: bool = False
    hubspot_defined: bool = True
    read_only: bool = False
    calculated: bool = False
    hidden: bool = False
    display_order: int = -1
    created_at: str = "2019-08-06T02:41:52.000Z"
    updated_at: str = "2019-08-06T02:41:52.000Z"
    archived: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def option_values(self) -> set[str]:
        return {str(o.get("value")) for o in self.options}

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "label": self.label or self.name,
            "type": self.type,
            "fieldType": self.field_type,
            "description": self.description,
            "groupName": self.group_name,
            "options": [
                {
                    "label": o.get("label", o.get("value")),
                    "value": o.get("value"),
                    "displayOrder": o.get("displayOrder", i),
                    "hidden": o.get("hidden", False),
                    **({"description": o["description"]} if "description" in o else {}),
                }
                for i, o in enumerate(self.options)
            ],
            "displayOrder": self.display_order,
            "calculated": self.calculated,
            "externalOptions": False,
            "hasUniqueValue": self.has_unique_value,
            "hidden": self.hidden,
            "hubspotDefined": self.hubspot_defined,
            "formField": not self.read_only,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "archived": self.archived,
            "modificationMetadata": {
                "archivable": not self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only,
            },
        }
        body.update(self.extra)
        return body


def _p(name: str, type_: str = "string", field_type: str | None = None, **kw: Any) -> PropertyDef:
    default_field = {
        "number": "number",
        "date": "date",
        "datetime": "date",
        "bool": "booleancheckbox",
    }
    ft = field_type or default_field.get(type_, "text")
    return PropertyDef(name=name, type=type_, field_type=ft, label=kw.pop("label", name), **kw)


def _ro(name: str, type_: str = "string") -> PropertyDef:
    return _p(name, type_, read_only=True)


DEAL_STAGES = [
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
]
QUOTE_STATUSES = [
    "DRAFT",
    "APPROVAL_NOT_NEEDED",
    "PENDING_APPROVAL",
    "APPROVED",
    "REJECTED",
    "ACCEPTED",
]
PUBLISHED_QUOTE_STATUSES = {"APPROVAL_NOT_NEEDED", "APPROVED", "ACCEPTED"}
# The tasks guide's values for a task's status, priority and type.
TASK_STATUSES = ["NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"]
TASK_PRIORITIES = ["NONE", "LOW", "MEDIUM", "HIGH"]
TASK_TYPES = ["EMAIL", "CALL", "TODO", "LINKED_IN", "MEETING"]


def _options(values: list[str]) -> list[dict[str, Any]]:
    return [
        {"label": v, "value": v, "displayOrder": i, "hidden": False} for i, v in enumerate(values)
    ]


_COMMON = [_ro("hs_object_id", "number"), _ro("hs_lastmodifieddate", "datetime")]

BUILTIN_PROPERTIES: dict[str, list[PropertyDef]] = {
    "contacts": [
        *[
            _p(n, group_name="contactinformation")
            for n in [
                "email",
                "firstname",
                "lastname",
                "phone",
                "mobilephone",
                "company",
                "jobtitle",
                "website",
                "address",
                "city",
                "state",
                "zip",
                "country",
                "lifecyclestage",
                "hubspot_owner_id",
                "hs_additional_emails",
                "fax",
            ]
        ],
        _ro("createdate", "datetime"),
        _ro("lastmodifieddate", "datetime"),
        *_COMMON,
    ],
    "companies": [
        *[
            _p(n, group_name="companyinformation")
            for n in [
                "name",
                "domain",
                "phone",
                "address",
                "address2",
                "city",
                "state",
                "zip",
                "country",
                "industry",
                "website",
                "lifecyclestage",
                "hubspot_owner_id",
                "hs_additional_domains",
                "description",
            ]
        ],
        _ro("createdate", "datetime"),
        *_COMMON,
    ],
    "deals": [
        _p("dealname", group_name="dealinformation"),
        _p("amount", "number", group_name="dealinformation"),
        _p("closedate", "datetime", group_name="dealinformation"),
        _p("pipeline", "enumeration", "select", options=_options(["default"])),
        _p("dealstage", "enumeration", "radio", options=_options(DEAL_STAGES)),
        _p("hubspot_owner_id"),
        _p("dealtype"),
        _p("description", field_type="textarea"),
        _p("deal_currency_code", "enumeration", "select"),
        _ro("amount_in_home_currency", "number"),
        _ro("createdate", "datetime"),
        *_COMMON,
    ],
    "products": [
        _p("name"),
        _p("description", field_type="textarea"),
        _p("price", "number"),
        _p("hs_sku"),
        _p("hs_cost_of_goods_sold", "number"),
        _p("hs_recurring_billing_period"),
        _p("recurringbillingfrequency"),
        _p("hs_pricing_model"),
        _p("hs_tier_ranges"),
        _p("hs_tier_prices"),
        _p("hs_product_type"),
        _ro("createdate", "datetime"),
        *_COMMON,
    ],
    "line_items": [
        _p("name"),
        _p("description", field_type="textarea"),
        _p("quantity", "number"),
        _p("price", "number"),
        _p("amount", "number", calculated=True),
        _p("hs_product_id"),
        _p("hs_sku"),
        _p("hs_line_item_currency_code"),
        _p("discount", "number"),
        _p("hs_discount_percentage", "number"),
        _p("hs_total_discount", "number", calculated=True),
        _p("hs_tax_rate_group_id"),
        _p("recurringbillingfrequency"),
        _p("hs_recurring_billing_period"),
        _p("hs_recurring_billing_start_date", "date"),
        _p("hs_term_in_months", "number"),
        _ro("createdate", "datetime"),
        *_COMMON,
    ],
    "quotes": [
        _p("hs_title"),
        _p("hs_expiration_date", "datetime"),
        _p("hs_status", "enumeration", "select", options=_options(QUOTE_STATUSES)),
        _p("hs_quote_number"),
        _p("hs_currency"),
        _p("hs_template_type"),
        _p("hs_public_url_key"),
        _p("hs_language"),
        _p("hs_locale"),
        _p("hs_esign_enabled", "bool"),
        _p("hs_payment_enabled", "bool"),
        _p("hs_net_payment_terms"),
        _p("hs_quote_owner_id"),
        _ro("hs_locked", "bool"),
        _ro("hs_quote_link"),
        _ro("hs_pdf_download_link"),
        _ro("hs_quote_amount", "number"),
        _ro("hs_createdate", "datetime"),
        _ro("createdate", "datetime"),
        *_COMMON,
    ],
    # Notes: an activity on the records it is associated with; `hs_timestamp` places it on
    # their timelines and is required at create.
    "notes": [
        _p("hs_timestamp", "datetime", group_name="engagement"),
        _p("hs_note_body", field_type="html", group_name="engagement"),
        _p("hubspot_owner_id"),
        _p("hs_attachment_ids"),
        _ro("hs_createdate", "datetime"),
        *_COMMON,
    ],
    # Tasks: an activity with a due date (`hs_timestamp`, required at create) and a status.
    "tasks": [
        _p("hs_timestamp", "datetime", group_name="task"),
        _p("hs_task_subject", group_name="task"),
        _p("hs_task_body", field_type="html", group_name="task"),
        _p("hs_task_status", "enumeration", "select", options=_options(TASK_STATUSES)),
        _p("hs_task_priority", "enumeration", "select", options=_options(TASK_PRIORITIES)),
        _p("hs_task_type", "enumeration", "select", options=_options(TASK_TYPES)),
        _p("hs_task_reminders"),
        _p("hubspot_owner_id"),
        _ro("hs_task_completion_date", "datetime"),
        _ro("hs_createdate", "datetime"),
        *_COMMON,
    ],
}

DEFAULT_RETURNED: dict[str, list[str]] = {
    "contacts": [
        "firstname",
        "lastname",
        "email",
        "createdate",
        "lastmodifieddate",
        "hs_object_id",
    ],
    "companies": ["name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"],
    "deals": [
        "dealname",
        "amount",
        "closedate",
        "pipeline",
        "dealstage",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    ],
    "products": [
        "name",
        "description",
        "price",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    ],
    "line_items": [
        "quantity",
        "amount",
        "price",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    ],
    "quotes": [
        "hs_expiration_date",
        "hs_public_url_key",
        "hs_status",
        "hs_title",
        "hs_createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    ],
    "notes": ["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
    "tasks": ["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
}

SEARCHABLE: dict[str, list[str]] = {
    "deals": ["dealname", "pipeline", "dealstage", "description", "dealtype"],
    "contacts": ["firstname", "lastname", "email", "phone", "hs_additional_emails", "mobilephone"],
    "companies": ["name", "domain", "website", "phone"],
    "products": ["name", "description", "price", "hs_sku"],
    "line_items": ["name", "description", "hs_sku"],
    "quotes": ["hs_title", "hs_quote_number"],
    "notes": ["hs_note_body"],
    "tasks": ["hs_task_subject", "hs_task_body"],
}


@dataclass(frozen=True)
class AssociationKind:
    from_type: str
    to_type: str
    type_id: int
    label: str | None
    reverse_id: int
    name: str


def _pair(
    a: str, b: str, forward: int, reverse: int, label: str | None = None
) -> list[AssociationKind]:
    fwd = f"{SINGULAR[a]}_to_{SINGULAR[b]}"
    rev = f"{SINGULAR[b]}_to_{SINGULAR[a]}"
    return [
        AssociationKind(a, b, forward, label, reverse, fwd),
        AssociationKind(b, a, reverse, label, forward, rev),
    ]


ASSOCIATION_KINDS: list[AssociationKind] = [
    *_pair("deals", "contacts", 3, 4),
    *_pair("deals", "companies", 341, 342),
    *_pair("deals", "companies", 5, 6, "Primary"),
    *_pair("contacts", "companies", 279, 280),
    *_pair("contacts", "companies", 1, 2, "Primary"),
    *_pair("deals", "line_items", 19, 20),
    *_pair("deals", "quotes", 63, 64),
    *_pair("quotes", "line_items", 67, 68),
    *_pair("quotes", "contacts", 69, 70),
    *_pair("quotes", "companies", 71, 72),
    *_pair("notes", "contacts", 202, 201),
    *_pair("notes", "companies", 190, 189),
    *_pair("notes", "deals", 214, 213),
    *_pair("tasks", "contacts", 204, 203),
    *_pair("tasks", "companies", 192, 191),
    *_pair("tasks", "deals", 216, 215),
]
KIND_BY_ID: dict[tuple[str, str, int], AssociationKind] = {
    (k.from_type, k.to_type, k.type_id): k for k in ASSOCIATION_KINDS
}


def default_kind(from_type: str, to_type: str) -> AssociationKind | None:
    """The unlabeled HUBSPOT_DEFINED type between two object types, if any."""
    for k in ASSOCIATION_KINDS:
        if k.from_type == from_type and k.to_type == to_type and k.label is None:
            return k
    return None


def unlabeled_of(kind: AssociationKind) -> AssociationKind | None:
    """A labelled (primary) association always carries the unlabeled one with it."""
    if kind.label is None:
        return None
    return default_kind(kind.from_type, kind.to_type)
