"""Property values are strings on the wire; money never passes through float."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from dealbooks_crm import to_decimal, to_property_value


def test_decimal_keeps_its_exact_digits() -> None:
    assert to_property_value(Decimal("1500.10")) == "1500.10"
    assert to_decimal("1500.10") == Decimal("1500.10")


def test_float_is_refused() -> None:
    with pytest.raises(TypeError):
        to_property_value(0.1)  # type: ignore[arg-type]


def test_dates_and_datetimes_render_as_hubspot_stores_them() -> None:
    assert to_property_value(date(2026, 10, 31)) == "2026-10-31"
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2026, 9, 30, 14, 0, 0, 123456, tzinfo=plus_two)
    assert to_property_value(moment) == "2026-09-30T12:00:00.123Z"
    assert to_property_value(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000Z"


def test_none_clears_and_bools_are_lower_case() -> None:
    assert to_property_value(None) == ""
    assert to_property_value(True) == "true"
