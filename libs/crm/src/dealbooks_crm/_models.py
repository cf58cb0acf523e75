from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dealbooks_crm._values import to_decimal

__all__ = [
    "AccountDetails",
    "AppEventOccurrence",
    "AssociatedObject",
    "AssociationType",
    "BatchError",
    "BatchResult",
    "CrmObject",
    "DealDetails",
    "Filter",
    "FilterGroup",
    "Property",
    "PropertyDefinition",
    "PropertyGroup",
    "PropertyOption",
    "QuoteDetails",
    "SearchPage",
    "SearchRequest",
    "Sort",
    "TimelineEvent",
    "TimelineEventResult",
    "WebhookEvent",
]


class _Model(BaseModel):
    # HubSpot adds fields over time; unknown ones are kept, never rejected.
    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True)


class AssociationRef(_Model):
    id: str
    type: str | None = None


class AssociationRefs(_Model):
    results: list[AssociationRef] = Field(default_factory=list)


class PropertyHistoryEntry(_Model):
    value: str | None = None
    timestamp: datetime | None = None
    source_type: str | None = Field(None, alias="sourceType")
    source_id: str | None = Field(None, alias="sourceId")


class CrmObject(_Model):
    """`SimplePublicObject`: every property value is a string (or null when unset)."""

    id: str
    properties: dict[str, str | None] = Field(default_factory=dict)
    created_at: datetime | None = Field(None, alias="createdAt")
    updated_at: datetime | None = Field(None, alias="updatedAt")
    archived: bool = False
    archived_at: datetime | None = Field(None, alias="archivedAt")
    associations: dict[str, AssociationRefs] | None = None
    properties_with_history: dict[str, list[PropertyHistoryEntry]] | None = Field(
        None, alias="propertiesWithHistory"
    )
    new: bool | None = None

    def get(self, name: str) -> str | None:
        """A property's value, None when unset or empty."""
        value = self.properties.get(name)
        return value if value not in (None, "") else None

    def decimal(self, name: str) -> Decimal | None:
        """A number property as Decimal (money stays exact)."""
        return to_decimal(self.properties.get(name))

    def associated_ids(self, object_type: str) -> list[str]:
        """Ids from the `associations` block of a read with `associations=`."""
        refs = (self.associations or {}).get(object_type)
        return list(dict.fromkeys(r.id for r in refs.results)) if refs else []


class BatchError(_Model):
    status: str | None = None
    category: str | None = None
    message: str = ""
    context: dict[str, Any] = Field(default_factory=dict)
    errors: list[dict[str, Any]] = Field(default_factory=list)
    sub_category: str | None = Field(None, alias="subCategory")


class BatchResult(_Model):
    """A batch response; `errors` is non-empty when HubSpot answered 207 Multi-Status."""

    status: str = "COMPLETE"
    results: list[CrmObject] = Field(default_factory=list)
    errors: list[BatchError] = Field(default_factory=list)
    num_errors: int = Field(0, alias="numErrors")

    def merge(self, other: BatchResult) -> BatchResult:
        """Combine the results of two chunks of one logical batch."""
        return BatchResult(
            status=other.status if other.status != "COMPLETE" else self.status,
            results=[*self.results, *other.results],
            errors=[*self.errors, *other.errors],
            numErrors=self.num_errors + other.num_errors,
        )


class SearchPage(_Model):
    total: int = 0
    results: list[CrmObject] = Field(default_factory=list)
    paging: dict[str, Any] | None = None

    @property
    def next_after(self) -> str | None:
        nxt = (self.paging or {}).get("next") or {}
        after = nxt.get("after")
        return str(after) if after is not None else None


Operator = Literal[
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
]


class Filter(_Model):
    property_name: str = Field(alias="propertyName")
    operator: Operator
    value: str | None = None
    values: list[str] | None = None
    high_value: str | None = Field(None, alias="highValue")


class FilterGroup(_Model):
    filters: list[Filter]


