from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

EmailStatusValue = Literal["NotSet", "NeedToSend", "EmailSent"]
PrintStatusValue = Literal["NotSet", "NeedToPrint", "PrintComplete"]


class QboModel(BaseModel):
    """Base for every QBO shape: unknown fields are kept, not rejected (QBO adds fields often)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_qbo(self) -> dict[str, Any]:
        """The body QBO expects: set fields only, Decimals kept exact for JSON numbers."""
        return self.model_dump(mode="python", exclude_none=True, by_alias=True)


class Ref(QboModel):
    """A `...Ref`: ids are opaque strings; `name` is filled in by QBO."""

    value: StrictStr
    name: str | None = None
    type: str | None = None


class Meta(QboModel):
    CreateTime: datetime | None = None
    LastUpdatedTime: datetime | None = None


class EmailAddress(QboModel):
    Address: str | None = None


class PhysicalAddress(QboModel):
    Id: str | None = None
    Line1: str | None = None
    Line2: str | None = None
    Line3: str | None = None
    City: str | None = None
    Country: str | None = None
    CountrySubDivisionCode: str | None = None
    PostalCode: str | None = None


class MemoRef(QboModel):
    value: str


class TxnLink(QboModel):
    TxnId: StrictStr
    TxnType: str
    TxnLineId: str | None = None


class SalesItemDetail(QboModel):
    ItemRef: Ref | None = None
    Qty: Decimal | None = None
    UnitPrice: Decimal | None = None
    TaxCodeRef: Ref | None = None
    ServiceDate: date | None = None


class InvoiceLine(QboModel):
    """An invoice line; QBO appends a SubTotalLineDetail line itself."""

    Id: str | None = None
    LineNum: int | None = None
    DetailType: str
    Amount: Decimal | None = None
    Description: str | None = None
    SalesItemLineDetail: SalesItemDetail | None = None
    SubTotalLineDetail: dict[str, Any] | None = None
    DiscountLineDetail: dict[str, Any] | None = None


class TaxDetail(QboModel):
    TxnTaxCodeRef: Ref | None = None
    TotalTax: Decimal | None = None
    TaxLine: list[dict[str, Any]] | None = None


class Delivery(QboModel):
    DeliveryType: str | None = None
    DeliveryTime: datetime | None = None
    DeliveryErrorType: str | None = None


class Entity(QboModel):
    """Fields every stored QBO object has. Id and SyncToken are strings (never numbers)."""

    Id: StrictStr | None = None
    SyncToken: StrictStr | None = None
    MetaData: Meta | None = None
    domain: str | None = None
    sparse: bool | None = None


class Invoice(Entity):
    CustomerRef: Ref
    Line: list[InvoiceLine] = Field(min_length=1)
    TxnDate: date | None = None
    DueDate: date | None = None
    DocNumber: str | None = Field(default=None, max_length=21)
    SalesTermRef: Ref | None = None
    CustomerMemo: MemoRef | None = None
    PrivateNote: str | None = None
    BillEmail: EmailAddress | None = None
    BillAddr: PhysicalAddress | None = None
    ShipAddr: PhysicalAddress | None = None
    CurrencyRef: Ref | None = None
    ExchangeRate: Decimal | None = None
    TotalAmt: Decimal | None = None
    Balance: Decimal | None = None
    HomeTotalAmt: Decimal | None = None
    HomeBalance: Decimal | None = None
    Deposit: Decimal | None = None
    EmailStatus: EmailStatusValue | None = None
    PrintStatus: PrintStatusValue | None = None
    DeliveryInfo: Delivery | None = None
    LinkedTxn: list[TxnLink] | None = None
    TxnTaxDetail: TaxDetail | None = None
    GlobalTaxCalculation: Literal["TaxExcluded", "TaxInclusive", "NotApplicable"] | None = None

    def payment_ids(self) -> list[str]:
        """Ids of the payments QBO has linked to this invoice."""
        return [t.TxnId for t in self.LinkedTxn or [] if t.TxnType == "Payment"]


class Customer(Entity):
    DisplayName: str
    GivenName: str | None = None
    FamilyName: str | None = None
    CompanyName: str | None = None
    FullyQualifiedName: str | None = None
    PrimaryEmailAddr: EmailAddress | None = None
    BillAddr: PhysicalAddress | None = None
    ShipAddr: PhysicalAddress | None = None
    Active: bool | None = None
    Balance: Decimal | None = None
    CurrencyRef: Ref | None = None
    SalesTermRef: Ref | None = None
    Taxable: bool | None = None


class Item(Entity):
    Name: str
    Type: str | None = None
    Active: bool | None = None
    UnitPrice: Decimal | None = None
    Sku: str | None = None
    Description: str | None = None
    Taxable: bool | None = None
    IncomeAccountRef: Ref | None = None
    FullyQualifiedName: str | None = None


class PaymentLine(QboModel):
    Amount: Decimal
    LinkedTxn: list[TxnLink] = Field(default_factory=list)


class Payment(Entity):
    CustomerRef: Ref
    TotalAmt: Decimal
    UnappliedAmt: Decimal | None = None
    Line: list[PaymentLine] = Field(default_factory=list)
    TxnDate: date | None = None
    PaymentRefNum: str | None = None
    PrivateNote: str | None = None
    CurrencyRef: Ref | None = None
    # Where the money went: Undeposited Funds (QBO's default when absent) or a bank account.
    DepositToAccountRef: Ref | None = None

    def applied_to(self) -> dict[str, Decimal]:
        """Invoice id -> amount this payment applies to it."""
        out: dict[str, Decimal] = {}
        for line in self.Line:
            for link in line.LinkedTxn:
                if link.TxnType == "Invoice":
                    out[link.TxnId] = out.get(link.TxnId, Decimal("0")) + line.Amount
        return out


class TaxCode(Entity):
    Id: StrictStr | None = None
    Name: str
    Description: str | None = None
    Active: bool | None = None
    Taxable: bool | None = None
    TaxGroup: bool | None = None


class Term(Entity):
    Name: str
    Active: bool | None = None
    Type: str | None = None
    DueDays: int | None = None
    DayOfMonthDue: int | None = None
    DueNextMonthDays: int | None = None


class Account(Entity):
    Name: str
    AccountType: str | None = None
    Active: bool | None = None


class Vendor(Entity):
    DisplayName: str
    CompanyName: str | None = None
    GivenName: str | None = None
    FamilyName: str | None = None
    PrimaryEmailAddr: EmailAddress | None = None
    Active: bool | None = None
    Balance: Decimal | None = None
    TermRef: Ref | None = None
    CurrencyRef: Ref | None = None


class BillLine(QboModel):
    """A bill line: `AccountBasedExpenseLineDetail` or `ItemBasedExpenseLineDetail`."""

    Id: str | None = None
    LineNum: int | None = None
    DetailType: str
    Amount: Decimal | None = None
    Description: str | None = None
    AccountBasedExpenseLineDetail: dict[str, Any] | None = None
    ItemBasedExpenseLineDetail: dict[str, Any] | None = None


class Bill(Entity):
    """A vendor's bill (accounts payable); `Balance` is what is still to be paid."""

    VendorRef: Ref
    Line: list[BillLine] = Field(min_length=1)
    TxnDate: date | None = None
    DueDate: date | None = None
    DocNumber: str | None = None
    SalesTermRef: Ref | None = None
    APAccountRef: Ref | None = None
    CurrencyRef: Ref | None = None
    PrivateNote: str | None = None
    TotalAmt: Decimal | None = None
    Balance: Decimal | None = None
    LinkedTxn: list[TxnLink] | None = None


