"""The rules of invoice-builder, with no I/O: who may get a draft, what it looks like, who it
is for. Handlers and the wizard API gather facts, call these functions, and act on the answer.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from dealbooks_contracts import (
    CrmChange,
    CrmObjectChanged,
    CrmObjectType,
    InvoiceLineRequest,
    InvoiceRequested,
    Money,
    NewCustomer,
    RejectionCode,
    is_advanced,
)

CENT = Decimal("0.01")
US = "US"
# QuickBooks' own limit on DisplayName; longer names are cut before a suffix is added.
DISPLAY_NAME_MAX = 100
PUBLISHED_QUOTE_STATUSES = frozenset({"APPROVAL_NOT_NEEDED", "APPROVED", "ACCEPTED"})
_NS = uuid.UUID("0b7c5c1e-6a43-4f0e-9c55-3e1f3b7d2a61")


@dataclass(frozen=True)
class AccountFacts:
    """What invoice-builder knows about a connected QuickBooks company (from connector-auth)."""

    portal_id: str
    realm_id: str
    company_name: str
    country: str
    home_currency: str
    multicurrency_enabled: bool
    custom_transaction_numbers: bool
    connected: bool = True
    # QuickBooks' edition (CompanyInfo's OfferingSku); None when QuickBooks did not say.
    edition: str | None = None

    @property
    def is_us(self) -> bool:
        return self.country == US

    @property
    def is_advanced(self) -> bool:
        """QuickBooks Online Advanced: the edition whose extras (invoice approval) apply."""
        return is_advanced(self.edition)


@dataclass(frozen=True)
class QuoteFacts:
    """The parts of a CRM quote that decide whether it may become an invoice."""

    quote_id: str
    status: str | None
    expires_at: datetime | None
    title: str | None = None
    currency: str | None = None


@dataclass(frozen=True)
class Rejection:
    """Why a request is refused: a code for machines and a sentence for the user."""

    code: RejectionCode
    message: str
    field: str | None = None
    line_index: int | None = None
    qbo_fault_code: str | None = None


# ---------------------------------------------------------------------------------- requests


def rejection_for_failure(*, permanent: bool) -> Rejection:
    """What the user hears when dealbooks gave up on their request: QuickBooks (or a service
    the request needs) kept failing until the retries ran out, or something retrying cannot fix.
    Either way the invoice may exist if the failure came after QuickBooks created it."""
    if permanent:
        return Rejection(
            RejectionCode.REQUEST_FAILED,
            "dealbooks could not process this request. Check QuickBooks for the invoice "
            "before submitting it again, and contact support if this repeats.",
        )
    return Rejection(
        RejectionCode.QBO_UNAVAILABLE,
        "QuickBooks did not respond after repeated attempts. Check QuickBooks for the invoice "
        "before submitting it again in a few minutes.",
    )


def crm_not_connected_rejection(portal_id: str) -> Rejection:
    """The refusal for a portal whose CRM dealbooks has no access to: no retry can fix it."""
    return Rejection(
        RejectionCode.CRM_NOT_CONNECTED,
        f"dealbooks has no access to the CRM of portal {portal_id}, so it cannot read the deal "
        "or quote. Ask a super admin of the portal to install dealbooks, then request the "
        "invoice again.",
    )


def not_connected_rejection() -> Rejection:
    """The company a request names is not connected to the request's portal."""
    return Rejection(
        RejectionCode.ACCOUNT_NOT_CONNECTED,
        "This QuickBooks company is not connected to the portal.",
        field="account",
    )


def custom_numbers_rejection(account: AccountFacts) -> Rejection:
    """The refusal for a company that numbers its invoices by hand, saying how to fix it."""
    return Rejection(
        RejectionCode.CUSTOM_TXN_NUMBERS_ENABLED,
        f"QuickBooks company {account.company_name} has custom transaction numbers turned on, "
        "so invoices would get no number. In QuickBooks open Settings > Account and settings "
        "> Sales > Sales form content, turn off 'Custom transaction numbers', save, "
        "then request the invoice again.",
        field="account",
    )