class Sort(_Model):
    property_name: str = Field(alias="propertyName")
    direction: Literal["ASCENDING", "DESCENDING"] = "ASCENDING"


MAX_FILTER_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS_TOTAL = 18
MAX_SEARCH_PAGE = 200


class SearchRequest(_Model):
    """A CRM search body. Caps are checked here, before a request is spent on a 400."""

    filter_groups: list[FilterGroup] = Field(default_factory=list, alias="filterGroups")
    sorts: list[Sort] = Field(default_factory=list)
    properties: list[str] = Field(default_factory=list)
    limit: int = Field(100, ge=1, le=MAX_SEARCH_PAGE)
    after: str | None = None
    query: str | None = None

    def check_caps(self) -> None:
        """Raise ValueError when the request exceeds HubSpot's filter caps (5/6/18)."""
        groups = self.filter_groups
        if len(groups) > MAX_FILTER_GROUPS:
            raise ValueError(f"at most {MAX_FILTER_GROUPS} filter groups")
        if any(len(g.filters) > MAX_FILTERS_PER_GROUP for g in groups):
            raise ValueError(f"at most {MAX_FILTERS_PER_GROUP} filters per group")
        if sum(len(g.filters) for g in groups) > MAX_FILTERS_TOTAL:
            raise ValueError(f"at most {MAX_FILTERS_TOTAL} filters in total")

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class PropertyOption(_Model):
    label: str
    value: str
    display_order: int | None = Field(None, alias="displayOrder")
    hidden: bool = False
    description: str | None = None


PropertyType = Literal[
    "bool", "date", "datetime", "enumeration", "number", "phone_number", "string"
]


class PropertyDefinition(_Model):
    """A custom property to create (`PropertyCreate`)."""

    name: str
    label: str
    type: PropertyType
    field_type: str = Field(alias="fieldType")
    group_name: str = Field(alias="groupName")
    description: str | None = None
    options: list[PropertyOption] | None = None
    has_unique_value: bool | None = Field(None, alias="hasUniqueValue")
    display_order: int | None = Field(None, alias="displayOrder")
    hidden: bool | None = None
    form_field: bool | None = Field(None, alias="formField")
    number_display_hint: str | None = Field(None, alias="numberDisplayHint")
    show_currency_symbol: bool | None = Field(None, alias="showCurrencySymbol")

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class Property(_Model):
    """A property definition as the API returns it."""

    name: str
    label: str = ""
    type: str = "string"
    field_type: str = Field("text", alias="fieldType")
    group_name: str = Field("", alias="groupName")
    options: list[PropertyOption] = Field(default_factory=list)
    has_unique_value: bool = Field(False, alias="hasUniqueValue")
    hubspot_defined: bool | None = Field(None, alias="hubspotDefined")
    archived: bool = False


class PropertyGroup(_Model):
    name: str
    label: str = ""
    display_order: int | None = Field(None, alias="displayOrder")
    archived: bool = False


class AssociationType(_Model):
    category: str
    type_id: int = Field(alias="typeId")
    label: str | None = None


class AssociatedObject(_Model):
    """One row of a v4 association read: the other object and every type linking them."""

    to_object_id: str = Field(alias="toObjectId")
    association_types: list[AssociationType] = Field(default_factory=list, alias="associationTypes")

    @property
    def type_ids(self) -> set[int]:
        return {t.type_id for t in self.association_types}


def _timestamped_body(model: _Model, timestamp: datetime | None) -> dict[str, Any]:
    """A timeline record as the API takes it: by alias, unset fields left out, the timestamp
    in UTC with a Z (a naive one is taken as UTC)."""
    body = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    if timestamp is not None:
        ts = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
        body["timestamp"] = ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return body


