"""What the workflows read of QuickBooks, with bounded queries: the items whose anchor date is
in a window (invoices and bills by DueDate or TxnDate, open only; payments by TxnDate), and
the items of open reminders again by Id. Never a whole list.

A payment is in Undeposited Funds when it went there (its `DepositToAccountRef` is an account
of sub-type UndepositedFunds, or absent: QuickBooks' default) and no bank deposit takes it out
(a Deposit line linking it). Whether QuickBooks marks a deposited Payment itself is not known,
so the deposits are read: those changed since the oldest of the payments was made, since a
deposit can link a payment only after the payment exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from dealbooks_qbo import (
    Account,
    Bill,
    Deposit,
    Invoice,
    Payment,
    QboClient,
    QboCompany,
    Select,
    select,
)

from reminders.domain import Item, ItemKind

# Ids per `Id IN (...)` query: short enough for a URL.
IDS_PER_QUERY = 100
UNDEPOSITED_SUB_TYPE = "UndepositedFunds"


def invoice_item(invoice: Invoice) -> Item:
    voided = invoice.TotalAmt == 0 and "voided" in (invoice.PrivateNote or "").lower()
    delivered = invoice.DeliveryInfo is not None and invoice.DeliveryInfo.DeliveryType == "Email"
    return Item(
        kind=ItemKind.INVOICE,
        id=str(invoice.Id),
        amount=invoice.Balance or Decimal("0"),
        currency=invoice.CurrencyRef.value if invoice.CurrencyRef else "",
        doc_number=invoice.DocNumber,
        party=invoice.CustomerRef.name,
        due_date=invoice.DueDate,
        txn_date=invoice.TxnDate,
        sent=invoice.EmailStatus == "EmailSent" or delivered,
        gone=voided,
    )


def bill_item(bill: Bill) -> Item:
    return Item(
        kind=ItemKind.BILL,
        id=str(bill.Id),
        amount=bill.Balance if bill.Balance is not None else (bill.TotalAmt or Decimal("0")),
        currency=bill.CurrencyRef.value if bill.CurrencyRef else "",
        doc_number=bill.DocNumber,
        party=bill.VendorRef.name,
        due_date=bill.DueDate,
        txn_date=bill.TxnDate,
    )


def payment_item(payment: Payment, undeposited: set[str], deposited: set[str]) -> Item:
    account = payment.DepositToAccountRef.value if payment.DepositToAccountRef else None
    voided = payment.TotalAmt == 0 and "voided" in (payment.PrivateNote or "").lower()
    return Item(
        kind=ItemKind.PAYMENT,
        id=str(payment.Id),
        amount=payment.TotalAmt,
        currency=payment.CurrencyRef.value if payment.CurrencyRef else "",
        doc_number=payment.PaymentRefNum,
        party=payment.CustomerRef.name,
        txn_date=payment.TxnDate,
        held=account is None or account in undeposited,
        deposited=str(payment.Id) in deposited,
        gone=voided,
        invoices=tuple(sorted(payment.applied_to())),
    )


def _chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), IDS_PER_QUERY):
        yield list(ids[start : start + IDS_PER_QUERY])


def _in(ids: Iterable[str]) -> str:
    return ", ".join(f"'{int(i)}'" for i in ids)  # QuickBooks ids are digits


def _within(entity: str, field: str, first: date, last: date) -> Select:
    """The `entity` rows whose date `field` is within [first, last]."""
    return select(entity).where(field, ">=", first.isoformat()).where(field, "<=", last.isoformat())


def _open_within(entity: str, field: str, first: date, last: date) -> Select:
    """`_within`, of those with an open balance."""
    return _within(entity, field, first, last).where("Balance", ">", Decimal("0"))


class CompanyItems:
    """The reminder items of one company, read from QuickBooks."""

    def __init__(self, qbo: QboClient, realm_id: str) -> None:
        self.company: QboCompany = qbo.company(realm_id)
        self._undeposited: set[str] | None = None

    async def open_invoices_due(self, first: date, last: date) -> list[Item]:
        """Invoices with an open balance due within [first, last]."""
        invoices = await self.company.query_all(_open_within("Invoice", "DueDate", first, last))
        return [invoice_item(i) for i in invoices]

    async def open_invoices_made(self, first: date, last: date) -> list[Item]:
        """Invoices with an open balance dated within [first, last] (EmailStatus is not
        filterable in QuickBooks' queries; the caller looks at it)."""
        invoices = await self.company.query_all(_open_within("Invoice", "TxnDate", first, last))
        return [invoice_item(i) for i in invoices]

    async def open_bills_due(self, first: date, last: date) -> list[Item]:
        """Bills with something left to pay, due within [first, last]."""
        bills = await self.company.query_all(_open_within("Bill", "DueDate", first, last))
        return [bill_item(b) for b in bills]

    async def payments_made(self, first: date, last: date) -> list[Item]:
        """Payments dated within [first, last], with whether each sits in Undeposited Funds."""
        payments: list[Payment] = await self.company.query_all(
            _within("Payment", "TxnDate", first, last)
        )
        return await self._payment_items(payments)

    async def current(self, kind: ItemKind, ids: Sequence[str]) -> dict[str, Item]:
        """The items of open reminders as QuickBooks has them now, by id (a deleted one is
        left out)."""
        found: dict[str, Item] = {}
        if kind is ItemKind.PAYMENT:
            payments: list[Payment] = []
            for chunk in _chunks(sorted(set(ids))):
                payments += await self.company.query_all(
                    f"SELECT * FROM Payment WHERE Id IN ({_in(chunk)})"  # noqa: S608 (QBO query language, read-only)
                )
            return {item.id: item for item in await self._payment_items(payments)}
        entity = "Bill" if kind is ItemKind.BILL else "Invoice"
        for chunk in _chunks(sorted(set(ids))):
            rows: list[Any] = await self.company.query_all(
                f"SELECT * FROM {entity} WHERE Id IN ({_in(chunk)})"  # noqa: S608 (QBO query language, read-only)
            )
            for row in rows:
                item = bill_item(row) if isinstance(row, Bill) else invoice_item(row)
                found[item.id] = item
        return found

    async def _payment_items(self, payments: list[Payment]) -> list[Item]:
        if not payments:
            return []
        undeposited = await self._undeposited_accounts()
        made = [p.MetaData.CreateTime for p in payments if p.MetaData and p.MetaData.CreateTime]
        deposited = await self._deposited_since(min(made)) if made else set()
        return [payment_item(p, undeposited, deposited) for p in payments]

    async def _undeposited_accounts(self) -> set[str]:
        if self._undeposited is None:
            accounts: list[Account] = await self.company.query_all(
                "SELECT * FROM Account WHERE AccountType = 'Other Current Asset'"
            )
            self._undeposited = {
                str(a.Id)
                for a in accounts
                if (a.model_extra or {}).get("AccountSubType") == UNDEPOSITED_SUB_TYPE
            }
        return self._undeposited

    async def _deposited_since(self, since: datetime) -> set[str]:
        """Ids of the payments deposits changed since `since` take out of Undeposited Funds."""
        stamp = since.isoformat()
        deposits: list[Deposit] = await self.company.query_all(
            f"SELECT * FROM Deposit WHERE MetaData.LastUpdatedTime >= '{stamp}'"  # noqa: S608 (QBO query language, read-only)
        )
        return {payment_id for d in deposits for payment_id in d.payment_ids()}