def usable_account(account: AccountFacts | None) -> AccountFacts | Rejection:
    """The company, if it is connected and numbers its invoices itself; else the refusal."""
    if account is None or not account.connected:
        return Rejection(
            RejectionCode.ACCOUNT_NOT_CONNECTED,
            "This QuickBooks company is not connected to the portal; connect it and try again.",
            field="account",
        )
    if account.custom_transaction_numbers:
        return custom_numbers_rejection(account)
    return account


def check_quote(quote: QuoteFacts | None, quote_id: str | None, now: datetime) -> Rejection | None:
    """Only a published, unexpired quote may become an invoice."""
    if quote_id is None:
        return None
    if quote is None:
        return Rejection(
            RejectionCode.QUOTE_NOT_FOUND,
            f"Quote {quote_id} no longer exists in the CRM; pick another quote or start "
            "from the deal.",
            field="quote_id",
        )
    if quote.status not in PUBLISHED_QUOTE_STATUSES:
        state = quote.status or "not published"
        return Rejection(
            RejectionCode.QUOTE_NOT_PUBLISHED,
            f"Quote {quote.title or quote.quote_id} is {state.lower().replace('_', ' ')}; "
            "publish it before invoicing from it.",
            field="quote_id",
        )
    if quote.expires_at is not None and quote.expires_at < now:
        return Rejection(
            RejectionCode.QUOTE_EXPIRED,
            f"Quote {quote.title or quote.quote_id} expired on {quote.expires_at.date()}; "
            "extend its expiration date or create a new quote.",
            field="quote_id",
        )
    return None


def check_lines(lines: Sequence[InvoiceLineRequest], account: AccountFacts) -> Rejection | None:
    """Lines need items and a single currency; tax codes per line outside the US, none inside."""
    if not lines:
        return Rejection(RejectionCode.NO_LINES, "Add at least one line to the invoice.")
    for index, line in enumerate(lines):
        if account.is_us and line.tax_code_id not in (None, "TAX", "NON"):
            return Rejection(
                RejectionCode.TAX_CODE_NOT_ALLOWED,
                f"Line {index + 1}: US companies let QuickBooks apply sales tax; remove the "
                "tax code from this line.",
                field="tax_code_id",
                line_index=index,
            )
        if not account.is_us and not line.tax_code_id:
            return Rejection(
                RejectionCode.TAX_CODE_REQUIRED,
                f"Line {index + 1}: QuickBooks companies in {account.country} need a tax code "
                "(e.g. a VAT or GST rate) on every line; choose one for this line.",
                field="tax_code_id",
                line_index=index,
            )
    currencies = {line.unit_price.currency for line in lines}
    if len(currencies) > 1:
        return Rejection(
            RejectionCode.CURRENCY_MISMATCH,
            "All lines of one invoice must be in the same currency; found "
            f"{', '.join(sorted(currencies))}.",
            field="lines",
        )
    return None


def check_currency(
    currency: str, customer_currency: str | None, account: AccountFacts
) -> Rejection | None:
    """An invoice is in its customer's currency; without multicurrency, only the home one."""
    expected = customer_currency or account.home_currency
    if not account.multicurrency_enabled and currency != account.home_currency:
        return Rejection(
            RejectionCode.CURRENCY_MISMATCH,
            f"QuickBooks company {account.company_name} works only in {account.home_currency}; "
            f"the lines are in {currency}.",
            field="lines",
        )
    if currency != expected:
        return Rejection(
            RejectionCode.CURRENCY_MISMATCH,
            f"The customer is billed in {expected}; the lines are in {currency}.",
            field="lines",
        )
    return None


def check_dates(invoice_date: date, due_date: date | None) -> Rejection | None:
    """The due date may not come before the invoice date."""
    if due_date is not None and due_date < invoice_date:
        return Rejection(
            RejectionCode.DUE_BEFORE_INVOICE_DATE,
            f"The due date {due_date} is before the invoice date {invoice_date}; "
            "choose a due date on or after the invoice date.",
            field="due_date",
        )
    return None


