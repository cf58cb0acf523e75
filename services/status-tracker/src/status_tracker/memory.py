"""What this process remembers to save itself a read: small, bounded and only ever a shortcut.

Each map answers one question from what this process itself saw or wrote; forgetting an entry
(the maps are bounded) costs only the read it saved, never a wrong answer.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from dealbooks_contracts import QboOperation

from status_tracker.domain import tells_nothing_new


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # stored in UTC


class RecentInvoices:
    """Invoices this process saw recorded with a stage, each with the newest QuickBooks change
    time it saw recorded: lower bounds on what the store holds (transitions are never removed,
    and a stale snapshot never replaces a newer one), so a notification they already cover is
    answered without a read. Bounded: forgetting one costs only the read it saved."""

    def __init__(self, size: int = 20_000) -> None:
        self._size = size
        self._seen: OrderedDict[str, datetime | None] = OrderedDict()

    def note(self, key: str, last_updated: datetime | None) -> None:
        known = self._seen.pop(key, None)
        if last_updated is not None:
            last_updated = _utc(last_updated)
        if known is not None and (last_updated is None or known > last_updated):
            last_updated = known
        self._seen[key] = last_updated
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)

    def covers(self, key: str, operation: QboOperation, last_updated: datetime) -> bool:
        """Whether a notification of `operation` at `last_updated` tells nothing new."""
        if key not in self._seen:
            return False
        return tells_nothing_new(operation, _utc(last_updated), self._seen[key])


class ShownDeals:
    """The invoice version each deal was last projected from, as this process wrote or found
    it: a deal projected from an invoice version that has not moved since needs no look at
    its stored projection (another invoice's change projects the deal itself). Bounded:
    forgetting one costs only the read it saved."""

    def __init__(self, size: int = 20_000) -> None:
        self._size = size
        self._from: OrderedDict[str, tuple[str, Any]] = OrderedDict()

    def note(self, deal_key: str, invoice_key: str, version: Any) -> None:
        self._from.pop(deal_key, None)
        self._from[deal_key] = (invoice_key, version)
        if len(self._from) > self._size:
            self._from.popitem(last=False)

    def shows(self, deal_key: str, invoice_key: str, version: Any) -> bool:
        return self._from.get(deal_key) == (invoice_key, version)