class TimelineEvent(_Model):
    """An occurrence of an app event template on a CRM record. `id` makes it idempotent."""

    event_template_id: str = Field(alias="eventTemplateId")
    id: str
    object_id: str | None = Field(None, alias="objectId")
    email: str | None = None
    tokens: dict[str, str] = Field(default_factory=dict)
    extra_data: dict[str, Any] | None = Field(None, alias="extraData")
    timestamp: datetime | None = None

    def to_api(self) -> dict[str, Any]:
        return _timestamped_body(self, self.timestamp)


class AppEventOccurrence(_Model):
    """An occurrence of one of the app's app event types (timeline v4) on a CRM record.
    Occurrences are immutable; `id` is unique per event type, so it makes a send idempotent.
    `event_type_name` is the type's uid (from its `*-hsmeta.json`) or its fullyQualifiedName."""

    event_type_name: str = Field(alias="eventTypeName")
    id: str
    object_id: str = Field(alias="objectId")
    properties: dict[str, str] = Field(default_factory=dict)
    timestamp: datetime | None = None
    extra_data: dict[str, Any] | None = Field(None, alias="extraData")

    def to_api(self) -> dict[str, Any]:
        return _timestamped_body(self, self.timestamp)


class TimelineEventResult(_Model):
    id: str
    event_template_id: str | None = Field(None, alias="eventTemplateId")
    object_id: str | None = Field(None, alias="objectId")
    object_type: str | None = Field(None, alias="objectType")
    tokens: dict[str, str] = Field(default_factory=dict)


class QuoteDetails(_Model):
    """A quote with its line items, contacts, companies and deal, read together."""

    quote: CrmObject
    line_items: list[CrmObject] = Field(default_factory=list)
    contacts: list[CrmObject] = Field(default_factory=list)
    companies: list[CrmObject] = Field(default_factory=list)
    deal: CrmObject | None = None


class DealDetails(_Model):
    """A deal with its line items, contacts and companies, read together."""

    deal: CrmObject
    line_items: list[CrmObject] = Field(default_factory=list)
    contacts: list[CrmObject] = Field(default_factory=list)
    companies: list[CrmObject] = Field(default_factory=list)


class AccountDetails(_Model):
    portal_id: int = Field(alias="portalId")
    time_zone: str | None = Field(None, alias="timeZone")
    company_currency: str | None = Field(None, alias="companyCurrency")
    additional_currencies: list[str] = Field(default_factory=list, alias="additionalCurrencies")


class WebhookEvent(_Model):
    """One element of a webhook delivery array (fields as real payloads carry them)."""

    event_id: int = Field(alias="eventId")
    subscription_id: int = Field(alias="subscriptionId")
    portal_id: int = Field(alias="portalId")
    app_id: int | None = Field(None, alias="appId")
    occurred_at: int = Field(alias="occurredAt")
    subscription_type: str = Field(alias="subscriptionType")
    attempt_number: int = Field(0, alias="attemptNumber")
    object_id: int | None = Field(None, alias="objectId")
    property_name: str | None = Field(None, alias="propertyName")
    property_value: str | None = Field(None, alias="propertyValue")
    change_source: str | None = Field(None, alias="changeSource")
    source_id: str | None = Field(None, alias="sourceId")
    change_flag: str | None = Field(None, alias="changeFlag")
    association_type: str | None = Field(None, alias="associationType")
    from_object_id: int | None = Field(None, alias="fromObjectId")
    to_object_id: int | None = Field(None, alias="toObjectId")
    association_removed: bool | None = Field(None, alias="associationRemoved")

    @property
    def occurred(self) -> datetime:
        return datetime.fromtimestamp(self.occurred_at / 1000, tz=UTC)

    @property
    def object_type(self) -> str:
        """`deal.propertyChange` -> `deal`."""
        return self.subscription_type.split(".", 1)[0]

    @property
    def dedupe_key(self) -> tuple[int, int, int, int | None, int, str | None]:
        """eventId alone is not unique; this tuple is."""
        return (
            self.portal_id,
            self.subscription_id,
            self.event_id,
            self.object_id,
            self.occurred_at,
            self.property_name,
        )
