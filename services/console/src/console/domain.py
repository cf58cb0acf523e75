"""Pure rules of the console: which language a person reads, how money and dates read in it,
the due date a term implies, the badge of an invoice stage, the lines' totals, and which
fields of the two systems fit each other. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

LANGUAGES = ("en", "nl")
DEFAULT_LANGUAGE = "en"

STAGES = ("awaiting_send", "sent", "partially_paid", "paid", "overdue", "voided")
# The badge tone of each stage: one colour family per meaning, the same in the card.
STAGE_TONES = {
    "awaiting_send": "neutral",
    "sent": "info",
    "partially_paid": "warning",
    "paid": "success",
    "overdue": "danger",
    "voided": "muted",
}
RECORD_TYPES = ("deals", "contacts", "companies")


def language(*candidates: str | None, accept_language: str | None = None) -> str:
    """The first supported language among explicit choices (a `?lang=`, the person's cookie,
    the CRM user's locale such as "nl-nl"), else the best of the browser's Accept-Language."""
    for candidate in candidates:
        if candidate:
            primary = candidate.strip().lower().replace("_", "-").split("-")[0]
            if primary in LANGUAGES:
                return primary
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and weight > 0:
            ranked.append((-weight, index, primary))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE


_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$", "INR": "₹"}
_MONTHS = {
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "nl": ("jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec"),
}


def decimal_of(value: object) -> Decimal | None:
    """A money or quantity value as the services send it (a decimal string), or None."""
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def money(amount: object, currency: str | None, lang: str) -> str:
    """ "$1,250.00" in English, "€ 1.250,00" in Dutch; the code when no symbol is known."""
    value = decimal_of(amount)
    if value is None:
        return "—"
    sign = "-" if value < 0 else ""
    whole, _, cents = f"{abs(value).quantize(Decimal('0.01'), ROUND_HALF_UP):,.2f}".partition(".")
    code = (currency or "").upper()
    symbol = _SYMBOLS.get(code)
    if lang == "nl":
        number = f"{whole.replace(',', '.')},{cents}"
        return f"{sign}{symbol or code} {number}".strip()
    number = f"{whole}.{cents}"
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code}".strip()


def day(value: object, lang: str) -> str:
    """An ISO date (or datetime) as "Dec 7, 2026" / "7 dec 2026"; "—" when absent."""
    if not value:
        return "—"
    try:
        parsed = date.fromisoformat(str(value)[:10])
    except ValueError:
        return str(value)
    month = _MONTHS.get(lang, _MONTHS["en"])[parsed.month - 1]
    if lang == "nl":
        return f"{parsed.day} {month} {parsed.year}"
    return f"{month} {parsed.day}, {parsed.year}"


def due_date(invoice_date: date, due_days: int | None) -> date | None:
    """The due date a term with `due_days` implies for an invoice dated `invoice_date`."""
    if due_days is None:
        return None
    return invoice_date + timedelta(days=due_days)


def parse_day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class LineDraft:
    """One line as the wizard shows it: from the deal or quote, with the QuickBooks product
    chosen for it (None until someone picks one)."""

    line_item_id: str
    name: str
    quantity: Decimal
    price: Decimal
    currency: str
    qbo_item_id: str | None
    tax_code_id: str | None = None

    @property
    def amount(self) -> Decimal:
        return (self.quantity * self.price).quantize(Decimal("0.01"), ROUND_HALF_UP)


def subtotal(lines: Iterable[LineDraft]) -> Decimal:
    return sum((line.amount for line in lines), Decimal("0.00"))


def missing_choices(lines: Sequence[LineDraft], *, needs_tax_codes: bool) -> list[tuple[int, str]]:
    """What still has to be chosen before a review: (line index, "item" or "tax_code")."""
    missing: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        if not line.qbo_item_id:
            missing.append((index, "item"))
        if needs_tax_codes and not line.tax_code_id:
            missing.append((index, "tax_code"))
    return missing


def fitting_properties(
    fits: Iterable[str], properties: Sequence[Mapping[str, str]]
) -> list[Mapping[str, str]]:
    """The CRM properties of a type a QuickBooks field can be written into (`fits`, as the
    mapping registry lists it per field; it checks the same again on save)."""
    allowed = frozenset(fits)
    return [p for p in properties if p.get("type") in allowed]


def owner_name(owners: Iterable[Mapping[str, object]], key: str, value: object) -> str | None:
    """What the CRM owner whose `key` (`id` for an owner id, `user_id` for the CRM user an
    owner stands for) is `value` is called; None when no listed owner has it."""
    if value in (None, ""):
        return None
    for owner in owners:
        if owner.get(key) is not None and str(owner.get(key)) == str(value):
            return str(owner.get("name") or "") or None
    return None


def shows_advanced(advanced_portals: Sequence[str] | None, portal: str | None) -> bool:
    """Whether the menu offers approvals and reminders (QuickBooks Online Advanced) in
    `portal`: where one of its companies is on Advanced, and wherever that is not known, since
    a link that explains is better than a page that cannot be found."""
    return advanced_portals is None or portal in advanced_portals