def validate_request(
    request: InvoiceRequested,
    account: AccountFacts | None,
    *,
    today: date,
    now: datetime,
    quote: QuoteFacts | None = None,
) -> Rejection | None:
    """Every rule checked before QuickBooks is called; the first broken one is the answer."""
    checked = usable_account(account)
    if isinstance(checked, Rejection):
        return checked
    return (
        check_quote(quote, request.quote_id, now)
        or check_lines(request.lines, checked)
        or check_dates(request.invoice_date or today, request.due_date)
    )


# ---------------------------------------------------------------------------------- invoice


def line_amount(quantity: Decimal, unit_price: Decimal) -> Decimal:
    """Qty x UnitPrice in cents; QuickBooks refuses a line whose Amount differs (6070)."""
    return (quantity * unit_price).quantize(CENT, rounding=ROUND_HALF_UP)


def subtotal(lines: Iterable[InvoiceLineRequest]) -> Decimal:
    """The sum of the line amounts, before tax."""
    return sum((line_amount(x.quantity, x.unit_price.amount) for x in lines), Decimal("0.00"))


def due_date_from_terms(invoice_date: date, due_days: int | None) -> date | None:
    """Standard terms: due `due_days` after the invoice date (None: QuickBooks decides)."""
    return None if due_days is None else invoice_date + timedelta(days=due_days)


def qbo_request_id(request_id: uuid.UUID, step: str) -> str:
    """The idempotency key of one QuickBooks write of a request: the same request and step
    always give the same key, so a retry after a crash replays instead of creating again."""
    return str(uuid.uuid5(_NS, f"{request_id}:{step}"))


def invoice_body(
    request: InvoiceRequested,
    customer_id: str,
    account: AccountFacts,
    *,
    today: date,
    bill_email: str | None = None,
) -> dict[str, Any]:
    """The QuickBooks Invoice create body of a validated request: a draft, never sent (to
    the customer's own e-mail address, `bill_email`, once a person sends it)."""
    lines: list[dict[str, Any]] = []
    for line in request.lines:
        detail: dict[str, Any] = {
            "ItemRef": {"value": line.qbo_item_id},
            "Qty": line.quantity,
            "UnitPrice": line.unit_price.amount,
        }
        if not account.is_us and line.tax_code_id:
            detail["TaxCodeRef"] = {"value": line.tax_code_id}
        entry: dict[str, Any] = {
            "DetailType": "SalesItemLineDetail",
            "Amount": line_amount(line.quantity, line.unit_price.amount),
            "SalesItemLineDetail": detail,
        }
        if line.description:
            entry["Description"] = line.description
        lines.append(entry)
    body: dict[str, Any] = {
        "CustomerRef": {"value": customer_id},
        "Line": lines,
        "TxnDate": (request.invoice_date or today).isoformat(),
        "EmailStatus": "NotSet",
        "PrivateNote": f"dealbooks: deal {request.deal_id}, request {request.request_id}",
    }
    if request.due_date:
        body["DueDate"] = request.due_date.isoformat()
    if request.terms_id:
        body["SalesTermRef"] = {"value": request.terms_id}
    if request.customer_message:
        body["CustomerMemo"] = {"value": request.customer_message[:1000]}
    if account.multicurrency_enabled:
        body["CurrencyRef"] = {"value": request.lines[0].unit_price.currency}
    if bill_email:
        body["BillEmail"] = {"Address": bill_email}
    return body


@dataclass(frozen=True)
class QboCreate:
    """A QuickBooks create: its body, and the requestid a rerun sends again."""

    body: dict[str, Any]
    request_id: str


def draft_of(
    request: InvoiceRequested, customer: CustomerCandidate, account: AccountFacts, *, today: date
) -> QboCreate | Rejection:
    """The draft invoice of a valid request for its customer, or why the customer cannot have
    it (the lines are not in the customer's currency)."""
    currency = request.lines[0].unit_price.currency
    mismatch = check_currency(currency, customer.currency, account)
    if mismatch:
        return mismatch
    body = invoice_body(
        request, customer.qbo_customer_id, account, today=today, bill_email=customer.email
    )
    return QboCreate(body, qbo_request_id(request.request_id, "invoice"))


