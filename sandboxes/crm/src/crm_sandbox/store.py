"""Record operations with HubSpot's validation, derived values and change notifications."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from crm_sandbox.errors import ApiError, conflict, not_found, property_errors, property_problem
from crm_sandbox.schema import (
    DEFAULT_RETURNED,
    KIND_BY_ID,
    PUBLISHED_QUOTE_STATUSES,
    AssociationKind,
    PropertyDef,
    unlabeled_of,
)
from crm_sandbox.state import Portal, Record, SandboxState, iso, now_ms

_CREATED_PROP = {"quotes": "hs_createdate", "notes": "hs_createdate", "tasks": "hs_createdate"}
# Engagements HubSpot places on timelines by `hs_timestamp`, which their guides mark required.
_TIMESTAMPED = {"notes": "note", "tasks": "task"}
_MODIFIED_PROP = {"contacts": "lastmodifieddate"}
_PRICE_PROP = re.compile(r"^hs_price_[a-z]{3}$")


@dataclass(frozen=True)
class Source:
    """Who made a change: `changeSource` and `sourceId` on webhooks and property history."""

    change_source: str
    source_id: str


USER = Source("CRM_UI", "userId:47812075")


@dataclass(frozen=True)
class Change:
    portal_id: int
    object_type: str
    object_id: str
    kind: str  # creation | deletion | propertyChange | associationChange
    source: Source
    occurred_at: int
    property_name: str | None = None
    property_value: str | None = None
    extra: dict[str, Any] | None = None


Notify = Callable[[Change], None]


class _Invalid(Exception):
    """A value HubSpot would reject, with its error code (INVALID_OPTION, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _fmt_decimal(value: Decimal) -> str:
    return format(value, "f")


class Store:
    def __init__(self, state: SandboxState, notify: Notify) -> None:
        self.state = state
        self.notify = notify

    # ---- lookups -------------------------------------------------------------------------

    def get(
        self,
        portal: Portal,
        type_name: str,
        object_id: str,
        *,
        id_property: str | None = None,
        archived: bool = False,
    ) -> Record:
        record = self.find(portal, type_name, object_id, id_property=id_property, archived=archived)
        if record is None:
            raise not_found(f"Object not found.  objectId are usually numeric. ({object_id})")
        return record

    def find(
        self,
        portal: Portal,
        type_name: str,
        object_id: str,
        *,
        id_property: str | None = None,
        archived: bool = False,
    ) -> Record | None:
        records = portal.records[type_name]
        if not id_property or id_property == "hs_object_id":
            record = records.get(str(object_id))
            if record is None or record.archived != archived:
                return None
            return record
        definition = portal.properties[type_name].get(id_property)
        if definition is None or not (definition.has_unique_value or id_property == "email"):
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"{id_property} is not a unique property",
                sub_category="INVALID_ID_PROPERTY",
            )
        wanted = self._normalize_unique(id_property, str(object_id))
        if not archived:
            found = records.get(
                portal.unique_index.get((type_name, id_property), {}).get(wanted, "")
            )
            return found if found is not None and not found.archived else None
        for record in records.values():
            if record.archived and record.properties.get(id_property) == wanted:
                return record
        return None

    @staticmethod
    def _is_unique(portal: Portal, type_name: str, name: str) -> bool:
        definition = portal.properties[type_name].get(name)
        if type_name == "contacts" and name == "email":
            return True
        return bool(definition and definition.has_unique_value)

    def _reindex(self, portal: Portal, record: Record, before: dict[str, str]) -> None:
        """Keep the unique-value index in step with a record's live values."""
        for name in set(before) | set(record.properties):
            if not self._is_unique(portal, record.type, name):
                continue
            index = portal.unique_index.setdefault((record.type, name), {})
            old = before.get(name)
            if old is not None and index.get(old) == record.id:
                del index[old]
            new = None if record.archived else record.properties.get(name)
            if new:
                index[new] = record.id

    @staticmethod
    def _normalize_unique(name: str, value: str) -> str:
        return value.strip().lower() if name == "email" else value

    # ---- writes --------------------------------------------------------------------------

    def create(self, portal: Portal, type_name: str, raw: dict[str, Any], source: Source) -> Record:
        props = self.validate(portal, type_name, raw, existing=None)
        props = {k: v for k, v in props.items() if v != ""}
        self.check_required(type_name, props)
        self.check_unique(portal, type_name, props, exclude=None)
        ts = now_ms()
        record = Record(
            id=portal.next_id(), type=type_name, properties={}, created_at=ts, updated_at=ts
        )
        created_name = _CREATED_PROP.get(type_name, "createdate")
        record.properties.update(props)
        record.properties["hs_object_id"] = record.id
        record.properties[created_name] = iso(ts)
        if type_name == "quotes":
            record.properties["createdate"] = iso(ts)
        self._touch(record, ts)
        self._derive(portal, record)
        for name, value in record.properties.items():
            self._history(record, name, value, ts, source)
        portal.records[type_name][record.id] = record
        self._reindex(portal, record, {})
        self._index(record)
        self.notify(Change(portal.id, type_name, record.id, "creation", source, ts))
        for name in props:
            self.notify(
                Change(
                    portal.id,
                    type_name,
                    record.id,
                    "propertyChange",
                    source,
                    ts,
                    name,
                    record.properties.get(name, ""),
                )
            )
        return record

    def update(self, portal: Portal, record: Record, raw: dict[str, Any], source: Source) -> Record:
        props = self.validate(portal, record.type, raw, existing=record)
        self.check_unique(portal, record.type, props, exclude=record.id)
        ts = now_ms()
        before = dict(record.properties)
        for name, value in props.items():
            if value == "":
                record.properties.pop(name, None)
            else:
                record.properties[name] = value
        self._derive(portal, record)
        changed = [
            n
            for n in set(before) | set(record.properties)
            if before.get(n) != record.properties.get(n)
        ]
        self._touch(record, ts)
        for name in changed:
            self._history(record, name, record.properties.get(name, ""), ts, source)
        self._reindex(portal, record, before)
        self._index(record)
        for name in changed:
            self.notify(
                Change(
                    portal.id,
                    record.type,
                    record.id,
                    "propertyChange",
                    source,
                    ts,
                    name,
                    record.properties.get(name, ""),
                )
            )
        return record

    def archive(self, portal: Portal, record: Record, source: Source) -> None:
        ts = now_ms()
        record.archived = True
        record.archived_at = ts
        self._reindex(portal, record, dict(record.properties))
        record.search_versions.append(
            (time.monotonic() + self.state.config.search_lag_seconds, None)
        )
        if record.type == "quotes":
            # Deleting a quote deletes its line items (a line item has one parent).
            for line_item_id in self.associated_ids(portal, "quotes", record.id, "line_items"):
                child = portal.records["line_items"].get(line_item_id)
                if child is not None and not child.archived:
                    self.archive(portal, child, source)
        self.notify(Change(portal.id, record.type, record.id, "deletion", source, ts))

    def _touch(self, record: Record, ts: int) -> None:
        record.updated_at = ts
        record.properties["hs_lastmodifieddate"] = iso(ts)
        if record.type in _MODIFIED_PROP:
            record.properties[_MODIFIED_PROP[record.type]] = iso(ts)

    def _history(self, record: Record, name: str, value: str, ts: int, source: Source) -> None:
        entry: dict[str, Any] = {
            "value": value,
            "timestamp": iso(ts),
            "sourceType": source.change_source,
            "sourceId": source.source_id,
        }
        if source.source_id.startswith("userId:"):
            entry["updatedByUserId"] = int(source.source_id.split(":", 1)[1])
        record.history.setdefault(name, []).insert(0, entry)

    def _index(self, record: Record) -> None:
        visible = time.monotonic() + self.state.config.search_lag_seconds
        record.search_versions.append((visible, dict(record.properties)))
        del record.search_versions[:-8]

    # ---- validation ----------------------------------------------------------------------

    def validate(
        self,
        portal: Portal,
        type_name: str,
        raw: dict[str, Any] | None,
        *,
        existing: Record | None,
    ) -> dict[str, str]:
        """Coerce request values to HubSpot's string forms; collect every problem at once."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ApiError(400, "VALIDATION_ERROR", "properties must be an object")
        out: dict[str, str] = {}
        problems: list[dict[str, Any]] = []
        defs = portal.properties[type_name]
        for name, value in raw.items():
            definition = defs.get(name)
            if definition is None and type_name == "products" and _PRICE_PROP.match(name):
                definition = PropertyDef(name=name, type="number", field_type="number")
            if definition is None or definition.archived:
                problems.append(
                    property_problem(
                        name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'
                    )
                )
                continue
            if definition.read_only:
                problems.append(
                    property_problem(
                        name,
                        "READ_ONLY_VALUE",
                        f'"{name}" is a read only property; its value cannot be set.',
                    )
                )
                continue
            text = _as_text(value)
            if text == "":
                out[name] = ""
                continue
            try:
                out[name] = self._coerce(definition, text, existing)
                if name == "hubspot_owner_id" and portal.owner(out[name]) is None:
                    raise _Invalid("INVALID_OWNER_ID", f"{out[name]} is not a valid owner id")
            except _Invalid as exc:
                problems.append(property_problem(name, exc.code, exc.message))
        if problems:
            raise property_errors(problems)
        if type_name == "contacts" and "email" in out:
            out["email"] = out["email"].strip().lower()
        return out

    def _coerce(self, definition: PropertyDef, text: str, existing: Record | None) -> str:
        name = definition.name
        kind = definition.type
        if kind == "number":
            try:
                number = Decimal(text)
            except InvalidOperation:
                raise _Invalid(
                    "INVALID_INTEGER", f"{text} was not a valid number. (property {name})"
                ) from None
            if not number.is_finite():
                raise _Invalid("INVALID_INTEGER", f"{text} was not a valid number.")
            return text.strip()
        if kind == "bool":
            if text.lower() not in {"true", "false"}:
                raise _Invalid("INVALID_BOOLEAN", f"{text} is not a valid boolean")
            return text.lower()
        if kind == "enumeration":
            return self._coerce_option(definition, text, existing)
        if kind == "date":
            return _coerce_date(name, text)
        if kind == "datetime":
            return _coerce_datetime(name, text)
        if len(text) > 65536:
            raise _Invalid("TOO_LONG", f"{name} exceeds 65536 characters")
        return text

    def _coerce_option(self, definition: PropertyDef, text: str, existing: Record | None) -> str:
        allowed = definition.option_values()
        if definition.field_type == "checkbox":
            append = text.startswith(";")
            values = [v for v in text.split(";") if v]
            bad = [v for v in values if v not in allowed]
            if bad:
                raise _Invalid("INVALID_OPTION", _option_message(definition, bad[0]))
            if append and existing is not None:
                current = [v for v in existing.properties.get(definition.name, "").split(";") if v]
                values = current + [v for v in values if v not in current]
            return ";".join(values)
        if definition.field_type == "booleancheckbox" and text.lower() in {"true", "false"}:
            return text.lower()
        if text not in allowed:
            raise _Invalid("INVALID_OPTION", _option_message(definition, text))
        return text

    def check_required(self, type_name: str, props: dict[str, str]) -> None:
        if type_name == "contacts" and not ({"email", "firstname", "lastname"} & set(props)):
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "A contact needs at least one of email, firstname or lastname.",
            )
        if type_name in _TIMESTAMPED and not props.get("hs_timestamp"):
            # HubSpot's exact answer is not documented, so this is the generic validation body.
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"hs_timestamp is required to create a {_TIMESTAMPED[type_name]}.",
            )

    def check_unique(
        self, portal: Portal, type_name: str, props: dict[str, str], exclude: str | None
    ) -> None:
        for name, value in props.items():
            if not value or not self._is_unique(portal, type_name, name):
                continue
            holder = portal.unique_index.get((type_name, name), {}).get(value)
            if holder is None or holder == exclude:
                continue
            if type_name == "contacts" and name == "email":
                raise conflict(f"Contact already exists. Existing ID: {holder}")
            raise conflict(
                f"A {type_name[:-1]} with the unique value {value!r} for property "
                f"{name!r} already exists. Existing ID: {holder}"
            )

    # ---- derived values ------------------------------------------------------------------

    def _derive(self, portal: Portal, record: Record) -> None:
        props = record.properties
        if record.type == "deals":
            amount = props.get("amount")
            currency = props.get("deal_currency_code") or portal.company_currency
            if amount:
                rate = Decimal(1)
                if currency != portal.company_currency:
                    rate = portal.exchange_rates.get(currency, Decimal(1))
                props["amount_in_home_currency"] = _fmt_decimal(Decimal(amount) * rate)
            else:
                props.pop("amount_in_home_currency", None)
        elif record.type == "line_items":
            self._derive_line_item(portal, record)
        elif record.type == "quotes":
            self._derive_quote(portal, record)
        elif record.type == "tasks":
            # A task records when it was completed; reopening it clears that.
            if props.get("hs_task_status") == "COMPLETED":
                props.setdefault("hs_task_completion_date", iso(now_ms()))
            else:
                props.pop("hs_task_completion_date", None)

    def _derive_line_item(self, portal: Portal, record: Record) -> None:
        props = record.properties
        product_id = props.get("hs_product_id")
        if product_id:
            product = portal.records["products"].get(product_id)
            if product is None or product.archived:
                raise property_errors(
                    [
                        property_problem(
                            "hs_product_id", "INVALID_OBJECT_ID", f"Product {product_id} not found"
                        )
                    ]
                )
            for name in ("name", "price", "description", "hs_sku"):
                if name not in props and name in product.properties:
                    props[name] = product.properties[name]
        props.setdefault("hs_line_item_currency_code", portal.company_currency)
        if "price" in props and Decimal(props["price"]) < 0:
            raise property_errors(
                [property_problem("price", "INVALID_PRICE", "price must not be negative")]
            )
        quantity = Decimal(props.get("quantity", "1") or "1")
        price = Decimal(props.get("price", "0") or "0")
        gross = quantity * price
        discount = Decimal(props.get("discount", "0") or "0") * quantity
        if props.get("hs_discount_percentage"):
            discount += gross * Decimal(props["hs_discount_percentage"]) / 100
        props["hs_total_discount"] = _fmt_decimal(discount)
        props["amount"] = _fmt_decimal(gross - discount)

    def _derive_quote(self, portal: Portal, record: Record) -> None:
        props = record.properties
        props.setdefault("hs_quote_number", f"{record.id}")
        if not props.get("hs_currency"):
            deal_ids = self.associated_ids(portal, "quotes", record.id, "deals")
            deal = portal.records["deals"].get(deal_ids[0]) if deal_ids else None
            currency = deal.properties.get("deal_currency_code") if deal else None
            props["hs_currency"] = currency or portal.company_currency
        published = props.get("hs_status") in PUBLISHED_QUOTE_STATUSES
        props["hs_locked"] = "true" if published else "false"
        if published:
            key = props.setdefault("hs_public_url_key", f"q{record.id}")
            props["hs_quote_link"] = f"https://app.hubspot.com/quotes/{portal.id}/{key}"
        else:
            props.pop("hs_quote_link", None)
        total = Decimal(0)
        for line_item_id in self.associated_ids(portal, "quotes", record.id, "line_items"):
            item = portal.records["line_items"].get(line_item_id)
            if item is not None and not item.archived:
                total += Decimal(item.properties.get("amount", "0"))
        props["hs_quote_amount"] = _fmt_decimal(total)

    def refresh_quote(self, portal: Portal, quote_id: str) -> None:
        record = portal.records["quotes"].get(quote_id)
        if record is not None:
            self._derive_quote(portal, record)

    # ---- rendering -----------------------------------------------------------------------

    def render(
        self,
        portal: Portal,
        record: Record,
        properties: list[str] | None = None,
        *,
        with_history: list[str] | None = None,
        associations: list[str] | None = None,
    ) -> dict[str, Any]:
        defs = portal.properties[record.type]
        wanted = properties if properties else DEFAULT_RETURNED[record.type]
        props: dict[str, str | None] = {}
        for name in wanted:
            if name in record.properties:
                props[name] = record.properties[name]
            elif name in defs:
                props[name] = None
        for name in ("hs_object_id", "hs_lastmodifieddate", "createdate"):
            if name in record.properties and name in DEFAULT_RETURNED[record.type]:
                props.setdefault(name, record.properties[name])
        body: dict[str, Any] = {
            "id": record.id,
            "properties": props,
            "createdAt": iso(record.created_at),
            "updatedAt": iso(record.updated_at),
            "archived": record.archived,
        }
        if record.archived and record.archived_at:
            body["archivedAt"] = iso(record.archived_at)
        if with_history:
            body["propertiesWithHistory"] = {
                n: record.history.get(n, []) for n in with_history if n in defs
            }
        if associations:
            assoc: dict[str, Any] = {}
            for to_type in associations:
                results = []
                for to_id, kinds in self.associations_of(portal, record.type, record.id, to_type):
                    for _, type_id in sorted(kinds):
                        kind = KIND_BY_ID.get((record.type, to_type, type_id))
                        name = kind.name if kind else str(type_id)
                        if kind and kind.label:
                            name = f"{kind.name}_{kind.label.lower()}"
                        results.append({"id": to_id, "type": name})
                if results:
                    assoc[to_type] = {"results": results}
            if assoc:
                body["associations"] = assoc
        return body

    # ---- associations --------------------------------------------------------------------

    def associations_of(
        self, portal: Portal, from_type: str, from_id: str, to_type: str
    ) -> list[tuple[str, set[tuple[str, int]]]]:
        out = []
        for (ft, fid, tt, tid), kinds in portal.associations.items():
            if ft == from_type and fid == from_id and tt == to_type and kinds:
                target = portal.records[to_type].get(tid)
                if target is not None and not target.archived:
                    out.append((tid, kinds))
        out.sort(key=lambda item: int(item[0]) if item[0].isdigit() else 0)
        return out

    def associated_ids(
        self, portal: Portal, from_type: str, from_id: str, to_type: str
    ) -> list[str]:
        return [tid for tid, _ in self.associations_of(portal, from_type, from_id, to_type)]

    def resolve_kind(
        self, portal: Portal, from_type: str, to_type: str, category: str, type_id: int
    ) -> tuple[str, int, str, int, str | None]:
        """Return (category, type_id, reverse_category, reverse_id, label) or raise 400."""
        kind = KIND_BY_ID.get((from_type, to_type, type_id))
        if kind is not None and category == "HUBSPOT_DEFINED":
            return category, type_id, category, kind.reverse_id, kind.label
        for label in portal.custom_labels.get((from_type, to_type), []):
            if label["typeId"] == type_id and category == "USER_DEFINED":
                return category, type_id, category, label["inverseTypeId"], label["label"]
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"{category} {type_id} is not a valid association type between "
            f"{from_type} and {to_type}.",
        )

    def associate(
        self,
        portal: Portal,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        specs: list[tuple[str, int]],
        source: Source,
        *,
        replace: bool = False,
    ) -> list[str | None]:
        """Create the given association types both ways. Returns the labels now set."""
        self.get(portal, from_type, from_id)
        self.get(portal, to_type, to_id)
        forward_key = (from_type, from_id, to_type, to_id)
        reverse_key = (to_type, to_id, from_type, from_id)
        resolved = [self.resolve_kind(portal, from_type, to_type, c, t) for c, t in specs]
        for cat, tid, _, _, _ in list(resolved):
            kind = KIND_BY_ID.get((from_type, to_type, tid)) if cat == "HUBSPOT_DEFINED" else None
            plain = unlabeled_of(kind) if kind else None
            if plain is not None:
                resolved.append(
                    ("HUBSPOT_DEFINED", plain.type_id, "HUBSPOT_DEFINED", plain.reverse_id, None)
                )
        forward = portal.associations.setdefault(forward_key, set())
        reverse = portal.associations.setdefault(reverse_key, set())
        if replace:
            forward.clear()
            reverse.clear()
        before = set(forward)
        for cat, tid, rcat, rid, _ in resolved:
            forward.add((cat, tid))
            reverse.add((rcat, rid))
        ts = now_ms()
        for _cat, tid in sorted(forward - before):
            self._association_change(
                portal, from_type, from_id, to_type, to_id, tid, False, ts, source
            )
        self._after_association(portal, from_type, from_id, to_type, to_id)
        return [label for *_, label in resolved]

    def disassociate(
        self,
        portal: Portal,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        source: Source,
        *,
        only: set[tuple[str, int]] | None = None,
    ) -> None:
        forward = portal.associations.get((from_type, from_id, to_type, to_id), set())
        reverse = portal.associations.get((to_type, to_id, from_type, from_id), set())
        removing = set(forward) if only is None else forward & only
        plain = None
        for _, tid in removing:
            kind = KIND_BY_ID.get((from_type, to_type, tid))
            if kind is not None and kind.label is None:
                plain = kind
        if plain is not None:
            # Removing the unlabeled type removes every label between the pair.
            removing = set(forward)
        ts = now_ms()
        for cat, tid in removing:
            forward.discard((cat, tid))
            kind = KIND_BY_ID.get((from_type, to_type, tid))
            if kind is not None:
                reverse.discard((cat, kind.reverse_id))
            else:
                for label in portal.custom_labels.get((from_type, to_type), []):
                    if label["typeId"] == tid:
                        reverse.discard((cat, label["inverseTypeId"]))
            self._association_change(
                portal, from_type, from_id, to_type, to_id, tid, True, ts, source
            )
        self._after_association(portal, from_type, from_id, to_type, to_id)

    def _after_association(
        self, portal: Portal, from_type: str, from_id: str, to_type: str, to_id: str
    ) -> None:
        if from_type == "quotes":
            self.refresh_quote(portal, from_id)
        if to_type == "quotes":
            self.refresh_quote(portal, to_id)

    def _association_change(
        self,
        portal: Portal,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        type_id: int,
        removed: bool,
        ts: int,
        source: Source,
    ) -> None:
        kind: AssociationKind | None = KIND_BY_ID.get((from_type, to_type, type_id))
        name = (kind.name if kind else f"{from_type}_to_{to_type}").upper()
        self.notify(
            Change(
                portal.id,
                from_type,
                from_id,
                "associationChange",
                source,
                ts,
                extra={
                    "associationType": name,
                    "fromObjectId": int(from_id),
                    "toObjectId": int(to_id),
                    "associationRemoved": removed,
                    "isPrimaryAssociation": bool(kind and kind.label == "Primary"),
                },
            )
        )


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return _fmt_decimal(value)
    return str(value)


def _option_message(definition: PropertyDef, value: str) -> str:
    options = ", ".join(sorted(definition.option_values()))
    if definition.name == "dealstage":
        return f"{value} was not one of the allowed options: pipelineId=default : [{options}]"
    return f"{value} was not one of the allowed options: [{options}]"


def _epoch_ms(text: str) -> int | None:
    return int(text) if text.lstrip("-").isdigit() else None


def _coerce_date(name: str, text: str) -> str:
    millis = _epoch_ms(text)
    if millis is not None:
        if millis % 86_400_000 != 0:
            raise _Invalid(
                "INVALID_DATE",
                f"{text} is at {iso(millis)}, which isn't midnight (date property {name})",
            )
        return datetime.fromtimestamp(millis / 1000, tz=UTC).strftime("%Y-%m-%d")
    try:
        if len(text) == 10:
            return datetime.strptime(text, "%Y-%m-%d").strftime("%Y-%m-%d")
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Invalid("INVALID_DATE", f"{text} is not a valid date (property {name})") from None
    if (parsed.hour, parsed.minute, parsed.second, parsed.microsecond) != (0, 0, 0, 0):
        raise _Invalid("INVALID_DATE", f"{text} isn't midnight UTC (date property {name})")
    return parsed.strftime("%Y-%m-%d")


def _coerce_datetime(name: str, text: str) -> str:
    millis = _epoch_ms(text)
    if millis is not None:
        return iso(millis)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Invalid(
            "INVALID_DATETIME", f"{text} is not a valid datetime (property {name})"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return iso(int(parsed.timestamp() * 1000))
