"""Intuit's published entity schema and the checks QBO's JSON reader makes with it.

`qbo_schema.json` is generated from the XSDs in `intuit/QuickBooks-V3-Java-SDK` by
`sandboxes/quickbooks/schema/generate.py` (its `source` names the commit). QBO reads a request
body into the schema's classes before any business rule runs, so:

- a property the class does not have is 2010 "Request has invalid or unsupported property",
  naming it, at any depth (the Detail follows the real one: "Property Name:Unrecognized field
  ... (class com.intuit.schema.finance.v3.Invoice), not marked as ignorable (N known
  properties: ...)");
- a value that cannot become the property's type is 2010 too, with the reader's own words
  (a non-number for a decimal, an object for a string, a list for a single value, ...); an
  unknown enumeration value is 2170 and a malformed date 2040, as the sandbox answered before;
- what the reader coerces is coerced here: numbers and booleans into strings (`SyncToken: 0`),
  numeric strings into numbers, "true"/"false" into booleans; `null` means absent; an empty
  string in a property that is not a string means absent ([`Leniency`] switches the uncertain
  ones);
- properties QBO computes or owns (`OWNED`) are accepted and dropped before the rules run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from qbo_sandbox.faults import QboFault

SCHEMA_FILE = Path(__file__).with_name("qbo_schema.json")
JAVA_PACKAGE = "com.intuit.schema.finance.v3."
# Jackson cuts its list of known properties at about this many characters.
KNOWN_LIST_CHARS = 1000

# Properties QBO fills in or computes itself: a request may carry them (clients that send back
# what they read do), they are ignored. The schema's own "read only" remarks are a hint only:
# Payment.TotalAmt is remarked "Non QB-writable" and is required.
OWNED_EVERYWHERE = frozenset({"MetaData", "domain", "status", "AttachableRef"})
OWNED: dict[str, frozenset[str]] = {
    "Customer": frozenset(
        {
            "Balance",  # no opening-balance journal here: the balance follows invoices
            "BalanceWithJobs",
            "FullyQualifiedName",
            "Level",
            "IsProject",  # projects are made in the QBO UI
            "OverDueBalance",
            "TotalRevenue",
            "TotalExpense",
            "V4IDPseudonym",
            "ClientCompanyId",
            "ClientEntityId",
        }
    ),
    "Item": frozenset(
        {"FullyQualifiedName", "Level", "QtyOnPurchaseOrder", "QtyOnSalesOrder", "AvgCost"}
    ),
    "Invoice": frozenset(
        {
            "TotalAmt",
            "Balance",
            "HomeTotalAmt",
            "HomeBalance",
            "LinkedTxn",  # payments link themselves; estimates and charges are not emulated
            "DeliveryInfo",
            "InvoiceLink",
            "RemitToRef",
            "invoiceStatus",
            "invoiceStatusLog",
            "callToAction",
            "EInvoiceStatus",
            "ECloudStatusTimeStamp",
        }
    ),
    "Payment": frozenset({"UnappliedAmt", "RemitToRef"}),
    "Vendor": frozenset({"Balance", "FullyQualifiedName", "V4IDPseudonym"}),
    # Bills and bill payments link each other; a bill's total and open balance follow its
    # lines and payments.
    "Bill": frozenset({"TotalAmt", "Balance", "HomeBalance", "LinkedTxn"}),
    "BillPayment": frozenset({"LinkedTxn"}),
    "Deposit": frozenset({"TotalAmt", "HomeTotalAmt", "LinkedTxn"}),
    "Term": frozenset({"Type"}),
    "Account": frozenset(
        {
            "FullyQualifiedName",
            "CurrentBalance",
            "CurrentBalanceWithSubAccounts",
            "OnlineBankingEnabled",
            "FIName",
            "JournalCodeRef",
        }
    ),
    "CompanyInfo": frozenset(
        {
            "Country",
            "SupportedLanguages",
            "NameValue",
            "SampleFile",
            "QBVersion",
            "FlavorStratum",
            "CompanyFileName",
            "LastImportedTime",
            "LastSyncTime",
            "DefaultTimeZone",
            "MultiByteCharsSupported",
            "FifoCalculationStatus",
        }
    ),
    "Preferences": frozenset(),
    "TaxCode": frozenset(),
}
# US companies have no GlobalTaxCalculation (Automated Sales Tax decides); a US request that
# carries it, as client libraries do by default, is not refused (OBS: python-quickbooks).
OWNED_WHERE_US = {"Invoice": frozenset({"GlobalTaxCalculation"})}
# Instructions in a request, not properties of the record.
REQUEST_ONLY = frozenset({"sparse", "AutoDocNumber"})
# The line kinds QBO takes on an entity's lines (DetailType), each with the Line property that
# holds its detail. Payment and bill payment lines carry no DetailType: they link the invoices
# (bills) they pay.
LINE_DETAILS: dict[str, dict[str, str]] = {
    "Invoice": {
        "SalesItemLineDetail": "SalesItemLineDetail",
        "GroupLineDetail": "GroupLineDetail",
        "DescriptionOnly": "DescriptionLineDetail",
        "DiscountLineDetail": "DiscountLineDetail",
        "SubTotalLineDetail": "SubTotalLineDetail",
    },
    "Payment": {},
    "Bill": {
        "AccountBasedExpenseLineDetail": "AccountBasedExpenseLineDetail",
        "ItemBasedExpenseLineDetail": "ItemBasedExpenseLineDetail",
    },
    "BillPayment": {},
    # A deposit line either links a payment held in Undeposited Funds (no DetailType) or
    # brings money in from another account.
    "Deposit": {"DepositLineDetail": "DepositLineDetail"},
}


@dataclass(frozen=True)
class Prop:
    """One property of a schema type: its JSON name, type and whether it repeats."""

    name: str
    type: str
    repeats: bool = False
    choice: str | None = None
    branch: int = 0
    read_only_remark: bool = False


@dataclass(frozen=True)
class Leniency:
    """The reader's coercions that are uncertain on the real API (see the README)."""

    # "" in a date, number, boolean or enumeration property means absent. Client models
    # default TxnDate, DueDate and ServiceDate to "" and QBO accepts them (OBS).
    empty_string_as_absent: bool = True
    # "100.00" is accepted for a decimal ("3" for an integer), as Jackson's default reader does.
    numbers_from_strings: bool = True