class BillPaymentLine(QboModel):
    Amount: Decimal
    LinkedTxn: list[TxnLink] = Field(default_factory=list)


class BillPayment(Entity):
    """A payment of one vendor's bills, by check or credit card."""

    VendorRef: Ref
    TotalAmt: Decimal
    PayType: Literal["Check", "CreditCard"]
    Line: list[BillPaymentLine] = Field(default_factory=list)
    TxnDate: date | None = None
    DocNumber: str | None = None
    CheckPayment: dict[str, Any] | None = None
    CreditCardPayment: dict[str, Any] | None = None
    CurrencyRef: Ref | None = None
    PrivateNote: str | None = None

    def paid_bills(self) -> dict[str, Decimal]:
        """Bill id -> amount this payment pays on it."""
        out: dict[str, Decimal] = {}
        for line in self.Line:
            for link in line.LinkedTxn:
                if link.TxnType == "Bill":
                    out[link.TxnId] = out.get(link.TxnId, Decimal("0")) + line.Amount
        return out


class DepositLine(QboModel):
    """A deposit line: payments taken out of Undeposited Funds (`LinkedTxn`), or another
    amount (`DepositLineDetail`)."""

    Id: str | None = None
    LineNum: int | None = None
    Amount: Decimal | None = None
    DetailType: str | None = None
    LinkedTxn: list[TxnLink] | None = None
    DepositLineDetail: dict[str, Any] | None = None


class Deposit(Entity):
    """A bank deposit; its lines that link payments take them out of Undeposited Funds."""

    DepositToAccountRef: Ref
    Line: list[DepositLine] = Field(min_length=1)
    TxnDate: date | None = None
    TotalAmt: Decimal | None = None
    CurrencyRef: Ref | None = None
    PrivateNote: str | None = None

    def payment_ids(self) -> list[str]:
        """Ids of the payments this deposit takes out of Undeposited Funds."""
        return [
            link.TxnId
            for line in self.Line
            for link in line.LinkedTxn or []
            if link.TxnType == "Payment"
        ]


