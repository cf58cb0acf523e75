"""What every flow of invoice-builder is given (see handlers.py): the store, the QuickBooks
and CRM clients, the clock and the audit trail, and the one way a flow refuses a request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from dealbooks_contracts import Envelope
from dealbooks_crm import CrmClient
from dealbooks_kit import Audit, Failed, Failure
from dealbooks_kit.periodic import utc_today
from dealbooks_qbo import QboClient

from invoice_builder.domain import Rejection
from invoice_builder.store import Store

SOURCE = "invoice-builder"


def _now() -> datetime:
    return datetime.now(UTC)


def refused(rejection: Rejection, failure: Failure = Failure.INVALID_INPUT) -> Failed:
    """A request cannot be fulfilled for a reason the person must hear, in their words: the
    failure policy rejects it back to them (`Requests.on_request_refused`)."""
    return Failed(rejection.message, failure=failure, detail=rejection)


@dataclass
class Deps:
    """The adapters and the clock the flows share (tests may set `now` and `today`)."""

    store: Store
    qbo: QboClient
    crm: CrmClient
    today: Callable[[], date] = utc_today
    now: Callable[[], datetime] = _now
    # The audit trail of requests and the invoices they made (none: not recorded).
    audit: Audit | None = None

    async def record(
        self,
        subject: str,
        event: Envelope[Any],
        action: str,
        detail: dict[str, Any],
        result: str = "ok",
        related: list[str] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Add a step to the audit trail of `subject` (`kind:id`), caused by `event` (at `at`
        when it happened before this write)."""
        if self.audit is None:
            return
        kind, _, subject_id = subject.partition(":")
        # The deal a request or its invoice belongs to has it in its own trail too.
        deal_id = getattr(event.data, "deal_id", None)
        if related is None:
            related = [f"deal:{event.tenant.portal_id}:{deal_id}"] if deal_id else []
        await self.audit.record(
            kind, subject_id, event.tenant, event, action, detail, result, related=related, at=at
        )
