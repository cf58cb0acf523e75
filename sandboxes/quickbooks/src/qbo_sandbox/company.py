"""One QBO company (realm): its lists, transactions and the rules QBO applies to them."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from qbo_sandbox import faults, schema, seed
from qbo_sandbox.clock import Clock
from qbo_sandbox.faults import QboFault
from qbo_sandbox.schema import Leniency

CENT = Decimal("0.01")
NAME_LISTS = frozenset({"Customer", "Vendor", "Item", "Term", "Account"})
# Lists whose DisplayName is unique across each other (QBO adds employees, not emulated).
PEOPLE = frozenset({"Customer", "Vendor"})
WRITABLE_ENTITIES = frozenset(
    {
        "Customer",
        "Vendor",
        "Item",
        "Invoice",
        "Payment",
        "Bill",
        "BillPayment",
        "Deposit",
        "Term",
        "Account",
    }
)
# Request fields that steer the write and are not stored as sent.
NOT_STORED = frozenset({"Id", "SyncToken", "sparse", "domain", "MetaData", "AutoDocNumber"})
# Payment fields the sandbox works out from the customer and the lines.
PAYMENT_DERIVED = frozenset({"CustomerRef", "CurrencyRef", "TotalAmt", "Line"})
QTY_PRICE_CHECKS = frozenset({"nonzero", "present", "off"})
DELETED_SUFFIX = " (deleted)"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

TRANSACTIONS = frozenset({"Invoice", "Payment", "Bill", "BillPayment", "Deposit"})


def money(value: Any, field_name: str = "Amount") -> Decimal:
    try:
        return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)
    except (InvalidOperation, ValueError) as exc:
        raise QboFault(
            "2090", "Invalid Number", f"Invalid Number : {field_name}", element=field_name
        ) from exc


def number(value: Any, field_name: str) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise QboFault(
            "2090", "Invalid Number", f"Invalid Number : {field_name}", element=field_name
        ) from exc


def parse_date(value: Any, field_name: str) -> date:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise QboFault(
            "2040", "Invalid Date", f"Invalid Date : {field_name}={value}", element=field_name
        ) from exc


def _drop_empty_strings(record: Any) -> None:
    """QBO leaves out fields with no value: an empty string sent is a field cleared."""
    if isinstance(record, dict):
        for key in [k for k, v in record.items() if v == "" and isinstance(v, str)]:
            del record[key]
        for value in record.values():
            _drop_empty_strings(value)
    elif isinstance(record, list):
        for value in record:
            _drop_empty_strings(value)


ChangeListener = Callable[[str, str, str, str, str | None], None]


@dataclass
class Company:
    """In-memory state of one realm. Records are the JSON dicts QBO would return."""

    realm_id: str
    name: str
    country: str
    clock: Clock
    environment: str = "sandbox"
    home_currency: str = ""
    multicurrency: bool = False
    custom_txn_numbers: bool = False
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    updated_at: dict[tuple[str, str], datetime] = field(default_factory=dict)
    tombstones: dict[tuple[str, str], datetime] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    next_doc_number: int = 1001
    # payment id -> {invoice id: amount} currently applied
    applied: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    # bill payment id -> {bill id: amount} currently applied
    bill_applied: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    # payment id -> the deposit that took it out of Undeposited Funds
    deposited: dict[str, str] = field(default_factory=dict)
    requestids: dict[str, tuple[int, bytes, str, str]] = field(default_factory=dict)
    listeners: list[ChangeListener] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    enforce_unique_docnumber: bool = True
    send_bumps_synctoken: bool = False
    require_docnumber_with_custom: bool = True
    tax_rates: dict[str, Decimal] = field(default_factory=dict)
    doc_index: dict[str, set[str]] = field(default_factory=dict)
    leniency: Leniency = field(default_factory=Leniency)
    # When a sales line's Amount must equal Qty x UnitPrice (6070): "nonzero" when both are
    # given and neither is 0, "present" whenever both are given, "off" never.
    qty_price_check: str = "nonzero"
    # The QuickBooks Online edition, reported as CompanyInfo's OfferingSku.
    edition: str = seed.DEFAULT_EDITION

    # ---------------------------------------------------------------- setup

    def __post_init__(self) -> None:
        if self.country not in seed.COUNTRIES:
            raise ValueError(f"unsupported country {self.country!r}")
        if self.qty_price_check not in QTY_PRICE_CHECKS:
            raise ValueError(f"qty_price_check must be one of {sorted(QTY_PRICE_CHECKS)}")
        facts = seed.COUNTRIES[self.country]
        self.tz = ZoneInfo(facts["tz"])
        self.home_currency = self.home_currency or facts["currency"]
        seed.offering_sku(self.edition)  # refuses an unknown edition
        for entity in (*WRITABLE_ENTITIES, "TaxCode"):
            self.records.setdefault(entity, {})
        self._seed_lists()

    @property
    def is_us(self) -> bool:
        return self.country == "US"

    def _seed_lists(self) -> None:
        now = self.clock.now()
        for acc_id, name, acc_type, sub_type in seed.ACCOUNTS:
            self._store(
                "Account",
                acc_id,
                {
                    "Name": name,
                    "SubAccount": False,
                    "FullyQualifiedName": name,
                    "Active": True,
                    "Classification": seed.ACCOUNT_CLASSIFICATION[acc_type],
                    "AccountType": acc_type,
                    "AccountSubType": sub_type,
                    "CurrentBalance": Decimal("0.00"),
                    "CurrentBalanceWithSubAccounts": Decimal("0.00"),
                    "CurrencyRef": self.currency_ref(self.home_currency),
                    "domain": "QBO",
                    "sparse": False,
                    "Id": acc_id,
                    "SyncToken": "0",
                    "MetaData": self.meta(now, now),
                },
                now,
            )
        for term_id, name, days in seed.TERMS:
            self._store(
                "Term",
                term_id,
                {
                    "Name": name,
                    "Active": True,
                    "Type": "STANDARD",
                    "DueDays": days,
                    "domain": "QBO",
                    "sparse": False,
                    "Id": term_id,
                    "SyncToken": "0",
                    "MetaData": self.meta(now, now),
                },
                now,
            )
        self.counters["Term"] = len(seed.TERMS)
        if self.is_us:
            for code, taxable in (("TAX", True), ("NON", False)):
                self.records["TaxCode"][code] = {
                    "Name": code,
                    "Description": "TAX" if taxable else "Non",
                    "Taxable": taxable,
                    "TaxGroup": False,
                    "Id": code,
                    "sparse": False,
                }
        for code_id, name, desc, rate in seed.TAX_CODES[self.country]:
            self.tax_rates[code_id] = rate
            self._store(
                "TaxCode",
                code_id,
                {
                    "Name": name,
                    "Description": desc,
                    "Active": True,
                    "Taxable": rate > 0,
                    "TaxGroup": self.is_us,
                    "Hidden": False,
                    "SalesTaxRateList": {
                        "TaxRateDetail": [
                            {
                                "TaxRateRef": {"value": code_id, "name": name},
                                "TaxTypeApplicable": "TaxOnAmount",
                                "TaxOrder": 0,
                            }
                        ]
                    },
                    "PurchaseTaxRateList": {"TaxRateDetail": []},
                    "domain": "QBO",
                    "sparse": False,
                    "Id": code_id,
                    "SyncToken": "0",
                    "MetaData": self.meta(now, now),
                },
                now,
            )
        self.counters["Account"] = 100
        self.counters["TaxCode"] = 20
        facts = seed.COUNTRIES[self.country]
        addr = {
            "Id": "1",
            "Line1": "2500 Garcia Ave",
            "City": "Mountain View",
            "Country": facts["iso3"],
            "PostalCode": "94043",
        }
        if facts["state"]:
            addr["CountrySubDivisionCode"] = facts["state"]
        self.company_info: dict[str, Any] = {
            "CompanyName": self.name,
            "LegalName": self.name,
            "Country": self.country,
            "SupportedLanguages": "en",
            "FiscalYearStartMonth": "January",
            "CompanyStartDate": now.astimezone(self.tz).date().isoformat(),
            "CompanyAddr": addr,
            "LegalAddr": dict(addr),
            "CustomerCommunicationAddr": dict(addr),
            "Email": {"Address": "noreply@example.com"},
            "WebAddr": {},
            "NameValue": [
                {"Name": "OfferingSku", "Value": seed.offering_sku(self.edition)},
                {"Name": "SubscriptionStatus", "Value": "PAID"},
            ],
            "domain": "QBO",
            "sparse": False,
            "Id": "1",
            "SyncToken": "0",
            "MetaData": self.meta(now, now),
        }
        self.preferences: dict[str, Any] = {
            "SalesFormsPrefs": {
                "CustomTxnNumbers": self.custom_txn_numbers,
                "AllowDeposit": True,
                "AllowDiscount": True,
                "AllowShipping": False,
                "AllowServiceDate": False,
                "DefaultTerms": {"value": "3"},
                "AutoApplyPayments": True,
                "AutoApplyCredit": True,
                "ETransactionEnabledStatus": "NotApplicable",
                "ETransactionPaymentEnabled": False,
                "IPNSupportEnabled": False,
                "EmailCopyToCompany": False,
                "DefaultCustomerMessage": "Thank you for your business and have a great day!",
            },
            "CurrencyPrefs": {
                "MultiCurrencyEnabled": self.multicurrency,
                "HomeCurrency": {"value": self.home_currency},
            },
            "TaxPrefs": {"UsingSalesTax": True},
            "AccountingInfoPrefs": {"CustomerTerminology": "Customers"},
            "domain": "QBO",
            "sparse": False,
            "Id": "1",
            "SyncToken": "0",
            "MetaData": self.meta(now, now),
        }

    def seed_demo_data(self) -> None:
        for body in seed.DEMO_ITEMS:
            item = dict(body)
            item["IncomeAccountRef"] = {"value": seed.INCOME_ACCOUNT_ID}
            self.create("Item", copy.deepcopy(item), {}, notify=False)
        for body in seed.DEMO_CUSTOMERS:
            self.create("Customer", copy.deepcopy(body), {}, notify=False)
        for body in seed.DEMO_VENDORS:
            self.create("Vendor", copy.deepcopy(body), {}, notify=False)

    def set_edition(self, edition: str) -> dict[str, Any]:
        """Move the company to another edition: CompanyInfo's OfferingSku changes (an Update
        of CompanyInfo, as any change of it)."""
        sku = seed.offering_sku(edition)
        self.edition = edition
        pairs = self.company_info.setdefault("NameValue", [])
        for pair in pairs:
            if pair.get("Name") == "OfferingSku":
                pair["Value"] = sku
                break
        else:
            pairs.append({"Name": "OfferingSku", "Value": sku})
        self.company_info["SyncToken"] = str(int(self.company_info["SyncToken"]) + 1)
        self.company_info["MetaData"]["LastUpdatedTime"] = self.local(self.clock.now())
        for listener in self.listeners:
            listener(self.realm_id, "CompanyInfo", "1", "Update", None)
        return self.company_info

    # ---------------------------------------------------------------- helpers

    def local(self, when: datetime) -> str:
        return when.astimezone(self.tz).isoformat(timespec="seconds")

    def envelope_time(self) -> str:
        return self.clock.now().astimezone(self.tz).isoformat(timespec="milliseconds")

    def meta(self, created: datetime, updated: datetime) -> dict[str, str]:
        return {"CreateTime": self.local(created), "LastUpdatedTime": self.local(updated)}

    def today(self) -> date:
        return self.clock.now().astimezone(self.tz).date()

    def currency_ref(self, code: str) -> dict[str, str]:
        return {"value": code, "name": seed.CURRENCY_NAMES.get(code, code)}

    def _store(self, entity: str, rid: str, record: dict[str, Any], when: datetime) -> None:
        self.records[entity][rid] = record
        self.updated_at[(entity, rid)] = when

    def _next_id(self, entity: str) -> str:
        self.counters[entity] = self.counters.get(entity, 0) + 1
        return str(self.counters[entity])

    def _changed(
        self, entity: str, rid: str, operation: str, deleted_id: str | None = None
    ) -> None:
        now = self.clock.now()
        self.updated_at[(entity, rid)] = now
        for listener in self.listeners:
            listener(self.realm_id, entity, rid, operation, deleted_id)

    def _touch(self, entity: str, record: dict[str, Any], bump: bool = True) -> None:
        now = self.clock.now()
        if bump:
            record["SyncToken"] = str(int(record["SyncToken"]) + 1)
        record["MetaData"]["LastUpdatedTime"] = self.local(now)
        self.updated_at[(entity, record["Id"])] = now

    def get(self, entity: str, rid: str) -> dict[str, Any]:
        if entity in PEOPLE:
            self.settle_balances()
        record = self.records.get(entity, {}).get(str(rid))
        if record is None:
            raise faults.not_found(deleted=(entity, str(rid)) in self.tombstones)
        return record

    def _ref(self, entity: str, ref: Any, element: str, *, active: bool = True) -> dict[str, Any]:
        if not isinstance(ref, dict) or not ref.get("value"):
            raise faults.required(element)
        record = self.records[entity].get(str(ref["value"]))
        if record is None:
            raise faults.invalid_reference(element, ref["value"])
        if active and record.get("Active") is False:
            raise faults.not_found()
        return record

    def read_request(self, entity: str, body: Any) -> dict[str, Any]:
        """The body as QBO reads it against Intuit's schema (2010/2170/2040 on what it
        refuses), without the properties QBO computes itself."""
        read = schema.load().read(entity, body, self.leniency)
        owned = schema.load().owned(entity, self.country)
        return {key: value for key, value in read.items() if key not in owned}

    # ---------------------------------------------------------------- dispatch

    def create(
        self, entity: str, body: dict[str, Any], params: dict[str, str], notify: bool = True
    ) -> dict[str, Any]:
        if entity not in WRITABLE_ENTITIES:
            raise faults.unsupported(f"/v3/company/{self.realm_id}/{entity.lower()}")
        body = self.read_request(entity, body)
        _drop_empty_strings(body)  # on create an empty string is no value; on update it clears
        creator = {
            "Customer": self._create_customer,
            "Vendor": self._create_vendor,
            "Item": self._create_item,
            "Invoice": self._create_invoice,
            "Payment": self._create_payment,
            "Bill": self._create_bill,
            "BillPayment": self._create_bill_payment,
            "Deposit": self._create_deposit,
            "Term": self._create_term,
            "Account": self._create_account,
        }[entity]
        record = creator(body, params)
        _drop_empty_strings(record)
        if entity in {"Invoice", "Bill"}:
            self._refresh_customer_balances()
        if notify:
            self._changed(entity, record["Id"], "Create")
        return record

    def update(self, entity: str, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        if entity in schema.load().entities:
            body = self.read_request(entity, body)
        if not body.get("Id"):
            raise faults.required("Id")
        current = self.get(entity, str(body["Id"]))
        if entity not in WRITABLE_ENTITIES:
            raise faults.unsupported(f"/v3/company/{self.realm_id}/{entity.lower()}")
        if str(body.get("SyncToken")) != current["SyncToken"]:
            raise faults.stale()
        self._check_not_deposited(entity, current["Id"])
        if entity == "Payment" and params.get("include") == "void":
            return self.void_payment(current)
        sparse = body.get("sparse") is True
        updater = {
            "Customer": self._update_customer,
            "Item": self._update_item,
            "Invoice": self._update_invoice,
            "Payment": self._update_payment,
            "Vendor": self._update_vendor,
            "Bill": self._update_bill,
            "BillPayment": self._update_bill_payment,
            "Deposit": self._update_deposit,
            "Term": self._update_term,
            "Account": self._update_account,
        }[entity]
        record = updater(current, body, sparse, params)
        _drop_empty_strings(record)
        self._touch(entity, record)
        self._changed(entity, record["Id"], "Update")
        return record

    def delete(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        if entity not in TRANSACTIONS:
            raise faults.QboFault(
                "6000",
                "A business validation error has occurred while processing your request",
                f"Business Validation Error: {entity} cannot be deleted; make it inactive instead.",
            )
        body = self.read_request(entity, body)
        if not body.get("Id"):
            raise faults.required("Id")
        current = self.get(entity, str(body["Id"]))
        if str(body.get("SyncToken")) != current["SyncToken"]:
            raise faults.stale()
        rid = current["Id"]
        self._check_not_deposited(entity, rid)
        if entity == "Invoice":
            self._unlink_payments(rid)
        elif entity == "Payment":
            self._unapply_payment(rid)
        elif entity == "Bill" and self._paid_on_bill(rid) > 0:
            # UNVERIFIED: QBO's answer to deleting a bill with payments.
            raise faults.business("This bill has payments; delete or change them first.")
        elif entity == "BillPayment":
            self._unapply_bill_payment(current)
        elif entity == "Deposit":
            self._unlink_deposited(rid)
        if entity == "Invoice":
            self._index_doc(rid, current.get("DocNumber"), None)
        del self.records[entity][rid]
        self.tombstones[(entity, rid)] = self.clock.now()
        self._changed(entity, rid, "Delete")
        self._refresh_customer_balances()
        return {"domain": "QBO", "status": "Deleted", "Id": rid}

    def void(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        if entity != "Invoice":
            raise faults.unsupported(f"/v3/company/{self.realm_id}/{entity.lower()}?operation=void")
        body = self.read_request(entity, body)
        if not body.get("Id"):
            raise faults.required("Id")
        invoice = self.get("Invoice", str(body["Id"]))
        if str(body.get("SyncToken")) != invoice["SyncToken"]:
            raise faults.stale()
        self._unlink_payments(invoice["Id"])
        for line in invoice["Line"]:
            if "Amount" in line:
                line["Amount"] = Decimal("0.00")
        invoice["TotalAmt"] = Decimal("0.00")
        invoice["Balance"] = Decimal("0.00")
        invoice["TxnTaxDetail"] = {"TotalTax": Decimal("0.00")}
        invoice["PrivateNote"] = "Voided"
        if "HomeTotalAmt" in invoice:
            invoice["HomeTotalAmt"] = Decimal("0.00")
            invoice["HomeBalance"] = Decimal("0.00")
        self._touch("Invoice", invoice)
        self._changed("Invoice", invoice["Id"], "Void")
        self._refresh_customer_balances()
        return invoice

    # ---------------------------------------------------------------- names

    def _name_taken(self, name: str, entity: str, except_id: str | None = None) -> bool:
        """Whether another record holds the name: DisplayName across customers and vendors,
        Name within the other lists."""
        wanted = name.casefold()
        lists = sorted(PEOPLE) if entity in PEOPLE else [entity]
        return any(
            (kind != entity or rid != except_id)
            and str(rec.get("DisplayName" if kind in PEOPLE else "Name", "")).casefold() == wanted
            for kind in lists
            for rid, rec in self.records[kind].items()
        )

    @staticmethod
    def _duplicate_name() -> QboFault:
        return QboFault(
            "6240", "Duplicate Name Exists Error", "The name supplied already exists. : null"
        )

    # ---------------------------------------------------------------- customer

    @staticmethod
    def _display_name(body: dict[str, Any]) -> str:
        parts = [body.get(k) for k in ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")]
        display = body.get("DisplayName") or " ".join(p for p in parts if p)
        if not display:
            raise QboFault("6080", "No Name Provided", "Please provide a name", element="")
        return str(display)

    def _create_customer(self, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        display = self._display_name(body)
        if self._name_taken(display, "Customer"):
            raise self._duplicate_name()
        self._check_email(body.get("PrimaryEmailAddr"))
        currency = (body.get("CurrencyRef") or {}).get("value") or self.home_currency
        if currency != self.home_currency and not self.multicurrency:
            raise faults.business("Multicurrency is not enabled for this company.")
        now = self.clock.now()
        rid = self._next_id("Customer")
        record: dict[str, Any] = {
            "Taxable": body.get("Taxable", True),
            "Job": False,
            "BillWithParent": False,
            "Balance": Decimal("0.00"),
            "BalanceWithJobs": Decimal("0.00"),
            "CurrencyRef": self.currency_ref(currency),
            "PreferredDeliveryMethod": "Print",
            "IsProject": False,
            "domain": "QBO",
            "sparse": False,
            "Id": rid,
            "SyncToken": "0",
            "MetaData": self.meta(now, now),
        }
        record.update({k: v for k, v in body.items() if k not in NOT_STORED | {"CurrencyRef"}})
        record["DisplayName"] = display
        self._place("Customer", record, display)
        if not record.get("PrintOnCheckName"):
            record["PrintOnCheckName"] = display
        record["Active"] = body.get("Active", True) is not False
        if self.is_us:
            record.setdefault("DefaultTaxCodeRef", {"value": "2"})
        self._store("Customer", rid, record, now)
        return record

    def _place(self, entity: str, record: dict[str, Any], name: str) -> None:
        """Where a name-list record sits: a sub-customer (job), sub-item or sub-account is
        `Parent:Child` in FullyQualifiedName, one Level below its parent."""
        ref = record.get("ParentRef")
        if not isinstance(ref, dict) or not ref.get("value"):
            record.pop("ParentRef", None)
            record.pop("Level", None)
            record["FullyQualifiedName"] = name
            return
        parent = self._ref(entity, ref, "ParentRef")
        if parent["Id"] == record.get("Id"):
            raise faults.business("An entity cannot be its own parent.")
        label = parent.get("DisplayName") or parent["Name"]
        record["ParentRef"] = {"value": parent["Id"], "name": label}
        record["FullyQualifiedName"] = f"{parent['FullyQualifiedName']}:{name}"
        if "Level" in schema.load().properties(entity):  # accounts have no Level
            record["Level"] = int(parent.get("Level") or 0) + 1
        flag = {"Customer": "Job", "Item": "SubItem", "Account": "SubAccount"}[entity]
        record[flag] = True

    def _check_email(self, addr: Any) -> None:
        if isinstance(addr, dict) and addr.get("Address"):
            value = str(addr["Address"])
            if len(value) > 100 or not EMAIL_RE.match(value):
                raise QboFault(
                    "2210",
                    "Invalid Email Address format",
                    "Email Address does not conform to the syntax rules of RFC 822. "
                    f"Supplied value:{value}",
                    element="",
                )

    def _update_customer(
        self, current: dict[str, Any], body: dict[str, Any], sparse: bool, params: dict[str, str]
    ) -> dict[str, Any]:
        self._check_email(body.get("PrimaryEmailAddr"))
        proposed: dict[str, Any] = (
            dict(current)
            if sparse
            else {
                k: current[k]
                for k in (
                    "Id",
                    "SyncToken",
                    "MetaData",
                    "domain",
                    "sparse",
                    "Balance",
                    "BalanceWithJobs",
                    "CurrencyRef",
                    "Job",
                    "BillWithParent",
                    "PreferredDeliveryMethod",
                    "Taxable",
                    "Active",
                    "IsProject",
                )
                if k in current
            }
        )
        proposed.update({k: v for k, v in body.items() if k not in NOT_STORED})
        display = proposed.get("DisplayName") or current["DisplayName"]
        becoming_inactive = current.get("Active", True) and proposed.get("Active") is False
        becoming_active = current.get("Active") is False and proposed.get("Active") is True
        if becoming_inactive:
            if current["Balance"] != 0:
                raise faults.business(
                    "Delete List Has Balance Error: The entity you are trying to delete has an "
                    "open balance."
                )
            if not display.endswith(DELETED_SUFFIX):
                display += DELETED_SUFFIX
        if becoming_active and display.endswith(DELETED_SUFFIX):
            display = display[: -len(DELETED_SUFFIX)]
        if display != current["DisplayName"] and self._name_taken(
            display, "Customer", current["Id"]
        ):
            raise self._duplicate_name()
        proposed["DisplayName"] = display
        self._place("Customer", proposed, display)
        if not proposed.get("PrintOnCheckName"):
            proposed["PrintOnCheckName"] = display
        current.clear()
        current.update(proposed)
        return current

    # ---------------------------------------------------------------- item

    def _create_item(self, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        name = body.get("Name")
        if not name:
            raise faults.required("Name")
        if len(str(name)) > 100:
            raise QboFault(
                "2050",
                "String length is either shorter or longer than supported by specification",
                "String length specified does not match the supported length. Min:0 Max:100 "
                f"supplied length:{len(str(name))}",
                element="Name",
            )
        if self._name_taken(name, "Item"):
            raise self._duplicate_name()
        item_type = body.get("Type", "Service")
        if item_type not in {"Service", "NonInventory", "Inventory", "Group", "Category"}:
            raise QboFault(
                "2170", "Invalid Enumeration", f"Invalid Enumeration : {item_type}", element="Type"
            )
        if item_type in {"Service", "NonInventory", "Inventory"}:
            self._ref("Account", body.get("IncomeAccountRef"), "IncomeAccountRef")
        now = self.clock.now()
        rid = self._next_id("Item")
        record: dict[str, Any] = {
            "Name": name,
            "Active": True,
            "FullyQualifiedName": name,
            "Taxable": False,
            "UnitPrice": Decimal("0"),
            "Type": item_type,
            "PurchaseCost": Decimal("0"),
            "TrackQtyOnHand": item_type == "Inventory",
            "domain": "QBO",
            "sparse": False,
            "Id": rid,
            "SyncToken": "0",
            "MetaData": self.meta(now, now),
        }
        record.update({k: v for k, v in body.items() if k not in NOT_STORED})
        self._place("Item", record, name)
        if "IncomeAccountRef" in record:
            acct = self.records["Account"][record["IncomeAccountRef"]["value"]]
            record["IncomeAccountRef"] = {"value": acct["Id"], "name": acct["Name"]}
        self._store("Item", rid, record, now)
        return record

    def _update_item(
        self, current: dict[str, Any], body: dict[str, Any], sparse: bool, params: dict[str, str]
    ) -> dict[str, Any]:
        proposed: dict[str, Any] = (
            dict(current)
            if sparse
            else {
                k: current[k]
                for k in ("Id", "SyncToken", "MetaData", "domain", "sparse", "Type", "Active")
                if k in current
            }
        )
        proposed.update({k: v for k, v in body.items() if k not in NOT_STORED})
        name = proposed.get("Name") or current["Name"]
        if (
            current.get("Active", True)
            and proposed.get("Active") is False
            and not name.endswith(DELETED_SUFFIX)
        ):
            name += DELETED_SUFFIX
        if (
            current.get("Active") is False
            and proposed.get("Active") is True
            and name.endswith(DELETED_SUFFIX)
        ):
            name = name[: -len(DELETED_SUFFIX)]
        if name != current["Name"] and self._name_taken(name, "Item", current["Id"]):
            raise self._duplicate_name()
        proposed["Name"] = name
        self._place("Item", proposed, name)
        current.clear()
        current.update(proposed)
        return current

    # ---------------------------------------------------------------- term

    def _create_term(self, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        name = body.get("Name")
        if not name:
            raise faults.required("Name")
        if self._name_taken(name, "Term"):
            raise self._duplicate_name()
        now = self.clock.now()
        rid = self._next_id("Term")
        record = {
            "Name": name,
            "Active": True,
            "Type": "STANDARD",
            "DueDays": 0,
            "domain": "QBO",
            "sparse": False,
            "Id": rid,
            "SyncToken": "0",
            "MetaData": self.meta(now, now),
        }
        record.update({k: v for k, v in body.items() if k not in NOT_STORED})
        if "DayOfMonthDue" in body:
            record["Type"] = "DATE_DRIVEN"
            record.pop("DueDays", None)
        self._store("Term", rid, record, now)
        return record

    def _update_term(
        self, current: dict[str, Any], body: dict[str, Any], sparse: bool, params: dict[str, str]
    ) -> dict[str, Any]:
        current.update({k: v for k, v in body.items() if k not in NOT_STORED})
        return current

    # ---------------------------------------------------------------- account

    def _create_account(self, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        name = body.get("Name")
        if not name:
            raise faults.required("Name")
        if self._name_taken(name, "Account"):
            raise self._duplicate_name()
        if not body.get("AccountType") and not body.get("AccountSubType"):
            raise faults.required("AccountType")
        now = self.clock.now()
        rid = self._next_id("Account")
        record: dict[str, Any] = {
            "Name": name,
            "SubAccount": False,
            "Active": True,
            "CurrentBalance": Decimal("0"),
            "CurrentBalanceWithSubAccounts": Decimal("0"),
            "CurrencyRef": self.currency_ref(self.home_currency),
            "domain": "QBO",
            "sparse": False,
            "Id": rid,
            "SyncToken": "0",
            "MetaData": self.meta(now, now),
        }
        record.update({k: v for k, v in body.items() if k not in NOT_STORED})
        if record.get("AccountType") in seed.ACCOUNT_CLASSIFICATION:
            record.setdefault("Classification", seed.ACCOUNT_CLASSIFICATION[record["AccountType"]])
        self._place("Account", record, name)
        self._store("Account", rid, record, now)
        return record

    def _update_account(
        self, current: dict[str, Any], body: dict[str, Any], sparse: bool, params: dict[str, str]
    ) -> dict[str, Any]:
        keep = ("Id", "SyncToken", "MetaData", "domain", "sparse", "CurrencyRef")
        proposed = dict(current) if sparse else {k: current[k] for k in keep if k in current}
        proposed.update({k: v for k, v in body.items() if k not in NOT_STORED})
        name = proposed.get("Name") or current["Name"]
        if name != current["Name"] and self._name_taken(name, "Account", current["Id"]):
            raise self._duplicate_name()
        proposed["Name"] = name
        for balance in ("CurrentBalance", "CurrentBalanceWithSubAccounts"):
            proposed[balance] = current.get(balance, Decimal("0"))
        self._place("Account", proposed, name)
        current.clear()
        current.update(proposed)
        return current

    def due_date(self, txn_date: date, term: dict[str, Any] | None) -> date:
        if term is None:
            return txn_date
        if term.get("Type") == "DATE_DRIVEN" and term.get("DayOfMonthDue"):
            day = int(term["DayOfMonthDue"])
            within = int(term.get("DueNextMonthDays") or 0)
            first = txn_date.replace(day=1)
            candidate = first.replace(day=min(day, 28))
            if txn_date > candidate - timedelta(days=within):
                nxt = (first + timedelta(days=32)).replace(day=1)
                candidate = nxt.replace(day=min(day, 28))
            return candidate
        return txn_date + timedelta(days=int(term.get("DueDays") or 0))

    # ---------------------------------------------------------------- invoice

    def _create_invoice(self, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        customer = self._ref("Customer", body.get("CustomerRef"), "CustomerRef")
        if not body.get("Line"):
            raise faults.required("Line")
        now = self.clock.now()
        rid = self._next_id("Invoice")
        txn_date = parse_date(body["TxnDate"], "TxnDate") if body.get("TxnDate") else self.today()
        invoice: dict[str, Any] = {
            "AllowIPNPayment": False,
            "AllowOnlinePayment": False,
            "AllowOnlineCreditCardPayment": False,
            "AllowOnlineACHPayment": False,
            "domain": "QBO",
            "sparse": False,
            "Id": rid,
            "SyncToken": "0",
            "MetaData": self.meta(now, now),
            "CustomField": [],
            "TxnDate": txn_date.isoformat(),
            "LinkedTxn": [],
            "ApplyTaxAfterDiscount": False,
            "PrintStatus": "NeedToPrint",
            "EmailStatus": "NotSet",
            "_next_line": 1,
        }
        invoice.update({k: v for k, v in body.items() if k not in NOT_STORED})
        invoice["TxnDate"] = txn_date.isoformat()
        self._assign_doc_number(invoice, body, params)
        invoice["CustomerRef"] = {"value": customer["Id"], "name": customer["DisplayName"]}
        for addr in ("BillAddr", "ShipAddr"):
            if addr not in invoice and customer.get("BillAddr"):
                invoice[addr] = copy.deepcopy(customer.get(addr) or customer["BillAddr"])
        if "BillEmail" not in invoice and customer.get("PrimaryEmailAddr"):
            invoice["BillEmail"] = dict(customer["PrimaryEmailAddr"])
        self._check_email(invoice.get("BillEmail"))
        term = self._terms_for(invoice, customer)
        if term is not None:
            invoice["SalesTermRef"] = {"value": term["Id"], "name": term["Name"]}
        if not body.get("DueDate"):
            invoice["DueDate"] = self.due_date(txn_date, term).isoformat()
        self._set_currency(invoice, customer)
        self._price_invoice(invoice, body.get("Line") or [], paid=Decimal("0"))
        self._store("Invoice", rid, invoice, now)
        self._index_doc(rid, None, invoice.get("DocNumber"))
        return invoice

    def _terms_for(
        self, invoice: dict[str, Any], customer: dict[str, Any]
    ) -> dict[str, Any] | None:
        # Precedence (UNVERIFIED): the invoice's terms, the customer's, the company default.
        for ref in (
            invoice.get("SalesTermRef"),
            customer.get("SalesTermRef"),
            self.preferences["SalesFormsPrefs"].get("DefaultTerms"),
        ):
            if isinstance(ref, dict) and ref.get("value"):
                return self._ref("Term", ref, "SalesTermRef")
        return None

    def _set_currency(self, invoice: dict[str, Any], customer: dict[str, Any]) -> None:
        cust_currency = customer["CurrencyRef"]["value"]
        asked = (invoice.get("CurrencyRef") or {}).get("value") or cust_currency
        if asked != cust_currency:
            raise faults.business(
                f"The currency of the transaction ({asked}) must match the customer's currency "
                f"({cust_currency})."
            )
        invoice["CurrencyRef"] = self.currency_ref(asked)
        if self.multicurrency:
            invoice["ExchangeRate"] = number(invoice.get("ExchangeRate") or 1, "ExchangeRate")

    def _assign_doc_number(
        self, invoice: dict[str, Any], body: dict[str, Any], params: dict[str, str]
    ) -> None:
        doc = body.get("DocNumber")
        if (
            doc == "AUTO_GENERATE"
            or body.get("AutoDocNumber") is True
            or (not doc and not self.custom_txn_numbers)
        ):
            invoice["DocNumber"] = self._next_doc_number()
            return
        if not doc:
            if self.require_docnumber_with_custom:
                # The issue's rule (and France's real one); elsewhere QBO leaves it empty.
                raise faults.required("DocNumber")
            invoice.pop("DocNumber", None)
            return
        doc = str(doc)
        if len(doc) > 21:
            raise QboFault(
                "2050",
                "String length is either shorter or longer than supported by specification",
                f"String length specified does not match the supported length. Min:0 Max:21 "
                f"supplied length:{len(doc)}",
                element="DocNumber",
            )
        self._check_doc_unique(doc, invoice.get("Id"), params)
        invoice["DocNumber"] = doc

    def _check_doc_unique(self, doc: str, except_id: str | None, params: dict[str, str]) -> None:
        if not self.enforce_unique_docnumber or params.get("include") == "allowduplicatedocnum":
            return
        for other_id in self.doc_index.get(doc, ()):
            if other_id != except_id:
                raise QboFault(
                    "6140",
                    "Duplicate Document Number Error",
                    "Duplicate Document Number Error : You must specify a different number. This "
                    f"number has already been used. DocNumber={doc} is assigned to TxnType=Invoice "
                    f"with TxnId={other_id}",
                    element="",
                )

    def _index_doc(self, invoice_id: str, old: str | None, new: str | None) -> None:
        if old:
            self.doc_index.get(old, set()).discard(invoice_id)
        if new:
            self.doc_index.setdefault(new, set()).add(invoice_id)

    def _next_doc_number(self) -> str:
        while self.doc_index.get(str(self.next_doc_number)):
            self.next_doc_number += 1
        doc = str(self.next_doc_number)
        self.next_doc_number += 1
        return doc

    def _price_invoice(self, invoice: dict[str, Any], lines_in: list[Any], paid: Decimal) -> None:
        """Number the lines, add the subtotal, compute tax, TotalAmt and Balance."""
        lines: list[dict[str, Any]] = []
        subtotal = Decimal("0.00")
        taxable_by_code: dict[str, Decimal] = {}
        used_ids = {str(ln.get("Id")) for ln in lines_in if isinstance(ln, dict) and ln.get("Id")}
        for raw in lines_in:
            if not isinstance(raw, dict):
                raise faults.required("Line")
            kind = raw.get("DetailType")
            if kind in ("SubTotalLineDetail", "DiscountLineDetail"):
                continue
            if not kind:
                raise faults.required("DetailType")
            if kind not in schema.LINE_DETAILS["Invoice"]:
                raise QboFault(
                    "2170",
                    "Invalid Enumeration",
                    f"Invalid Enumeration : {kind}",
                    element="DetailType",
                )
            line = self._numbered(raw, invoice, used_ids)
            charges: list[tuple[str, Decimal]] = []
            if kind == "SalesItemLineDetail":
                charges = self._price_item_line(line)
            elif kind == "GroupLineDetail":
                charges = self._price_group_line(line, invoice, used_ids)
            for code, amount in charges:
                subtotal += amount
                taxable_by_code[code] = taxable_by_code.get(code, Decimal("0")) + amount
            lines.append(line)
        if not lines:
            raise faults.required("Line")
        discount = Decimal("0.00")
        for raw in lines_in:
            if isinstance(raw, dict) and raw.get("DetailType") == "DiscountLineDetail":
                ddetail = raw.get("DiscountLineDetail") or {}
                if ddetail.get("PercentBased"):
                    discount = (
                        subtotal
                        * number(ddetail.get("DiscountPercent", 0), "DiscountPercent")
                        / 100
                    ).quantize(CENT, rounding=ROUND_HALF_UP)
                else:
                    discount = money(raw.get("Amount", 0))
                line = {
                    "Amount": discount,
                    "DetailType": "DiscountLineDetail",
                    "DiscountLineDetail": dict(ddetail),
                }
                line["Id"] = str(invoice["_next_line"])
                invoice["_next_line"] += 1
                lines.append(line)
        for num, line in enumerate(
            (ln for ln in lines if ln["DetailType"] != "DiscountLineDetail"), 1
        ):
            line["LineNum"] = num
        # QBO prints Id and LineNum first; keep that order for readers of raw payloads.
        lines = [
            {k: ln[k] for k in ("Id", "LineNum") if k in ln}
            | {k: v for k, v in ln.items() if k not in ("Id", "LineNum")}
            for ln in lines
        ]
        lines.append(
            {"Amount": subtotal, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}
        )
        invoice["Line"] = lines
        tax_detail = self._compute_tax(invoice, taxable_by_code, subtotal, discount)
        invoice["TxnTaxDetail"] = tax_detail
        total = subtotal - discount + tax_detail["TotalTax"]
        deposit = money(invoice.get("Deposit") or 0)
        if total - deposit - paid < 0:
            raise faults.business(
                "The transaction total cannot be less than the amount already paid."
            )
        invoice["TotalAmt"] = total
        invoice["Balance"] = total - deposit - paid
        if self.multicurrency:
            rate = invoice.get("ExchangeRate") or Decimal("1")
            invoice["HomeTotalAmt"] = (total * rate).quantize(CENT, rounding=ROUND_HALF_UP)
            invoice["HomeBalance"] = (invoice["Balance"] * rate).quantize(
                CENT, rounding=ROUND_HALF_UP
            )
        if not self.is_us:
            invoice.setdefault("GlobalTaxCalculation", "TaxExcluded")

    @staticmethod
    def _numbered(
        raw: dict[str, Any], invoice: dict[str, Any], used_ids: set[str]
    ) -> dict[str, Any]:
        """A copy of a line with its Id: kept when the invoice has it, else the next free one."""
        line = copy.deepcopy(raw)
        line.pop("LineNum", None)
        if not line.get("Id") or str(line["Id"]) not in used_ids:
            while str(invoice["_next_line"]) in used_ids:
                invoice["_next_line"] += 1
            line["Id"] = str(invoice["_next_line"])
            invoice["_next_line"] += 1
        # QBO prints a line's Id first.
        return {"Id": line.pop("Id"), **line}

    def _price_item_line(self, line: dict[str, Any]) -> list[tuple[str, Decimal]]:
        """Check and complete a SalesItemLineDetail line; its (tax code, amount) charge, if any.
        A line with no item is documentation only; QBO leaves its amount out (SCHEMA)."""
        if "Amount" not in line:
            raise faults.required("Amount")
        amount = money(line["Amount"])
        detail = line.setdefault("SalesItemLineDetail", {})
        qty, price = detail.get("Qty"), detail.get("UnitPrice")
        if self._checks_qty_price(qty, price) and amount != (
            number(qty, "Qty") * number(price, "UnitPrice")
        ).quantize(CENT, rounding=ROUND_HALF_UP):
            raise QboFault(
                "6070",
                "Amount is not equal to Qty * UnitPrice",
                f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}",
                element="",
            )
        line["Amount"] = amount
        item = None
        if detail.get("ItemRef"):
            item = self._ref("Item", detail["ItemRef"], "ItemRef")
            detail["ItemRef"] = {"value": item["Id"], "name": item["Name"]}
        code = self._line_tax_code(detail, item)
        return [(code, amount)] if item is not None else []

    def _checks_qty_price(self, qty: Any, price: Any) -> bool:
        """Whether QBO holds this line's Amount to Qty x UnitPrice (6070). Client libraries send
        Qty 0 and UnitPrice 0 as defaults beside an Amount, and QBO takes the Amount (OBS)."""
        if self.qty_price_check == "off" or qty is None or price is None:
            return False
        return self.qty_price_check == "present" or (qty != 0 and price != 0)

    def _price_group_line(
        self, line: dict[str, Any], invoice: dict[str, Any], used_ids: set[str]
    ) -> list[tuple[str, Decimal]]:
        """A bundle: its item lines are priced as lines of their own; the group's Amount is
        their sum."""
        group = line.setdefault("GroupLineDetail", {})
        if group.get("GroupItemRef"):
            bundle = self._ref("Item", group["GroupItemRef"], "GroupItemRef")
            group["GroupItemRef"] = {"value": bundle["Id"], "name": bundle["Name"]}
        inner: list[dict[str, Any]] = []
        charges: list[tuple[str, Decimal]] = []
        for raw in group.get("Line") or []:
            if raw.get("DetailType") != "SalesItemLineDetail":
                raise QboFault(
                    "2170",
                    "Invalid Enumeration",
                    f"Invalid Enumeration : {raw.get('DetailType')}",
                    element="DetailType",
                )
            sub = self._numbered(raw, invoice, used_ids)
            charges += self._price_item_line(sub)
            inner.append(sub)
        group["Line"] = inner
        line["Amount"] = sum((amount for _, amount in charges), Decimal("0.00"))
        return charges

    def _line_tax_code(self, detail: dict[str, Any], item: dict[str, Any] | None) -> str:
        ref = detail.get("TaxCodeRef")
        code = str(ref.get("value")) if isinstance(ref, dict) and ref.get("value") else None
        if self.is_us:
            if code is None:
                code = "TAX" if item is not None and item.get("Taxable") else "NON"
            if code not in {"TAX", "NON"}:
                raise QboFault(
                    "6100",
                    "Invalid Line TaxCode",
                    f"Invalid Line TaxCode : {code}. US lines must use TAX or NON.",
                    element="TaxCodeRef",
                )
        else:
            if code is None:
                raise faults.business(seed.MISSING_TAX_TEXT[self.country])
            if code not in self.tax_rates:
                raise faults.invalid_reference("TaxCodeRef", code)
        detail["TaxCodeRef"] = {"value": code}
        return code

    def _compute_tax(
        self,
        invoice: dict[str, Any],
        taxable: dict[str, Decimal],
        subtotal: Decimal,
        discount: Decimal,
    ) -> dict[str, Any]:
        tax_lines: list[dict[str, Any]] = []
        total_tax = Decimal("0.00")
        if self.is_us:
            requested = (invoice.get("TxnTaxDetail") or {}).get("TxnTaxCodeRef")
            base = taxable.get("TAX", Decimal("0"))
            if isinstance(requested, dict) and requested.get("value") and base > 0:
                code = str(requested["value"])
                if code not in self.tax_rates:
                    raise faults.invalid_reference("TxnTaxCodeRef", code)
                total_tax = (base * self.tax_rates[code] / 100).quantize(
                    CENT, rounding=ROUND_HALF_UP
                )
                tax_lines.append(self._tax_line(code, base, total_tax))
                return {
                    "TxnTaxCodeRef": {"value": code},
                    "TotalTax": total_tax,
                    "TaxLine": tax_lines,
                }
            return {"TotalTax": total_tax}
        for code, base in taxable.items():
            amount = (base * self.tax_rates[code] / 100).quantize(CENT, rounding=ROUND_HALF_UP)
            total_tax += amount
            tax_lines.append(self._tax_line(code, base, amount))
        return {"TotalTax": total_tax, "TaxLine": tax_lines}

    def _tax_line(self, code: str, base: Decimal, amount: Decimal) -> dict[str, Any]:
        return {
            "Amount": amount,
            "DetailType": "TaxLineDetail",
            "TaxLineDetail": {
                "TaxRateRef": {"value": code},
                "PercentBased": True,
                "TaxPercent": self.tax_rates[code],
                "NetAmountTaxable": base,
            },
        }

    def _paid_on(self, invoice_id: str) -> Decimal:
        return sum(
            (a.get(invoice_id, Decimal("0")) for a in self.applied.values()), Decimal("0.00")
        )

    def _update_invoice(
        self, current: dict[str, Any], body: dict[str, Any], sparse: bool, params: dict[str, str]
    ) -> dict[str, Any]:
        proposed: dict[str, Any] = (
            copy.deepcopy(current)
            if sparse
            else {
                k: copy.deepcopy(current[k])
                for k in (
                    "Id",
                    "SyncToken",
                    "MetaData",
                    "domain",
                    "sparse",
                    "LinkedTxn",
                    "CustomField",
                    "AllowIPNPayment",
                    "AllowOnlinePayment",
                    "AllowOnlineCreditCardPayment",
                    "AllowOnlineACHPayment",
                    "ApplyTaxAfterDiscount",
                    "PrintStatus",
                    "EmailStatus",
                    "DeliveryInfo",
                    "CurrencyRef",
                    "ExchangeRate",
                    "_next_line",
                    "TxnDate",
                )
                if k in current
            }
        )
        proposed.update({k: v for k, v in body.items() if k not in NOT_STORED})
        customer = self._ref("Customer", proposed.get("CustomerRef"), "CustomerRef")
        if customer["Id"] != current["CustomerRef"]["value"] and self._paid_on(current["Id"]) > 0:
            raise QboFault(
                "620",
                "TxnID cannot be linked",
                "The customer of an invoice with payments cannot change.",
            )
        proposed["CustomerRef"] = {"value": customer["Id"], "name": customer["DisplayName"]}
        if "DocNumber" in body and body["DocNumber"] != current.get("DocNumber"):
            self._assign_doc_number(proposed, body, params)
        if "TxnDate" in body or "SalesTermRef" in body:
            txn_date = parse_date(proposed["TxnDate"], "TxnDate")
            if "DueDate" not in body:
                proposed["DueDate"] = self.due_date(
                    txn_date, self._terms_for(proposed, customer)
                ).isoformat()
        self._check_email(proposed.get("BillEmail"))
        self._set_currency(proposed, customer)
        lines = body["Line"] if "Line" in body else current["Line"]
        self._price_invoice(proposed, lines, paid=self._paid_on(current["Id"]))
        self._index_doc(current["Id"], current.get("DocNumber"), proposed.get("DocNumber"))
        current.clear()
        current.update(proposed)
        self._refresh_customer_balances()
        return current

    def send_invoice(self, rid: str, send_to: str | None) -> dict[str, Any]:
        invoice = self.get("Invoice", rid)
        if send_to:
            self._check_email({"Address": send_to})
            invoice["BillEmail"] = {"Address": send_to}
        address = (invoice.get("BillEmail") or {}).get("Address")
        if not address:
            # UNVERIFIED: the real code and text for a send with no address.
            raise faults.business("Please provide an email address to send this transaction to.")
        self.mark_emailed(invoice, address)
        return invoice

    def mark_emailed(self, invoice: dict[str, Any], address: str) -> None:
        now = self.clock.now()
        invoice["EmailStatus"] = "EmailSent"
        invoice["DeliveryInfo"] = {"DeliveryType": "Email", "DeliveryTime": self.local(now)}
        self._touch("Invoice", invoice, bump=self.send_bumps_synctoken)
        self.outbox.append(
            {
                "to": address,
                "invoice_id": invoice["Id"],
                "at": self.local(now),
                "DocNumber": invoice.get("DocNumber"),
            }
        )
        self._changed("Invoice", invoice["Id"], "Emailed")

    # ---------------------------------------------------------------- payment

    def _payment_lines(
        self, customer: dict[str, Any], lines_in: Any
    ) -> tuple[list[dict[str, Any]], dict[str, Decimal]]:
        lines: list[dict[str, Any]] = []
        applied: dict[str, Decimal] = {}
        for raw in lines_in or []:
            amount = money(raw.get("Amount", 0))
            links = raw.get("LinkedTxn") or []
            line: dict[str, Any] = {"Amount": amount, "LinkedTxn": []}
            for link in links:
                if link.get("TxnType") != "Invoice":
                    raise QboFault(
                        "620",
                        "TxnID cannot be linked",
                        f"Only invoices can be linked here, not {link.get('TxnType')}",
                    )
                invoice = self.get("Invoice", str(link.get("TxnId")))
                if invoice["CustomerRef"]["value"] != customer["Id"]:
                    raise QboFault(
                        "620",
                        "TxnID cannot be linked",
                        "The transaction belongs to a different customer.",
                    )
                open_balance = invoice["Balance"] - applied.get(invoice["Id"], Decimal("0"))
                if amount > open_balance:
                    # UNVERIFIED: the real overpayment text.
                    raise faults.business(
                        f"The payment amount {amount} is more than the open balance "
                        f"{open_balance} of invoice {invoice['Id']}."
                    )
                applied[invoice["Id"]] = applied.get(invoice["Id"], Decimal("0")) + amount
                line["LinkedTxn"].append({"TxnId": invoice["Id"], "TxnType": "Invoice"})
                line["LineEx"] = {
                    "any": [
                        {
                            "name": "{http://schema.intuit.com/finance/v3}NameValue",
                            "declaredType": "com.intuit.schema.finance.v3.NameValue",
                            "scope": "javax.xml.bind.JAXBElement$GlobalScope",
                            "value": {"Name": "txnId", "Value": invoice["Id"]},
                            "nil": False,
                            "globalScope": True,
                            "typeSubstituted": False,
                        },
                        {
                            "name": "{http://schema.intuit.com/finance/v3}NameValue",
                            "declaredType": "com.intuit.schema.finance.v3.NameValue",
                            "scope": "javax.xml.bind.JAXBElement$GlobalScope",
                            "value": {"Name": "txnOpenBalance", "Value": str(invoice["Balance"])},
                            "nil": False,
                            "globalScope": True,
                            "typeSubstituted": False,
                        },
                    ]
                }
            lines.append(line)
        return lines, applied

    def _create_payment(self, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        customer = self._ref("Customer", body.get("CustomerRef"), "CustomerRef")
        if body.get("TotalAmt") is None:
            raise faults.required("TotalAmt")
        total = money(body["TotalAmt"], "TotalAmt")
        lines, applied = self._payment_lines(customer, body.get("Line"))
        applied_total = sum(applied.values(), Decimal("0.00"))
        if applied_total > total:
            raise faults.business("The amount applied is more than the total amount received.")
        now = self.clock.now()
        rid = self._next_id("Payment")
        payment: dict[str, Any] = {
            "SyncToken": "0",
            "domain": "QBO",
            "sparse": False,
            "Id": rid,
            "DepositToAccountRef": {"value": seed.UNDEPOSITED_FUNDS_ID},
            "TxnDate": self.today().isoformat(),
            "ProcessPayment": False,
            "MetaData": self.meta(now, now),
            "CurrencyRef": customer["CurrencyRef"],
        }
        payment.update({k: v for k, v in body.items() if k not in NOT_STORED | PAYMENT_DERIVED})
        payment.update(
            {
                "CustomerRef": {"value": customer["Id"], "name": customer["DisplayName"]},
                "TotalAmt": total,
                "UnappliedAmt": total - applied_total,
                "Line": lines,
            }
        )
        self._store("Payment", rid, payment, now)
        self._apply_payment(rid, applied)
        return payment

    def _update_payment(
        self, current: dict[str, Any], body: dict[str, Any], sparse: bool, params: dict[str, str]
    ) -> dict[str, Any]:
        customer = self.get("Customer", current["CustomerRef"]["value"])
        previous = self._unapply_payment(current["Id"])
        try:
            lines_in = body["Line"] if "Line" in body else ([] if not sparse else current["Line"])
            lines, applied = self._payment_lines(customer, lines_in)
            total = money(body.get("TotalAmt", current["TotalAmt"]), "TotalAmt")
            if sum(applied.values(), Decimal("0")) > total:
                raise faults.business("The amount applied is more than the total amount received.")
        except QboFault:
            self._apply_payment(current["Id"], previous, touch=False)
            raise
        current.update({k: v for k, v in body.items() if k not in NOT_STORED | PAYMENT_DERIVED})
        current.update(
            {
                "Line": lines,
                "TotalAmt": total,
                "UnappliedAmt": total - sum(applied.values(), Decimal("0.00")),
            }
        )
        self._apply_payment(current["Id"], applied)
        return current

    def void_payment(self, payment: dict[str, Any]) -> dict[str, Any]:
        self._unapply_payment(payment["Id"])
        for line in payment["Line"]:
            line["Amount"] = Decimal("0.00")
        payment.update(
            {"TotalAmt": Decimal("0.00"), "UnappliedAmt": Decimal("0.00"), "PrivateNote": "Voided"}
        )
        self._touch("Payment", payment)
        self._changed("Payment", payment["Id"], "Void")
        return payment

    def _apply_payment(
        self, payment_id: str, applied: dict[str, Decimal], touch: bool = True
    ) -> None:
        self.applied[payment_id] = applied
        for invoice_id, amount in applied.items():
            invoice = self.records["Invoice"][invoice_id]
            invoice["Balance"] -= amount
            if "HomeBalance" in invoice:
                invoice["HomeBalance"] = (
                    invoice["Balance"] * invoice.get("ExchangeRate", 1)
                ).quantize(CENT)
            link = {"TxnId": payment_id, "TxnType": "Payment"}
            if link not in invoice["LinkedTxn"]:
                invoice["LinkedTxn"].append(link)
            if touch:
                # Applying a payment changes the invoice, so its SyncToken moves (OBS).
                self._touch("Invoice", invoice)
                self._changed("Invoice", invoice_id, "Update")
        self._refresh_customer_balances()

    def _unapply_payment(self, payment_id: str) -> dict[str, Decimal]:
        applied = self.applied.pop(payment_id, {})
        for invoice_id, amount in applied.items():
            invoice = self.records["Invoice"].get(invoice_id)
            if invoice is None:
                continue
            invoice["Balance"] += amount
            if "HomeBalance" in invoice:
                invoice["HomeBalance"] = (
                    invoice["Balance"] * invoice.get("ExchangeRate", 1)
                ).quantize(CENT)
            invoice["LinkedTxn"] = [
                lt
                for lt in invoice["LinkedTxn"]
                if not (lt.get("TxnType") == "Payment" and lt.get("TxnId") == payment_id)
            ]
            self._touch("Invoice", invoice)
            self._changed("Invoice", invoice_id, "Update")
        self._refresh_customer_balances()
        return applied

    def _unlink_payments(self, invoice_id: str) -> None:
        """Void/delete of a paid invoice: its payments stay, as unapplied credit (UNVERIFIED)."""
        for payment_id, applied in list(self.applied.items()):
            if invoice_id not in applied:
                continue
            amount = applied.pop(invoice_id)
            payment = self.records["Payment"][payment_id]
            payment["Line"] = [
                ln
                for ln in payment["Line"]
                if not any(lt.get("TxnId") == invoice_id for lt in ln.get("LinkedTxn", []))
            ]
            payment["UnappliedAmt"] += amount
            self._touch("Payment", payment)
            self._changed("Payment", payment_id, "Update")
        invoice = self.records["Invoice"].get(invoice_id)
        if invoice is not None:
            invoice["LinkedTxn"] = [
                lt for lt in invoice["LinkedTxn"] if lt.get("TxnType") != "Payment"
            ]

    def _refresh_customer_balances(self) -> None:
        # Recomputed lazily, on the next read of a customer: creates stay O(1).
        self._balances_dirty = True

    def settle_balances(self) -> None:
        """Bring every customer's Balance up to date with open invoices and credits."""
        if not getattr(self, "_balances_dirty", False):
            return
        self._balances_dirty = False
        totals: dict[str, Decimal] = {}
        for invoice in self.records["Invoice"].values():
            cid = invoice["CustomerRef"]["value"]
            totals[cid] = totals.get(cid, Decimal("0.00")) + invoice["Balance"]
        for payment in self.records["Payment"].values():
            cid = payment["CustomerRef"]["value"]
            totals[cid] = totals.get(cid, Decimal("0.00")) - payment["UnappliedAmt"]
        for cid, customer in self.records["Customer"].items():
            balance = totals.get(cid, Decimal("0.00"))
            customer["Balance"] = balance
            customer["BalanceWithJobs"] = balance
        owed: dict[str, Decimal] = {}
        for bill in self.records["Bill"].values():
            vid = bill["VendorRef"]["value"]
            owed[vid] = owed.get(vid, Decimal("0.00")) + bill["Balance"]
        for vid, vendor in self.records["Vendor"].items():
            vendor["Balance"] = owed.get(vid, Decimal("0.00"))

    # ---------------------------------------------------------------- vendor

    def _create_vendor(self, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        display = self._display_name(body)
        if self._name_taken(display, "Vendor"):
            raise self._duplicate_name()
        self._check_email(body.get("PrimaryEmailAddr"))
        if body.get("TermRef"):
            self._ref("Term", body["TermRef"], "TermRef")
        currency = (body.get("CurrencyRef") or {}).get("value") or self.home_currency
        if currency != self.home_currency and not self.multicurrency:
            raise faults.business("Multicurrency is not enabled for this company.")
        now = self.clock.now()
        rid = self._next_id("Vendor")
        record: dict[str, Any] = {
            "Balance": Decimal("0.00"),
            "Vendor1099": False,
            "CurrencyRef": self.currency_ref(currency),
            "domain": "QBO",
            "sparse": False,
            "Id": rid,
            "SyncToken": "0",
            "MetaData": self.meta(now, now),
        }
        record.update({k: v for k, v in body.items() if k not in NOT_STORED | {"CurrencyRef"}})
        record["DisplayName"] = display
        record["FullyQualifiedName"] = display
        if not record.get("PrintOnCheckName"):
            record["PrintOnCheckName"] = display
        record["Active"] = body.get("Active", True) is not False
        self._store("Vendor", rid, record, now)
        return record

    def _update_vendor(
        self, current: dict[str, Any], body: dict[str, Any], sparse: bool, params: dict[str, str]
    ) -> dict[str, Any]:
        self._check_email(body.get("PrimaryEmailAddr"))
        if body.get("TermRef"):
            self._ref("Term", body["TermRef"], "TermRef")
        keep = ("Id", "SyncToken", "MetaData", "domain", "sparse", "Balance", "CurrencyRef")
        proposed = dict(current) if sparse else {k: current[k] for k in keep if k in current}
        proposed.update({k: v for k, v in body.items() if k not in NOT_STORED | {"CurrencyRef"}})
        proposed.setdefault("Vendor1099", False)
        proposed.setdefault("Active", current.get("Active", True))
        display = self._renamed(
            proposed.get("DisplayName") or current["DisplayName"],
            was_active=current.get("Active", True) is not False,
            active=proposed["Active"] is not False,
        )
        if display != current["DisplayName"] and self._name_taken(display, "Vendor", current["Id"]):
            raise self._duplicate_name()
        proposed["DisplayName"] = display
        proposed["FullyQualifiedName"] = display
        if not proposed.get("PrintOnCheckName"):
            proposed["PrintOnCheckName"] = display
        current.clear()
        current.update(proposed)
        return current

    @staticmethod
    def _renamed(name: str, *, was_active: bool, active: bool) -> str:
        """A name list record's name across (in)activation: " (deleted)" comes and goes."""
        if was_active and not active and not name.endswith(DELETED_SUFFIX):
            return name + DELETED_SUFFIX
        if not was_active and active and name.endswith(DELETED_SUFFIX):
            return name[: -len(DELETED_SUFFIX)]
        return name

    # ---------------------------------------------------------------- bill

    def _create_bill(self, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        vendor = self._ref("Vendor", body.get("VendorRef"), "VendorRef")
        if not body.get("Line"):
            raise faults.required("Line")
        now = self.clock.now()
        rid = self._next_id("Bill")
        bill: dict[str, Any] = {
            "domain": "QBO",
            "sparse": False,
            "Id": rid,
            "SyncToken": "0",
            "MetaData": self.meta(now, now),
            "TxnDate": self.today().isoformat(),
            "LinkedTxn": [],
            "_next_line": 1,
        }
        bill.update({k: v for k, v in body.items() if k not in NOT_STORED})
        self._complete_bill(bill, vendor, body["Line"], Decimal("0"), bool(body.get("DueDate")))
        self._store("Bill", rid, bill, now)
        return bill

    def _update_bill(
        self, current: dict[str, Any], body: dict[str, Any], sparse: bool, params: dict[str, str]
    ) -> dict[str, Any]:
        keep = ("Id", "SyncToken", "MetaData", "domain", "sparse", "LinkedTxn", "_next_line")
        proposed = (
            copy.deepcopy(current)
            if sparse
            else {k: copy.deepcopy(current[k]) for k in (*keep, "TxnDate") if k in current}
        )
        proposed.update({k: v for k, v in body.items() if k not in NOT_STORED})
        vendor = self._ref("Vendor", proposed.get("VendorRef"), "VendorRef")
        paid = self._paid_on_bill(current["Id"])
        if vendor["Id"] != current["VendorRef"]["value"] and paid > 0:
            raise QboFault(
                "620", "TxnID cannot be linked", "The vendor of a bill with payments cannot change."
            )
        lines = body["Line"] if "Line" in body else current["Line"]
        keep_due = bool(proposed.get("DueDate")) and (
            "DueDate" in body or (sparse and not {"TxnDate", "SalesTermRef"} & set(body))
        )
        self._complete_bill(proposed, vendor, lines, paid, keep_due)
        current.clear()
        current.update(proposed)
        return current

    def _complete_bill(
        self,
        bill: dict[str, Any],
        vendor: dict[str, Any],
        lines_in: list[Any],
        paid: Decimal,
        keep_due: bool,
    ) -> None:
        """Vendor, accounts, terms, due date, lines, TotalAmt and Balance of a bill."""
        bill["VendorRef"] = {"value": vendor["Id"], "name": vendor["DisplayName"]}
        txn_date = parse_date(bill["TxnDate"], "TxnDate") if bill.get("TxnDate") else self.today()
        bill["TxnDate"] = txn_date.isoformat()
        account = self._ref(
            "Account",
            bill.get("APAccountRef") or {"value": seed.PAYABLES_ACCOUNT_ID},
            "APAccountRef",
        )
        bill["APAccountRef"] = {"value": account["Id"], "name": account["Name"]}
        # UNVERIFIED: the bill's own terms, then the vendor's; without either it is due at once.
        term = None
        for ref in (bill.get("SalesTermRef"), vendor.get("TermRef")):
            if isinstance(ref, dict) and ref.get("value"):
                term = self._ref("Term", ref, "SalesTermRef")
                break
        if term is not None:
            bill["SalesTermRef"] = {"value": term["Id"], "name": term["Name"]}
        if not keep_due:
            bill["DueDate"] = self.due_date(txn_date, term).isoformat()
        self._set_currency(bill, vendor)
        bill["Line"] = self._expense_lines(bill, lines_in)
        total = sum((line["Amount"] for line in bill["Line"]), Decimal("0.00"))
        if total - paid < 0:
            raise faults.business(
                "The transaction total cannot be less than the amount already paid."
            )
        bill["TotalAmt"] = total
        bill["Balance"] = total - paid
        if self.multicurrency:
            rate = bill.get("ExchangeRate") or Decimal("1")
            bill["HomeBalance"] = (bill["Balance"] * rate).quantize(CENT, rounding=ROUND_HALF_UP)

    def _expense_lines(self, bill: dict[str, Any], lines_in: list[Any]) -> list[dict[str, Any]]:
        """A bill's lines: an expense account or an item each, numbered as QBO numbers them."""
        used_ids = {str(ln.get("Id")) for ln in lines_in if isinstance(ln, dict) and ln.get("Id")}
        lines: list[dict[str, Any]] = []
        for raw in lines_in:
            if not isinstance(raw, dict):
                raise faults.required("Line")
            kind = raw.get("DetailType")
            if not kind:
                raise faults.required("DetailType")
            if kind not in schema.LINE_DETAILS["Bill"]:
                raise QboFault(
                    "2170",
                    "Invalid Enumeration",
                    f"Invalid Enumeration : {kind}",
                    element="DetailType",
                )
            if "Amount" not in raw:
                raise faults.required("Amount")
            line = self._numbered(raw, bill, used_ids)
            line["Amount"] = money(line["Amount"])
            detail = line.setdefault(kind, {})
            if kind == "AccountBasedExpenseLineDetail":
                account = self._ref("Account", detail.get("AccountRef"), "AccountRef")
                detail["AccountRef"] = {"value": account["Id"], "name": account["Name"]}
            else:
                item = self._ref("Item", detail.get("ItemRef"), "ItemRef")
                detail["ItemRef"] = {"value": item["Id"], "name": item["Name"]}
            if isinstance(detail.get("CustomerRef"), dict):
                self._ref("Customer", detail["CustomerRef"], "CustomerRef")
            lines.append(line)
        for num, line in enumerate(lines, 1):
            line["LineNum"] = num
        return [
            {k: ln[k] for k in ("Id", "LineNum") if k in ln}
            | {k: v for k, v in ln.items() if k not in ("Id", "LineNum")}
            for ln in lines
        ]

    def _paid_on_bill(self, bill_id: str) -> Decimal:
        return sum(
            (a.get(bill_id, Decimal("0")) for a in self.bill_applied.values()), Decimal("0.00")
        )

    # ---------------------------------------------------------------- bill payment

    def _create_bill_payment(self, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        vendor = self._ref("Vendor", body.get("VendorRef"), "VendorRef")
        if body.get("TotalAmt") is None:
            raise faults.required("TotalAmt")
        pay_type = self._pay_type(body)
        total = money(body["TotalAmt"], "TotalAmt")
        lines, applied = self._bill_payment_lines(vendor, body.get("Line"), total)
        now = self.clock.now()
        rid = self._next_id("BillPayment")
        payment: dict[str, Any] = {
            "domain": "QBO",
            "sparse": False,
            "Id": rid,
            "SyncToken": "0",
            "MetaData": self.meta(now, now),
            "TxnDate": self.today().isoformat(),
            "CurrencyRef": vendor["CurrencyRef"],
        }
        payment.update({k: v for k, v in body.items() if k not in NOT_STORED | PAYMENT_DERIVED})
        payment.update(
            {
                "VendorRef": {"value": vendor["Id"], "name": vendor["DisplayName"]},
                "PayType": pay_type,
                "TotalAmt": total,
                "Line": lines,
            }
        )
        self._complete_pay_type(payment)
        self._store("BillPayment", rid, payment, now)
        self._apply_bill_payment(payment, applied)
        return payment

    def _update_bill_payment(
        self, current: dict[str, Any], body: dict[str, Any], sparse: bool, params: dict[str, str]
    ) -> dict[str, Any]:
        vendor = self.get("Vendor", current["VendorRef"]["value"])
        previous = self._unapply_bill_payment(current)
        try:
            lines_in = body["Line"] if "Line" in body else ([] if not sparse else current["Line"])
            total = money(body.get("TotalAmt", current["TotalAmt"]), "TotalAmt")
            lines, applied = self._bill_payment_lines(vendor, lines_in, total)
            keep = ("Id", "SyncToken", "MetaData", "domain", "sparse", "TxnDate")
            proposed: dict[str, Any] = (
                dict(current) if sparse else {k: current[k] for k in keep if k in current}
            )
            proposed.update(
                {k: v for k, v in body.items() if k not in NOT_STORED | PAYMENT_DERIVED}
            )
            proposed.update(
                {
                    "VendorRef": current["VendorRef"],
                    "CurrencyRef": current["CurrencyRef"],
                    "PayType": self._pay_type(proposed),
                    "TotalAmt": total,
                    "Line": lines,
                }
            )
            self._complete_pay_type(proposed)
        except QboFault:
            self._apply_bill_payment(current, previous, touch=False)
            raise
        current.clear()
        current.update(proposed)
        self._apply_bill_payment(current, applied)
        return current

    @staticmethod
    def _pay_type(body: dict[str, Any]) -> str:
        pay_type = body.get("PayType")
        if not pay_type:
            raise faults.required("PayType")
        return str(pay_type)

    def _complete_pay_type(self, payment: dict[str, Any]) -> None:
        """The account a bill payment is paid from: a bank account for a check, a credit card
        account for a card; the other kind's section is dropped."""
        section, ref_name = (
            ("CheckPayment", "BankAccountRef")
            if payment["PayType"] == "Check"
            else ("CreditCardPayment", "CCAccountRef")
        )
        other = "CreditCardPayment" if section == "CheckPayment" else "CheckPayment"
        payment.pop(other, None)
        detail = payment.setdefault(section, {})
        account = self._ref("Account", detail.get(ref_name), ref_name)
        detail[ref_name] = {"value": account["Id"], "name": account["Name"]}
        if section == "CheckPayment":
            detail.setdefault("PrintStatus", "NeedToPrint")

    def _bill_payment_lines(
        self, vendor: dict[str, Any], lines_in: Any, total: Decimal
    ) -> tuple[list[dict[str, Any]], dict[str, Decimal]]:
        lines: list[dict[str, Any]] = []
        applied: dict[str, Decimal] = {}
        for raw in lines_in or []:
            amount = money(raw.get("Amount", 0))
            line: dict[str, Any] = {"Amount": amount, "LinkedTxn": []}
            for link in raw.get("LinkedTxn") or []:
                if link.get("TxnType") != "Bill":
                    raise QboFault(
                        "620",
                        "TxnID cannot be linked",
                        f"Only bills can be linked here, not {link.get('TxnType')}",
                    )
                bill = self.get("Bill", str(link.get("TxnId")))
                if bill["VendorRef"]["value"] != vendor["Id"]:
                    raise QboFault(
                        "620",
                        "TxnID cannot be linked",
                        "The transaction belongs to a different vendor.",
                    )
                open_balance = bill["Balance"] - applied.get(bill["Id"], Decimal("0"))
                if amount > open_balance:
                    # UNVERIFIED: the real overpayment text.
                    raise faults.business(
                        f"The payment amount {amount} is more than the open balance "
                        f"{open_balance} of bill {bill['Id']}."
                    )
                applied[bill["Id"]] = applied.get(bill["Id"], Decimal("0")) + amount
                line["LinkedTxn"].append({"TxnId": bill["Id"], "TxnType": "Bill"})
            lines.append(line)
        if sum(applied.values(), Decimal("0")) > total:
            raise faults.business("The amount applied is more than the total amount paid.")
        return lines, applied

    def _bill_link_type(self, payment: dict[str, Any]) -> str:
        # UNVERIFIED: how a bill names a card payment in its LinkedTxn.
        return "BillPaymentCheck" if payment.get("PayType") == "Check" else "BillPaymentCreditCard"

    def _apply_bill_payment(
        self, payment: dict[str, Any], applied: dict[str, Decimal], touch: bool = True
    ) -> None:
        self.bill_applied[payment["Id"]] = applied
        link = {"TxnId": payment["Id"], "TxnType": self._bill_link_type(payment)}
        for bill_id, amount in applied.items():
            bill = self.records["Bill"][bill_id]
            bill["Balance"] -= amount
            self._rate_home_balance(bill)
            if link not in bill["LinkedTxn"]:
                bill["LinkedTxn"].append(link)
            if touch:
                self._touch("Bill", bill)
                self._changed("Bill", bill_id, "Update")
        self._refresh_customer_balances()

    def _unapply_bill_payment(self, payment: dict[str, Any]) -> dict[str, Decimal]:
        applied = self.bill_applied.pop(payment["Id"], {})
        for bill_id, amount in applied.items():
            bill = self.records["Bill"].get(bill_id)
            if bill is None:
                continue
            bill["Balance"] += amount
            self._rate_home_balance(bill)
            bill["LinkedTxn"] = [lt for lt in bill["LinkedTxn"] if lt.get("TxnId") != payment["Id"]]
            self._touch("Bill", bill)
            self._changed("Bill", bill_id, "Update")
        self._refresh_customer_balances()
        return applied

    @staticmethod
    def _rate_home_balance(txn: dict[str, Any]) -> None:
        if "HomeBalance" in txn:
            txn["HomeBalance"] = (txn["Balance"] * txn.get("ExchangeRate", 1)).quantize(CENT)

    # ---------------------------------------------------------------- deposit

    def _create_deposit(self, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        if not body.get("Line"):
            raise faults.required("Line")
        now = self.clock.now()
        rid = self._next_id("Deposit")
        deposit: dict[str, Any] = {
            "domain": "QBO",
            "sparse": False,
            "Id": rid,
            "SyncToken": "0",
            "MetaData": self.meta(now, now),
            "TxnDate": self.today().isoformat(),
            "CurrencyRef": self.currency_ref(self.home_currency),
            "_next_line": 1,
        }
        deposit.update({k: v for k, v in body.items() if k not in NOT_STORED})
        linked = self._complete_deposit(deposit, body["Line"])
        self._store("Deposit", rid, deposit, now)
        self._link_deposited(rid, linked)
        return deposit

    def _update_deposit(
        self, current: dict[str, Any], body: dict[str, Any], sparse: bool, params: dict[str, str]
    ) -> dict[str, Any]:
        keep = ("Id", "SyncToken", "MetaData", "domain", "sparse", "CurrencyRef", "_next_line")
        proposed = (
            copy.deepcopy(current)
            if sparse
            else {k: copy.deepcopy(current[k]) for k in (*keep, "TxnDate") if k in current}
        )
        proposed.update({k: v for k, v in body.items() if k not in NOT_STORED})
        released = self._unlink_deposited(current["Id"])
        try:
            linked = self._complete_deposit(
                proposed, body["Line"] if "Line" in body else current["Line"]
            )
        except QboFault:
            self._link_deposited(current["Id"], released)
            raise
        current.clear()
        current.update(proposed)
        self._link_deposited(current["Id"], linked)
        return current

    def _complete_deposit(self, deposit: dict[str, Any], lines_in: list[Any]) -> list[str]:
        """Account, lines and TotalAmt of a deposit; the payments its lines take out of
        Undeposited Funds."""
        account = self._ref("Account", deposit.get("DepositToAccountRef"), "DepositToAccountRef")
        deposit["DepositToAccountRef"] = {"value": account["Id"], "name": account["Name"]}
        if deposit.get("TxnDate"):
            deposit["TxnDate"] = parse_date(deposit["TxnDate"], "TxnDate").isoformat()
        used_ids = {str(ln.get("Id")) for ln in lines_in if isinstance(ln, dict) and ln.get("Id")}
        lines: list[dict[str, Any]] = []
        linked: list[str] = []
        for raw in lines_in:
            if not isinstance(raw, dict):
                raise faults.required("Line")
            line = self._numbered(raw, deposit, used_ids)
            if line.get("LinkedTxn"):
                linked += self._deposit_payment_line(deposit, line, linked)
            else:
                self._deposit_account_line(line)
            lines.append(line)
        for num, line in enumerate(lines, 1):
            line["LineNum"] = num
        deposit["Line"] = [
            {k: ln[k] for k in ("Id", "LineNum") if k in ln}
            | {k: v for k, v in ln.items() if k not in ("Id", "LineNum")}
            for ln in lines
        ]
        total = sum((line["Amount"] for line in lines), Decimal("0.00"))
        cash_back = deposit.get("CashBack")
        if isinstance(cash_back, dict) and cash_back.get("Amount") is not None:
            account = self._ref("Account", cash_back.get("AccountRef"), "AccountRef")
            cash_back["AccountRef"] = {"value": account["Id"], "name": account["Name"]}
            cash_back["Amount"] = money(cash_back["Amount"])
            total -= cash_back["Amount"]
        if total < 0:
            raise faults.business("The deposit total cannot be negative.")
        deposit["TotalAmt"] = total
        if self.multicurrency:
            rate = deposit.get("ExchangeRate") or Decimal("1")
            deposit["HomeTotalAmt"] = (total * rate).quantize(CENT, rounding=ROUND_HALF_UP)
        return linked

    def _deposit_payment_line(
        self, deposit: dict[str, Any], line: dict[str, Any], taken: list[str]
    ) -> list[str]:
        """A line that moves payments from Undeposited Funds into the deposit's account."""
        found: list[str] = []
        amount = Decimal("0.00")
        for link in line["LinkedTxn"]:
            if link.get("TxnType") != "Payment":
                raise QboFault(
                    "620",
                    "TxnID cannot be linked",
                    f"Only payments can be linked here, not {link.get('TxnType')}",
                )
            payment = self.get("Payment", str(link.get("TxnId")))
            held = (payment.get("DepositToAccountRef") or {}).get("value")
            if held not in (None, seed.UNDEPOSITED_FUNDS_ID):
                raise faults.business(
                    f"Payment {payment['Id']} was deposited to another account when it was "
                    "received; only payments held in Undeposited Funds can be deposited."
                )
            if payment["Id"] in self.deposited or payment["Id"] in taken + found:
                raise faults.business(f"Payment {payment['Id']} has already been deposited.")
            found.append(payment["Id"])
            amount += payment["TotalAmt"]
            link["TxnId"] = payment["Id"]
            link.setdefault("TxnLineId", "0")
        if "Amount" not in line:
            line["Amount"] = amount
        line["Amount"] = money(line["Amount"])
        if line["Amount"] != amount:
            # UNVERIFIED: whether QBO lets a deposit take part of a payment.
            raise faults.business(
                f"The line amount {line['Amount']} must equal the linked payments' total {amount}."
            )
        return found

    def _deposit_account_line(self, line: dict[str, Any]) -> None:
        """A line that brings money in from another account (no payment linked)."""
        if line.get("DetailType") != "DepositLineDetail":
            if not line.get("DetailType"):
                raise faults.required("DetailType")
            raise QboFault(
                "2170",
                "Invalid Enumeration",
                f"Invalid Enumeration : {line['DetailType']}",
                element="DetailType",
            )
        if "Amount" not in line:
            raise faults.required("Amount")
        line["Amount"] = money(line["Amount"])
        detail = line.setdefault("DepositLineDetail", {})
        account = self._ref("Account", detail.get("AccountRef"), "AccountRef")
        detail["AccountRef"] = {"value": account["Id"], "name": account["Name"]}
        if isinstance(detail.get("Entity"), dict) and detail["Entity"].get("value"):
            self._ref("Customer", detail["Entity"], "Entity")

    def _link_deposited(self, deposit_id: str, payment_ids: list[str]) -> None:
        for payment_id in payment_ids:
            self.deposited[payment_id] = deposit_id

    def _unlink_deposited(self, deposit_id: str) -> list[str]:
        released = [p for p, d in self.deposited.items() if d == deposit_id]
        for payment_id in released:
            del self.deposited[payment_id]
        return released

    def undeposited_payments(self) -> list[dict[str, Any]]:
        """Payments still held in Undeposited Funds: received there and in no deposit."""
        return [
            payment
            for payment in self.records["Payment"].values()
            if (payment.get("DepositToAccountRef") or {}).get("value")
            in (None, seed.UNDEPOSITED_FUNDS_ID)
            and payment["Id"] not in self.deposited
            and payment["TotalAmt"] > 0
        ]

    def _check_not_deposited(self, entity: str, payment_id: str) -> None:
        if entity == "Payment" and payment_id in self.deposited:
            raise QboFault(
                "6540",
                "Deposited Transaction cannot be changed",
                "Deposited Transaction cannot be changed : This transaction is part of deposit "
                f"{self.deposited[payment_id]}; remove it from the deposit first.",
                element="",
            )

    # ---------------------------------------------------------------- preferences

    def update_preferences(self, body: dict[str, Any]) -> dict[str, Any]:
        body = self.read_request("Preferences", body)
        if str(body.get("SyncToken")) != self.preferences["SyncToken"]:
            raise faults.stale()
        currency = body.get("CurrencyPrefs") or {}
        if currency.get("MultiCurrencyEnabled") is False and self.multicurrency:
            raise faults.business("Multicurrency cannot be turned off once it is on.")
        home = (currency.get("HomeCurrency") or {}).get("value")
        if home and home != self.home_currency:
            raise faults.business("The home currency cannot be changed.")
        self.set_preferences(body, bump=True)
        return self.preferences

    def set_preferences(self, body: dict[str, Any], bump: bool = True) -> None:
        for section, values in body.items():
            if section in NOT_STORED:
                continue
            if isinstance(values, dict):
                self.preferences.setdefault(section, {}).update(values)
            else:
                self.preferences[section] = values
        _drop_empty_strings(self.preferences)
        sales = self.preferences["SalesFormsPrefs"]
        self.custom_txn_numbers = bool(sales.get("CustomTxnNumbers"))
        currency = self.preferences["CurrencyPrefs"]
        self.multicurrency = self.multicurrency or bool(currency.get("MultiCurrencyEnabled"))
        currency["MultiCurrencyEnabled"] = self.multicurrency
        now = self.clock.now()
        if bump:
            self.preferences["SyncToken"] = str(int(self.preferences["SyncToken"]) + 1)
        self.preferences["MetaData"]["LastUpdatedTime"] = self.local(now)
        for listener in self.listeners:
            listener(self.realm_id, "Preferences", "1", "Update", None)

    # ---------------------------------------------------------------- company info

    def update_company_info(self, body: dict[str, Any]) -> dict[str, Any]:
        """Full or sparse update of CompanyInfo; what QBO owns (Country, ...) stays."""
        body = self.read_request("CompanyInfo", body)
        current = self.company_info
        if str(body.get("SyncToken")) != current["SyncToken"]:
            raise faults.stale()
        kept = schema.load().owned("CompanyInfo", self.country) | {"Id", "SyncToken", "sparse"}
        proposed = (
            dict(current)
            if body.get("sparse") is True
            else {k: v for k, v in current.items() if k in kept}
        )
        proposed.update({k: v for k, v in body.items() if k not in NOT_STORED})
        if not proposed.get("CompanyName"):
            raise faults.required("CompanyName")
        self._check_email(proposed.get("Email"))
        current.clear()
        current.update(proposed)
        _drop_empty_strings(current)
        self.name = current["CompanyName"]
        current["SyncToken"] = str(int(current["SyncToken"]) + 1)
        current["MetaData"]["LastUpdatedTime"] = self.local(self.clock.now())
        for listener in self.listeners:
            listener(self.realm_id, "CompanyInfo", "1", "Update", None)
        return current

    # ---------------------------------------------------------------- bulk seeding

    def bulk_seed(
        self,
        customers: int = 0,
        invoices: int = 0,
        *,
        display_name: str = "Customer {n:05d}",
        email: str | None = "customer{n:05d}@example.com",
        company_name: str | None = None,
        amount: Any = "100.00",
        days: int = 365,
    ) -> dict[str, Any]:
        """Many customers and invoices at once, for benchmarks (no webhooks fire).

        The first of each is created through the ordinary rules; the rest are copies of it
        with their own Id, names, e-mail, DocNumber, customer and dates, so the records read
        exactly as created ones do. Names are `display_name.format(n=...)` (n from 1);
        invoices, in the home currency, go round the customers just made (or the active
        home-currency ones already there), dated over the last `days` days, each with one line
        of `amount` on the first active item.
        """
        started = self.clock.now()
        made = self._bulk_customers(customers, display_name, email, company_name)
        owners = made or [
            c
            for c in self.records["Customer"].values()
            if c.get("Active", True) and c["CurrencyRef"]["value"] == self.home_currency
        ]
        if invoices and not owners:
            raise faults.required("CustomerRef")
        first_invoice = self._bulk_invoices(invoices, owners, amount, days)
        self._refresh_customer_balances()
        return {
            "customers": len(made),
            "first_customer_id": made[0]["Id"] if made else None,
            "invoices": invoices,
            "first_invoice_id": first_invoice,
            "seconds": (self.clock.now() - started).total_seconds(),
        }

    def _bulk_customers(
        self, count: int, display_name: str, email: str | None, company_name: str | None
    ) -> list[dict[str, Any]]:
        if count <= 0:
            return []

        def names(n: int) -> tuple[str, str | None, str | None]:
            return (
                display_name.format(n=n),
                email.format(n=n) if email else None,
                company_name.format(n=n) if company_name else None,
            )

        taken = {
            str(c.get("DisplayName", "")).casefold() for c in self.records["Customer"].values()
        }
        wanted = [names(n)[0].casefold() for n in range(1, count + 1)]
        if len(set(wanted)) < count or taken.intersection(wanted):
            raise self._duplicate_name()
        display, address, company = names(1)
        body: dict[str, Any] = {"DisplayName": display}
        if address:
            body["PrimaryEmailAddr"] = {"Address": address}
        if company:
            body["CompanyName"] = company
        prototype = self.create("Customer", body, {}, notify=False)
        made = [prototype]
        now = self.clock.now()
        for n in range(2, count + 1):
            display, address, company = names(n)
            record = _clone(prototype)
            rid = self._next_id("Customer")
            record.update(
                Id=rid,
                DisplayName=display,
                FullyQualifiedName=display,
                PrintOnCheckName=display,
                MetaData=self.meta(now, now),
            )
            if address:
                self._check_email({"Address": address})
                record["PrimaryEmailAddr"] = {"Address": address}
            if company:
                record["CompanyName"] = company
            self._store("Customer", rid, record, now)
            made.append(record)
        return made

    def _bulk_invoices(
        self, count: int, owners: list[dict[str, Any]], amount: Any, days: int
    ) -> str | None:
        if count <= 0:
            return None
        item = next((i for i in self.records["Item"].values() if i.get("Active", True)), None)
        if item is None:
            item = self.create(
                "Item",
                {"Name": "Bulk service", "IncomeAccountRef": {"value": seed.INCOME_ACCOUNT_ID}},
                {},
                notify=False,
            )
        today = self.today()
        first_day = today - timedelta(days=max(0, days - 1))

        def dated(i: int) -> date:
            return first_day + timedelta(days=(i * days) // count) if days > 0 else today

        prototype = self.create(
            "Invoice",
            {
                "CustomerRef": {"value": owners[0]["Id"]},
                "TxnDate": dated(0).isoformat(),
                "Line": [
                    {
                        "DetailType": "SalesItemLineDetail",
                        "Amount": money(amount),
                        "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}},
                    }
                ],
            },
            {},
            notify=False,
        )
        due_after = parse_date(prototype["DueDate"], "DueDate") - dated(0)
        now = self.clock.now()
        for i in range(1, count):
            owner = owners[i % len(owners)]
            txn_date = dated(i)
            record = _clone(prototype)
            rid = self._next_id("Invoice")
            doc = self._next_doc_number()
            record.update(
                Id=rid,
                DocNumber=doc,
                TxnDate=txn_date.isoformat(),
                DueDate=(txn_date + due_after).isoformat(),
                CustomerRef={"value": owner["Id"], "name": owner["DisplayName"]},
                MetaData=self.meta(now, now),
            )
            # What a create copies from its customer (see _create_invoice).
            for copied in ("BillEmail", "BillAddr", "ShipAddr"):
                record.pop(copied, None)
            if owner.get("PrimaryEmailAddr"):
                record["BillEmail"] = dict(owner["PrimaryEmailAddr"])
            if owner.get("BillAddr"):
                for addr in ("BillAddr", "ShipAddr"):
                    record[addr] = _clone(owner.get(addr) or owner["BillAddr"])
            self._store("Invoice", rid, record, now)
            self._index_doc(rid, None, doc)
        return str(prototype["Id"])

    # ---------------------------------------------------------------- query support

    def rows(self, entity: str) -> list[dict[str, Any]]:
        if entity == "CompanyInfo":
            return [self.company_info]
        if entity == "Preferences":
            return [self.preferences]
        if entity in PEOPLE:
            self.settle_balances()
        return list(self.records.get(entity, {}).values())


def _clone(value: Any) -> Any:
    """A deep copy of a JSON-shaped record (dicts, lists, scalars), faster than deepcopy."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value