class Schema:
    """The generated description: per type, its properties by name; enumerations by name."""

    def __init__(self, description: dict[str, Any]) -> None:
        self.source: dict[str, Any] = description["source"]
        self.entities: tuple[str, ...] = tuple(description["entities"])
        self.all_entities: tuple[str, ...] = tuple(description["all_entities"])
        self.enums = {name: tuple(values) for name, values in description["enums"].items()}
        self.types: dict[str, dict[str, Prop]] = {
            name: {
                p["name"]: Prop(
                    p["name"],
                    p["type"],
                    p["repeats"],
                    p.get("choice"),
                    p.get("branch", 0),
                    p.get("read_only_remark", False),
                )
                for p in spec["properties"]
            }
            for name, spec in description["types"].items()
        }

    def properties(self, type_name: str) -> dict[str, Prop]:
        """Every property of a type, inherited ones included, in schema order."""
        return self.types[type_name]

    def is_complex(self, type_name: str) -> bool:
        return type_name in self.types

    def owned(self, entity: str, country: str) -> frozenset[str]:
        """Top-level properties QBO computes for this entity: accepted, then ignored."""
        owned = OWNED_EVERYWHERE | OWNED.get(entity, frozenset())
        if country == "US":
            owned |= OWNED_WHERE_US.get(entity, frozenset())
        return owned

    def writable(self, entity: str, country: str) -> list[str]:
        """The top-level properties a request may set (and a read returns)."""
        owned = self.owned(entity, country)
        return [name for name in self.properties(entity) if name not in owned]

    def read(self, entity: str, body: Any, leniency: Leniency | None = None) -> dict[str, Any]:
        """A request body as QBO's reader takes it: checked against the schema at every
        level and normalised (coerced values, absent ones dropped). Raises `QboFault`."""
        reader = _Reader(self, leniency or Leniency())
        return reader.object(entity, body, entity)

    def problems(self, entity: str, body: Any) -> list[str]:
        """What QBO's reader would refuse in `body` (empty when it conforms); for tests."""
        found: list[str] = []
        for path, message in _Walk(self).object(entity, body, entity):
            found.append(f"{path}: {message}")
        return found