# ---------------------------------------------------------------------------------- customers


@dataclass(frozen=True)
class CustomerCandidate:
    """A QuickBooks customer as matching sees it."""

    qbo_customer_id: str
    display_name: str
    company_name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    email: str | None = None
    active: bool = True
    currency: str | None = None


@dataclass(frozen=True)
class CrmParty:
    """Who the deal is with, from the CRM: its contact and company."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company_name: str | None = None
    crm_contact_id: str | None = None
    crm_company_id: str | None = None


@dataclass(frozen=True)
class CustomerMatch:
    """The proposed customer, how sure we are (0-100) and why."""

    customer: CustomerCandidate
    score: int
    reason: str


# How sure a match is: the same e-mail address, company name, person name.
SAME_EMAIL, SAME_COMPANY, SAME_PERSON = 100, 80, 60


def _norm(value: str | None) -> str:
    return re.sub(r"\s+", " ", (value or "").strip().lower())


def match_customer(
    party: CrmParty, candidates: Iterable[CustomerCandidate]
) -> CustomerMatch | None:
    """The best QuickBooks customer for a CRM party, or None when nothing is a fair match.

    An e-mail address identifies a person best; then the company name; then the person's name.
    Inactive customers are never proposed.
    """
    best: CustomerMatch | None = None
    email = _norm(party.email)
    company = _norm(party.company_name)
    person = _norm(f"{party.first_name or ''} {party.last_name or ''}")
    for candidate in candidates:
        if not candidate.active:
            continue
        found: CustomerMatch | None = None
        if email and _norm(candidate.email) == email:
            found = CustomerMatch(candidate, SAME_EMAIL, "same e-mail address")
        elif company and company in (_norm(candidate.display_name), _norm(candidate.company_name)):
            found = CustomerMatch(candidate, SAME_COMPANY, "same company name")
        elif person and person in (
            _norm(candidate.display_name),
            _norm(f"{candidate.given_name or ''} {candidate.family_name or ''}"),
        ):
            found = CustomerMatch(candidate, SAME_PERSON, "same person name")
        if found and (best is None or found.score > best.score):
            best = found
    return best


def search_customers(
    query: str, candidates: Iterable[CustomerCandidate], limit: int = 20
) -> list[CustomerCandidate]:
    """Active customers whose name, company or e-mail contains the query (case-insensitive)."""
    needle = _norm(query)
    hits = [
        c
        for c in candidates
        if c.active
        and (
            not needle
            or needle in _norm(c.display_name)
            or needle in _norm(c.company_name)
            or needle in _norm(c.email)
        )
    ]
    return sorted(hits, key=lambda c: _norm(c.display_name))[:limit]


def display_name_candidates(customer: NewCustomer, attempts: int = 20) -> list[str]:
    """Names to try, in order, for a new customer.

    QuickBooks DisplayName is unique across customers, vendors and employees, so a second
    contact of the same company cannot take the company's name again: it gets the person's
    name, then the e-mail address, then a number added.
    """
    base = customer.display_name.strip()[:DISPLAY_NAME_MAX]
    person = " ".join(p for p in (customer.given_name, customer.family_name) if p).strip()
    names = [base]
    if person and _norm(person) != _norm(base):
        names.append(f"{base} ({person})")
    if customer.email:
        names.append(f"{base} ({customer.email})")
    names += [f"{base} ({n})" for n in range(2, 2 + attempts)]
    unique: list[str] = []
    for name in names:
        if _norm(name) not in {_norm(u) for u in unique}:
            unique.append(name)
    return unique


def choose_display_name(customer: NewCustomer, taken: Iterable[str]) -> str:
    """The first candidate name nobody in QuickBooks uses yet (compared without case)."""
    used = {_norm(name) for name in taken}
    for name in display_name_candidates(customer):
        if _norm(name) not in used:
            return name
    raise ValueError(f"no free display name for {customer.display_name!r}")


def same_person(customer: NewCustomer, candidate: CustomerCandidate) -> bool:
    """Whether an existing customer already is this new customer (same e-mail address)."""
    return bool(customer.email) and _norm(customer.email) == _norm(candidate.email)


def customer_body(customer: NewCustomer, display_name: str) -> dict[str, Any]:
    """The QuickBooks Customer create body."""
    body: dict[str, Any] = {"DisplayName": display_name}
    for key, value in (
        ("CompanyName", customer.company_name),
        ("GivenName", customer.given_name),
        ("FamilyName", customer.family_name),
    ):
        if value:
            body[key] = value
    if customer.email:
        body["PrimaryEmailAddr"] = {"Address": customer.email}
    if customer.phone:
        body["PrimaryPhone"] = {"FreeFormNumber": customer.phone}
    if customer.currency:
        body["CurrencyRef"] = {"value": customer.currency}
    address = customer.billing_address
    if address is not None:
        body["BillAddr"] = {
            k: v
            for k, v in (
                ("Line1", address.line1),
                ("Line2", address.line2),
                ("City", address.city),
                ("CountrySubDivisionCode", address.region),
                ("PostalCode", address.postal_code),
                ("Country", address.country),
            )
            if v
        }
    return body


def customer_create(customer: NewCustomer, display_name: str, request_id: uuid.UUID) -> QboCreate:
    """The create of a new customer under one of its names, for the request that needs it
    (each name its own requestid: a rerun replays the very answers of the first run)."""
    key = qbo_request_id(request_id, f"customer:{display_name}")
    return QboCreate(customer_body(customer, display_name), key)


def crm_record_key(customer: NewCustomer) -> str | None:
    """The CRM record a new customer stands for (its contact, else its company): later
    invoices of that record reuse the customer made for the first."""
    if customer.crm_contact_id:
        return f"contact:{customer.crm_contact_id}"
    if customer.crm_company_id:
        return f"company:{customer.crm_company_id}"
    return None


def new_customer_of(party: CrmParty) -> NewCustomer:
    """The QuickBooks customer to create for a CRM party nobody matches."""
    person = " ".join(p for p in (party.first_name, party.last_name) if p)
    return NewCustomer(
        display_name=party.company_name or person or party.email or "CRM customer",
        company_name=party.company_name,
        given_name=party.first_name,
        family_name=party.last_name,
        email=party.email,
        crm_contact_id=party.crm_contact_id,
        crm_company_id=party.crm_company_id,
    )


def every_name_taken(customer: NewCustomer) -> Rejection:
    """No display name a new customer could have is free in QuickBooks."""
    return Rejection(
        RejectionCode.QBO_VALIDATION,
        f"Every name tried for the new customer {customer.display_name.strip()!r} is taken in "
        "QuickBooks; choose an existing customer instead.",
        field="customer",
        qbo_fault_code="6240",
    )


# ---------------------------------------------------------------------------------- quotes


@dataclass(frozen=True)
class CrmLineItem:
    """A CRM line item of a deal or quote."""

    line_item_id: str
    name: str | None
    quantity: Decimal
    price: Decimal
    currency: str
    crm_product_id: str | None = None
    description: str | None = None


def lines_from_crm(
    items: Sequence[CrmLineItem],
    product_links: Mapping[str, str],
    chosen_items: Mapping[str, str],
    tax_codes: Mapping[str, str] | None = None,
    default_tax_code: str | None = None,
) -> list[InvoiceLineRequest] | Rejection:
    """Invoice lines from CRM line items.

    A linked product maps to its QBO item; otherwise the user's choice for that line item
    (`chosen_items`: line item id -> QBO item id) is used; otherwise the line is refused.
    """
    lines: list[InvoiceLineRequest] = []
    for index, item in enumerate(items):
        qbo_item = chosen_items.get(item.line_item_id) or (
            product_links.get(item.crm_product_id) if item.crm_product_id else None
        )
        if qbo_item is None:
            return Rejection(
                RejectionCode.ITEM_NOT_FOUND,
                f"Line {index + 1} ({item.name or item.line_item_id}) has no QuickBooks item: "
                "its product is not linked; choose a QuickBooks item for it.",
                field="qbo_item_id",
                line_index=index,
            )
        lines.append(
            InvoiceLineRequest(
                qbo_item_id=qbo_item,
                quantity=item.quantity,
                unit_price=Money(amount=item.price, currency=item.currency),
                description=item.description or item.name,
                tax_code_id=(tax_codes or {}).get(item.line_item_id) or default_tax_code,
                crm_line_item_id=item.line_item_id,
                crm_product_id=item.crm_product_id,
            )
        )
    if not lines:
        return Rejection(RejectionCode.NO_LINES, "The deal or quote has no line items.")
    return lines


# ---------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class AutoDraftRule:
    """'When a deal enters stage X, draft an invoice from its line items for account Y'."""

    rule_id: str
    portal_id: str
    realm_id: str
    deal_stage: str
    enabled: bool = True
    terms_id: str | None = None
    default_tax_code: str | None = None
    chosen_items: Mapping[str, str] = field(default_factory=dict)
    # Since when the rule has been on: a deal that entered its stage before is not its to draft.
    active_since: datetime | None = None

    def settings(self) -> dict[str, Any]:
        """The rule as it was set (what the settings page shows, and what is kept of it)."""
        return {
            "rule_id": self.rule_id,
            "realm_id": self.realm_id,
            "deal_stage": self.deal_stage,
            "enabled": self.enabled,
            "terms_id": self.terms_id,
            "default_tax_code": self.default_tax_code,
            "chosen_items": dict(self.chosen_items),
        }


def rule_fires(rule: AutoDraftRule, change: CrmObjectChanged) -> bool:
    """A deal moving into the rule's stage fires it; nothing else does."""
    return (
        rule.enabled
        and change.object_type is CrmObjectType.DEAL
        and change.change is CrmChange.PROPERTY_CHANGED
        and change.property_name == "dealstage"
        and change.property_value == rule.deal_stage
    )