class NameValuePair(QboModel):
    Name: str
    Value: str | None = None


class CompanyInfo(Entity):
    CompanyName: str
    LegalName: str | None = None
    Country: str | None = None
    CompanyAddr: PhysicalAddress | None = None
    NameValue: list[NameValuePair] = Field(default_factory=list)

    def name_value(self, name: str) -> str | None:
        """One of the `NameValue` pairs QuickBooks attaches (IndustryType, OfferingSku...)."""
        return next((pair.Value for pair in self.NameValue if pair.Name == name), None)

    @property
    def offering_sku(self) -> str | None:
        """The company's edition, e.g. 'QuickBooks Online Advanced'."""
        return self.name_value("OfferingSku")

    @field_validator("Country")
    @classmethod
    def _country_two_letters(cls, value: str | None) -> str | None:
        # QBO may send USA-style codes since late 2025; the tax model keys on the 2-letter form.
        return {"USA": "US", "GBR": "GB", "CAN": "CA", "AUS": "AU"}.get(value or "", value)

    @property
    def is_us(self) -> bool:
        return self.Country == "US"


class SalesFormsPreferences(QboModel):
    CustomTxnNumbers: bool | None = None
    DefaultTerms: Ref | None = None
    AllowDeposit: bool | None = None


class CurrencyPreferences(QboModel):
    MultiCurrencyEnabled: bool | None = None
    HomeCurrency: Ref | None = None


class TaxPreferences(QboModel):
    UsingSalesTax: bool | None = None
    PartnerTaxEnabled: bool | None = None


class Preferences(Entity):
    SalesFormsPrefs: SalesFormsPreferences | None = None
    CurrencyPrefs: CurrencyPreferences | None = None
    TaxPrefs: TaxPreferences | None = None

    @property
    def custom_txn_numbers(self) -> bool:
        return bool(self.SalesFormsPrefs and self.SalesFormsPrefs.CustomTxnNumbers)


class Deleted(QboModel):
    """A delete response or CDC tombstone: only `Id`, `status: Deleted` and maybe MetaData."""

    Id: StrictStr
    status: Literal["Deleted"]
    domain: str | None = None
    MetaData: Meta | None = None


ENTITY_MODELS: dict[str, type[Entity]] = {
    "Invoice": Invoice,
    "Customer": Customer,
    "Item": Item,
    "Payment": Payment,
    "Bill": Bill,
    "BillPayment": BillPayment,
    "Deposit": Deposit,
    "TaxCode": TaxCode,
    "Term": Term,
    "Account": Account,
    "CompanyInfo": CompanyInfo,
    "Preferences": Preferences,
}


def parse_entity(name: str, data: dict[str, Any]) -> Entity | Deleted | dict[str, Any]:
    """A QBO object by its entity name: a tombstone, a typed model, or the raw dict for
    entities this library does not model (Estimate, Purchase, ...). Vendor rows stay raw
    dicts too, as they always were here (`Vendor.model_validate` reads one)."""
    if data.get("status") == "Deleted":
        return Deleted.model_validate(data)
    model = ENTITY_MODELS.get(name)
    return model.model_validate(data) if model else data


class QueryPage(QboModel):
    """One page of a query: `startPosition`, `maxResults` (rows returned) and the rows."""

    entity: str | None = None
    rows: list[Any] = Field(default_factory=list)
    startPosition: int | None = None
    maxResults: int | None = None
    totalCount: int | None = None

    @classmethod
    def from_response(cls, body: dict[str, Any]) -> QueryPage:
        meta = {"startPosition", "maxResults", "totalCount"}
        entity = next((k for k in body if k not in meta), None)
        rows = [parse_entity(entity, r) for r in body.get(entity, [])] if entity else []
        return cls(
            entity=entity,
            rows=rows,
            startPosition=body.get("startPosition"),
            maxResults=body.get("maxResults"),
            totalCount=body.get("totalCount"),
        )


class CdcResult(QboModel):
    """Changes per entity since a watermark; `time` is the next watermark."""

    time: datetime
    changes: dict[str, list[Any]]

    @classmethod
    def from_response(cls, body: dict[str, Any]) -> CdcResult:
        changes: dict[str, list[Any]] = {}
        for block in body.get("CDCResponse", []):
            for qr in block.get("QueryResponse", []):
                page = QueryPage.from_response(qr)
                if page.entity:
                    changes.setdefault(page.entity, []).extend(page.rows)
        return cls(time=body["time"], changes=changes)
