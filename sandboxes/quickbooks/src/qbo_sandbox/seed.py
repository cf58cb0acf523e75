"""What a new company looks like: country facts, tax codes, terms, accounts, demo lists."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

COUNTRIES: dict[str, dict[str, Any]] = {
    "US": {"iso3": "USA", "tz": "America/Los_Angeles", "currency": "USD", "state": "CA"},
    "GB": {"iso3": "GBR", "tz": "Europe/London", "currency": "GBP", "state": None},
    "CA": {"iso3": "CAN", "tz": "America/Toronto", "currency": "CAD", "state": "ON"},
    "AU": {"iso3": "AUS", "tz": "Australia/Sydney", "currency": "AUD", "state": "NSW"},
}

CURRENCY_NAMES = {
    "USD": "United States Dollar",
    "GBP": "British Pound Sterling",
    "CAD": "Canadian Dollar",
    "AUD": "Australian Dollar",
    "EUR": "Euro",
}

# The wording QBO uses when a non-US line has no tax code (6000); AU wording is a guess.
MISSING_TAX_TEXT = {
    "GB": "Make sure all your transactions have a VAT rate before you save.",
    "CA": "Make sure all your transactions have a GST/HST rate before you save.",
    "AU": "Make sure all your transactions have a GST rate before you save.",
}

# (Id, Name, Description, rate percent); US pseudo codes TAX/NON are added separately.
TAX_CODES: dict[str, list[tuple[str, str, str, Decimal]]] = {
    "US": [("2", "California", "California state and county sales tax", Decimal("8"))],
    "GB": [
        ("2", "20.0% S", "Standard rated sales", Decimal("20")),
        ("3", "0.0% Z", "Zero-rated sales", Decimal("0")),
        ("4", "Exempt", "Exempt sales", Decimal("0")),
    ],
    "CA": [
        ("3", "GST", "Goods and services tax", Decimal("5")),
        ("4", "HST ON", "Harmonised sales tax, Ontario", Decimal("13")),
        ("5", "Exempt", "Exempt", Decimal("0")),
    ],
    "AU": [
        ("10", "GST", "Goods and services tax", Decimal("10")),
        ("11", "GST free", "GST-free sales", Decimal("0")),
    ],
}

TERMS = [("1", "Due on receipt", 0), ("2", "Net 15", 15), ("3", "Net 30", 30), ("4", "Net 60", 60)]

INCOME_ACCOUNT_ID = "79"
# AccountType -> Classification, as QBO derives it.
ACCOUNT_CLASSIFICATION = {
    "Bank": "Asset",
    "Accounts Receivable": "Asset",
    "Other Current Asset": "Asset",
    "Fixed Asset": "Asset",
    "Other Asset": "Asset",
    "Accounts Payable": "Liability",
    "Credit Card": "Liability",
    "Other Current Liability": "Liability",
    "Long Term Liability": "Liability",
    "Equity": "Equity",
    "Income": "Revenue",
    "Other Income": "Revenue",
    "Cost of Goods Sold": "Expense",
    "Expense": "Expense",
    "Other Expense": "Expense",
}
UNDEPOSITED_FUNDS_ID = "4"
# The accounts a new company has besides income and Undeposited Funds, with the ids Intuit's
# sandbox sample company uses for them: (Id, Name, AccountType, AccountSubType).
BANK_ACCOUNT_ID = "35"
PAYABLES_ACCOUNT_ID = "33"
EXPENSE_ACCOUNT_ID = "7"
CREDIT_CARD_ACCOUNT_ID = "41"
ACCOUNTS: list[tuple[str, str, str, str]] = [
    (INCOME_ACCOUNT_ID, "Sales of Product Income", "Income", "SalesOfProductIncome"),
    (UNDEPOSITED_FUNDS_ID, "Undeposited Funds", "Other Current Asset", "UndepositedFunds"),
    (BANK_ACCOUNT_ID, "Checking", "Bank", "Checking"),
    (PAYABLES_ACCOUNT_ID, "Accounts Payable (A/P)", "Accounts Payable", "AccountsPayable"),
    (EXPENSE_ACCOUNT_ID, "Advertising", "Expense", "AdvertisingPromotional"),
    (CREDIT_CARD_ACCOUNT_ID, "Mastercard", "Credit Card", "CreditCard"),
]

# CompanyInfo's OfferingSku per edition. Only "QuickBooks Online Plus" is seen in a real
# CompanyInfo sample; the other values follow the product names (see the README).
EDITIONS = {
    "simplestart": "QuickBooks Online Simple Start",
    "essentials": "QuickBooks Online Essentials",
    "plus": "QuickBooks Online Plus",
    "advanced": "QuickBooks Online Advanced",
}
DEFAULT_EDITION = "plus"


def offering_sku(edition: str) -> str:
    """The OfferingSku of an edition given by key (`Advanced`, `simple start`) or full name."""
    key = edition.replace(" ", "").replace("_", "").lower()
    if key in EDITIONS:
        return EDITIONS[key]
    for sku in EDITIONS.values():
        if sku.lower() == edition.strip().lower():
            return sku
    raise ValueError(f"unknown edition {edition!r}; one of {sorted(EDITIONS)}")


DEMO_COMPANIES: list[dict[str, Any]] = [
    {
        "realm_id": "9341455322581846",
        "name": "Larry's Bakery",
        "country": "US",
        "demo_data": True,
    },
    {
        "realm_id": "4620816365044851490",
        "name": "Thames Joinery Ltd",
        "country": "GB",
        "custom_txn_numbers": True,
        "demo_data": True,
    },
    {"realm_id": "123145730608574", "name": "Maple Crate Co", "country": "CA", "demo_data": True},
    {
        "realm_id": "123145730608575",
        "name": "Harbour Bridge Pty",
        "country": "AU",
        "demo_data": True,
    },
    {
        "realm_id": "9341455731187204",
        "name": "Summit Ridge Outfitters",
        "country": "US",
        "edition": "Advanced",
        "demo_data": True,
    },
    {
        "realm_id": "1185883450",
        "name": "Production Demo Inc",
        "country": "US",
        "environment": "production",
        "demo_data": True,
    },
]

DEMO_CUSTOMERS: list[dict[str, Any]] = [
    {
        "DisplayName": "Amy's Bird Sanctuary",
        "GivenName": "Amy",
        "FamilyName": "Lauterbach",
        "CompanyName": "Amy's Bird Sanctuary",
        "PrimaryEmailAddr": {"Address": "Birds@Intuit.com"},
        "BillAddr": {
            "Line1": "4581 Finch St.",
            "City": "Bayshore",
            "CountrySubDivisionCode": "CA",
            "PostalCode": "94326",
        },
    },
    {
        "DisplayName": "Red Rock Diner",
        "CompanyName": "Red Rock Diner",
        "PrimaryEmailAddr": {"Address": "qbwebsamplecompany@yahoo.com"},
    },
    {"DisplayName": "Weiskopf Consulting", "CompanyName": "Weiskopf Consulting"},
]

DEMO_VENDORS: list[dict[str, Any]] = [
    {
        "DisplayName": "Hicks Hardware",
        "CompanyName": "Hicks Hardware",
        "PrimaryEmailAddr": {"Address": "accounts@hickshardware.example"},
        "TermRef": {"value": "3"},
    },
    {"DisplayName": "Norton Lumber and Building Materials", "CompanyName": "Norton Lumber"},
]

DEMO_ITEMS: list[dict[str, Any]] = [
    {"Name": "Services", "Type": "Service", "UnitPrice": Decimal("0"), "Taxable": False},
    {
        "Name": "Onboarding package",
        "Type": "Service",
        "UnitPrice": Decimal("500"),
        "Sku": "ONB-1",
        "Description": "Onboarding",
        "Taxable": False,
    },
    {"Name": "Hardware kit", "Type": "NonInventory", "UnitPrice": Decimal("120"), "Taxable": True},
]