@lru_cache(maxsize=1)
def load() -> Schema:
    """The description shipped with the sandbox."""
    return Schema(json.loads(SCHEMA_FILE.read_text()))


def unknown_property(type_name: str, key: str, known: list[str]) -> QboFault:
    listed = ", ".join(f'"{name}"' for name in known)
    if len(listed) > KNOWN_LIST_CHARS:
        listed = listed[: listed.rfind(", ", 0, KNOWN_LIST_CHARS)] + " [truncated]"
    return invalid_property(
        f'Unrecognized field "{key}" (class {JAVA_PACKAGE}{java_class(type_name)}), not marked '
        f"as ignorable ({len(known)} known properties: {listed}])"
    )


def invalid_property(reader_message: str) -> QboFault:
    """2010 as QBO words it: the JSON reader's message between its own two phrases."""
    return QboFault(
        "2010",
        "Request has invalid or unsupported property",
        f"Property Name:{reader_message}\n specified is unsupported or invalid",
    )


def java_class(type_name: str) -> str:
    # Anonymous types are named Owner.Element in the description; Java nests them the same way.
    return type_name.replace(".", "$")


_JAVA_TYPES = {
    "string": "java.lang.String",
    "anyURI": "java.lang.String",
    "decimal": "java.math.BigDecimal",
    "boolean": "java.lang.Boolean",
    "int": "java.lang.Integer",
    "integer": "java.math.BigInteger",
    "positiveInteger": "java.math.BigInteger",
    "long": "java.lang.Long",
    "date": "javax.xml.datatype.XMLGregorianCalendar",
    "dateTime": "javax.xml.datatype.XMLGregorianCalendar",
}
_INTEGERS = {"int", "integer", "positiveInteger", "long"}


def _token(value: Any) -> str:
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, int):
        return "VALUE_NUMBER_INT"
    if isinstance(value, Decimal | float):
        return "VALUE_NUMBER_FLOAT"
    return "VALUE_STRING"