def auto_draft_request_id(portal_id: str, deal_id: str) -> uuid.UUID:
    """One request id per deal for every auto-draft: the same deal never gets two drafts,
    whatever rule, redelivery or stage round-trip fires again."""
    return uuid.uuid5(_NS, f"auto-draft:{portal_id}:{deal_id}")


def stage_entered(rule: AutoDraftRule, deal_id: str, entered: datetime) -> CrmObjectChanged:
    """The change the stage sweep found without its webhook: the deal entered the rule's stage
    at `entered` (it then fires the rule as the webhook would have)."""
    return CrmObjectChanged(
        crm_event_id=f"stage-sweep:{rule.rule_id}:{deal_id}",
        object_type=CrmObjectType.DEAL,
        object_id=deal_id,
        change=CrmChange.PROPERTY_CHANGED,
        changed_at=entered,
        property_name="dealstage",
        property_value=rule.deal_stage,
        change_source="dealbooks-stage-sweep",
    )


# ---------------------------------------------------------------- CRM owners, by name


@dataclass(frozen=True)
class CrmOwner:
    """A CRM owner as a person picks one: its id, and what to call it. `user_id` is the CRM
    user it stands for (who signs in and asks for invoices), a different id."""

    id: str
    name: str
    email: str | None
    user_id: str | None = None


def sorted_owners(found: Iterable[Mapping[str, Any]]) -> list[CrmOwner]:
    """The CRM's owners (`id`, `firstName`, `lastName`, `email`, `userId`) by what they are
    called: the full name, else the e-mail, else "Owner <id>"; alphabetically, ties by id."""
    owners = []
    for owner in found:
        full = " ".join(
            part
            for part in (str(owner.get(k) or "").strip() for k in ("firstName", "lastName"))
            if part
        )
        email = str(owner.get("email") or "").strip() or None
        owner_id = str(owner["id"])
        user = owner.get("userId")
        user_id = None if user is None else str(user)
        owners.append(CrmOwner(owner_id, full or email or f"Owner {owner_id}", email, user_id))
    return sorted(owners, key=lambda o: (o.name.casefold(), o.id))
