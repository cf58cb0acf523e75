"""The console's pure rules: language, money and dates per language, due dates, line totals."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from console import domain


@pytest.mark.parametrize(
    ("choices", "accept", "expected"),
    [
        ((None, None, None), None, "en"),
        (("nl", None, None), "en-US", "nl"),
        ((None, "nl", None), None, "nl"),
        ((None, None, "nl-nl"), None, "nl"),
        ((None, None, "de-de"), "nl-BE,nl;q=0.9,en;q=0.8", "nl"),
        ((None, None, None), "de-DE,en;q=0.5,nl;q=0.7", "nl"),
        ((None, None, None), "nl;q=0, en", "en"),
        (("xx", None, None), "fr-FR", "en"),
    ],
)
def test_the_first_supported_choice_wins_then_the_browsers_best(
    choices: tuple[str | None, ...], accept: str | None, expected: str
) -> None:
    assert domain.language(*choices, accept_language=accept) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "lang", "shown"),
    [
        ("1250", "USD", "en", "$1,250.00"),
        ("1250.5", "EUR", "nl", "€ 1.250,50"),
        ("-3.456", "GBP", "en", "-£3.46"),
        ("1000000", "SEK", "en", "1,000,000.00 SEK"),
        ("1000000", "SEK", "nl", "SEK 1.000.000,00"),
        (None, "USD", "en", "—"),
        ("not money", "USD", "en", "—"),
    ],
)
def test_money_reads_as_its_language_writes_it(
    amount: str | None, currency: str, lang: str, shown: str
) -> None:
    assert domain.money(amount, currency, lang) == shown


def test_days_read_in_each_language_and_keep_what_is_not_a_date() -> None:
    assert domain.day("2026-12-07", "en") == "Dec 7, 2026"
    assert domain.day("2026-03-01T10:00:00Z", "nl") == "1 mrt 2026"
    assert domain.day(None, "en") == "—"
    assert domain.day("soon", "en") == "soon"


def test_terms_imply_the_due_date() -> None:
    assert domain.due_date(date(2026, 12, 7), 30) == date(2027, 1, 6)
    assert domain.due_date(date(2026, 12, 7), None) is None


def test_line_amounts_round_half_up_and_add_up() -> None:
    lines = [
        domain.LineDraft("1", "a", Decimal("3"), Decimal("0.335"), "USD", "7"),
        domain.LineDraft("2", "b", Decimal("1.5"), Decimal("10"), "USD", None),
    ]
    assert [line.amount for line in lines] == [Decimal("1.01"), Decimal("15.00")]
    assert domain.subtotal(lines) == Decimal("16.01")


def test_what_is_still_to_choose_names_each_line() -> None:
    lines = [
        domain.LineDraft("1", "a", Decimal(1), Decimal(1), "EUR", "7", "TAX"),
        domain.LineDraft("2", "b", Decimal(1), Decimal(1), "EUR", None, None),
    ]
    assert domain.missing_choices(lines, needs_tax_codes=True) == [(1, "item"), (1, "tax_code")]
    assert domain.missing_choices(lines, needs_tax_codes=False) == [(1, "item")]


def test_only_properties_of_a_fitting_type_are_offered() -> None:
    props = [{"name": "a", "type": "string"}, {"name": "b", "type": "number"}]
    assert domain.fitting_properties(["number", "string"], props) == props
    assert domain.fitting_properties(["number"], props) == [props[1]]
    assert domain.fitting_properties([], props) == []


def test_an_owner_is_named_by_its_owner_id_or_by_the_crm_user_it_stands_for() -> None:
    owners = [
        {"id": "900000002", "name": "Ada Lee", "user_id": "62515001"},
        {"id": "900000001", "name": "", "user_id": None},
    ]
    assert domain.owner_name(owners, "id", "900000002") == "Ada Lee"
    assert domain.owner_name(owners, "user_id", 62515001) == "Ada Lee"
    # An owner id is not a user id, and no name is no name.
    assert domain.owner_name(owners, "user_id", "900000002") is None
    assert domain.owner_name(owners, "id", "900000001") is None
    assert domain.owner_name(owners, "user_id", None) is None
    assert domain.owner_name([], "id", "900000002") is None


def test_approvals_and_reminders_are_offered_where_a_company_is_on_advanced_or_not_known() -> None:
    assert domain.shows_advanced(("62515",), "62515")
    assert not domain.shows_advanced(("99999",), "62515")
    assert not domain.shows_advanced((), "62515")
    assert domain.shows_advanced(None, "62515")  # not said: offered, the pages explain