class _Reader:
    """One pass over a request body; raises on the first thing QBO's reader refuses."""

    def __init__(self, schema: Schema, leniency: Leniency) -> None:
        self.schema = schema
        self.leniency = leniency

    def object(self, type_name: str, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise invalid_property(
                f"Can not deserialize instance of {JAVA_PACKAGE}{java_class(type_name)} out of "
                f"{_token(value)} token"
            )
        props = self.schema.properties(type_name)
        out: dict[str, Any] = {}
        for key, raw in value.items():
            prop = props.get(key)
            if prop is None:
                raise unknown_property(type_name, key, list(props))
            read = self.property(prop, raw, f"{path}.{key}")
            if read is not _ABSENT:
                out[key] = read
        return out

    def property(self, prop: Prop, raw: Any, path: str) -> Any:
        if raw is None:
            return _ABSENT
        if prop.repeats:
            if not isinstance(raw, list):
                raise invalid_property(
                    f"Can not deserialize instance of java.util.ArrayList out of {_token(raw)} "
                    "token"
                )
            items = [self.single(prop, item, path) for item in raw if item is not None]
            return [item for item in items if item is not _ABSENT]
        return self.single(prop, raw, path)

    def single(self, prop: Prop, raw: Any, path: str) -> Any:
        kind = prop.type
        if self.schema.is_complex(kind):
            return self.object(kind, raw, path)
        if kind == "any":
            return raw
        if kind in self.schema.enums:
            return self.enum(prop, raw)
        if kind in {"string", "anyURI"}:
            return self.string(raw)
        if raw == "" and self.leniency.empty_string_as_absent:
            return _ABSENT
        if kind == "decimal":
            return self.decimal(raw)
        if kind in _INTEGERS:
            return self.integer(kind, raw)
        if kind == "boolean":
            return self.boolean(raw)
        if kind in {"date", "dateTime"}:
            return self.moment(prop, raw)
        raise ValueError(f"no reader for type {kind}")

    def string(self, raw: Any) -> Any:
        if isinstance(raw, dict | list):
            raise invalid_property(
                f"Can not deserialize instance of java.lang.String out of {_token(raw)} token"
            )
        if isinstance(raw, bool):
            return "true" if raw else "false"
        if isinstance(raw, Decimal):
            return format(raw, "f")
        return str(raw)

    def enum(self, prop: Prop, raw: Any) -> Any:
        if raw == "" and self.leniency.empty_string_as_absent:
            return _ABSENT
        if isinstance(raw, str) and raw in self.schema.enums[prop.type]:
            return raw
        if isinstance(raw, dict | list):
            raise invalid_property(
                f"Can not deserialize instance of {JAVA_PACKAGE}{prop.type} out of "
                f"{_token(raw)} token"
            )
        raise QboFault(
            "2170",
            "Invalid Enumeration",
            f"Invalid Enumeration : {prop.name}={raw}",
            element=prop.name,
        )

    def decimal(self, raw: Any) -> Decimal:
        if isinstance(raw, bool | dict | list):
            raise invalid_property(
                f"Can not deserialize instance of java.math.BigDecimal out of {_token(raw)} token"
            )
        if isinstance(raw, int | Decimal | float):
            return Decimal(str(raw))
        if self.leniency.numbers_from_strings:
            try:
                return Decimal(str(raw).strip())
            except InvalidOperation:
                pass
        raise invalid_property(
            f"Can not construct instance of java.math.BigDecimal from String value '{raw}': "
            "not a valid representation"
        )

    def integer(self, kind: str, raw: Any) -> int:
        java = _JAVA_TYPES[kind]
        if isinstance(raw, bool | dict | list):
            raise invalid_property(
                f"Can not deserialize instance of {java} out of {_token(raw)} token"
            )
        if isinstance(raw, int):
            return raw
        if isinstance(raw, Decimal | float):
            return int(raw)  # the reader truncates a fraction sent for an integer
        if self.leniency.numbers_from_strings and str(raw).strip().lstrip("-").isdigit():
            return int(str(raw).strip())
        raise invalid_property(
            f"Can not construct instance of {java} from String value '{raw}': "
            f"not a valid {java.rsplit('.', 1)[-1]} value"
        )

    def boolean(self, raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int):
            return raw != 0
        if isinstance(raw, str) and raw.strip().lower() in {"true", "false"}:
            return raw.strip().lower() == "true"
        if isinstance(raw, dict | list | Decimal | float):
            raise invalid_property(
                f"Can not deserialize instance of java.lang.Boolean out of {_token(raw)} token"
            )
        raise invalid_property(
            f"Can not construct instance of java.lang.Boolean from String value '{raw}': "
            'only "true" or "false" recognized'
        )

    def moment(self, prop: Prop, raw: Any) -> str:
        text = raw if isinstance(raw, str) else None
        if text is not None and _parses(prop.type, text):
            # A date may carry a time or zone; QBO keeps the day.
            return text[:10] if prop.type == "date" else text
        if isinstance(raw, dict | list):
            raise invalid_property(
                f"Can not deserialize instance of {_JAVA_TYPES[prop.type]} out of "
                f"{_token(raw)} token"
            )
        raise QboFault(
            "2040", "Invalid Date", f"Invalid Date : {prop.name}={raw}", element=prop.name
        )


def _parses(kind: str, text: str) -> bool:
    try:
        if kind == "date":
            date.fromisoformat(text[:10])
            return len(text) == 10 or text[10] in "T+-Z"
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, IndexError):
        return False
    return True


class _Absent:
    """A value the reader treats as not sent."""


_ABSENT: Any = _Absent()


class _Walk:
    """Every departure from the schema in a body, without stopping (for tests and tools)."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.reader = _Reader(schema, Leniency())

    def object(self, type_name: str, value: Any, path: str) -> Iterator[tuple[str, str]]:
        if not isinstance(value, dict):
            yield path, f"expected an object of {type_name}, got {type(value).__name__}"
            return
        props = self.schema.properties(type_name)
        for key, raw in value.items():
            prop = props.get(key)
            if prop is None:
                yield f"{path}.{key}", f"not a property of {type_name}"
                continue
            items = raw if prop.repeats and isinstance(raw, list) else [raw]
            if prop.repeats and not isinstance(raw, list):
                yield f"{path}.{key}", "expected a list"
                continue
            for index, item in enumerate(items):
                where = f"{path}.{key}[{index}]" if prop.repeats else f"{path}.{key}"
                if item is None:
                    continue
                if self.schema.is_complex(prop.type):
                    yield from self.object(prop.type, item, where)
                    continue
                try:
                    self.reader.single(prop, item, where)
                except QboFault as fault:
                    yield where, f"{fault.code} {fault.detail}"
