"""What status-tracker remembers of invoices it saw recorded and of deals it projected, to
answer echoes without a read, and of portals that refused app events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dealbooks_contracts import QboOperation
from status_tracker.crm_entries import AppEventsAccess
from status_tracker.memory import RecentInvoices, ShownDeals

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


def test_a_deal_shows_only_the_invoice_version_it_was_last_projected_from() -> None:
    shown = ShownDeals()
    assert not shown.shows("p:d1", "r:1", 3)
    shown.note("p:d1", "r:1", 3)
    assert shown.shows("p:d1", "r:1", 3)
    assert not shown.shows("p:d1", "r:1", 4)  # the invoice moved on since
    shown.note("p:d1", "r:2", 1)  # projected from another invoice of the deal
    assert not shown.shows("p:d1", "r:1", 3)
    assert shown.shows("p:d1", "r:2", 1)


def test_the_oldest_deals_are_forgotten_past_the_size() -> None:
    shown = ShownDeals(size=2)
    for n in (1, 2, 3):
        shown.note(f"p:d{n}", "r:1", 1)
    assert not shown.shows("p:d1", "r:1", 1)
    assert shown.shows("p:d2", "r:1", 1)
    assert shown.shows("p:d3", "r:1", 1)


def test_a_portal_that_refused_app_events_is_asked_again_after_the_recheck_time() -> None:
    now = [1000.0]
    access = AppEventsAccess(recheck_seconds=60.0, clock=lambda: now[0])
    assert access.allows("62515")
    access.refuse("62515")
    assert not access.allows("62515") and access.allows("62516")
    now[0] += 61.0
    assert access.allows("62515")
