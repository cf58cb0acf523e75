"""What status-tracker remembers of invoices it saw recorded, to answer echoes without a read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dealbooks_contracts import QboOperation
from status_tracker.handlers import RecentInvoices

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_an_invoice_never_seen_is_not_covered() -> None:
    recent = RecentInvoices()
    assert not recent.covers("r:1", QboOperation.CREATE, T0)
    assert not recent.covers("r:1", QboOperation.UPDATE, T0)


def test_the_create_of_a_recorded_invoice_is_covered_and_only_older_or_equal_updates() -> None:
    recent = RecentInvoices()
    recent.note("r:1", T0)
    assert recent.covers("r:1", QboOperation.CREATE, T0 + timedelta(hours=1))
    assert recent.covers("r:1", QboOperation.UPDATE, T0)
    assert recent.covers("r:1", QboOperation.UPDATE, T0 - timedelta(seconds=1))
    assert not recent.covers("r:1", QboOperation.UPDATE, T0 + timedelta(seconds=1))
    assert not recent.covers("r:1", QboOperation.DELETE, T0 - timedelta(days=1))


def test_the_newest_change_time_seen_is_kept_and_naive_times_are_utc() -> None:
    recent = RecentInvoices()
    recent.note("r:1", T0 + timedelta(minutes=5))
    recent.note("r:1", T0)  # an older read does not lower what is known
    recent.note("r:1", None)
    assert recent.covers("r:1", QboOperation.UPDATE, T0 + timedelta(minutes=5))
    recent.note("r:2", (T0 + timedelta(minutes=1)).replace(tzinfo=None))
    assert recent.covers("r:2", QboOperation.UPDATE, T0 + timedelta(minutes=1))
    assert not recent.covers("r:2", QboOperation.UPDATE, T0 + timedelta(minutes=2))


def test_an_invoice_recorded_without_a_change_time_covers_only_its_create() -> None:
    recent = RecentInvoices()
    recent.note("r:1", None)
    assert recent.covers("r:1", QboOperation.CREATE, T0)
    assert not recent.covers("r:1", QboOperation.UPDATE, T0)


def test_the_oldest_invoices_are_forgotten_past_the_size() -> None:
    recent = RecentInvoices(size=2)
    for n in (1, 2, 3):
        recent.note(f"r:{n}", T0)
    assert not recent.covers("r:1", QboOperation.CREATE, T0)
    assert recent.covers("r:2", QboOperation.CREATE, T0)
    assert recent.covers("r:3", QboOperation.CREATE, T0)
