"""Auto-draft rules: a deal entering a rule's stage requests one draft, never two for the same
deal. The webhook's change fires the rule; a periodic sweep of each rule's stage finds the
deals whose webhook was lost and sends them down the same path. The request made is an
ordinary `crm.invoice-requested` (`requests.py` drafts it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dealbooks_contracts import (
    CrmObjectChanged,
    Envelope,
    InvoiceRequested,
    InvoiceRequestOrigin,
    Tenant,
)
from dealbooks_crm import Filter, FilterGroup, SearchRequest
from dealbooks_kit import (
    Origin,
    PermanentError,
    TenantPass,
    decide,
    each_tenant,
    get_logger,
)

from invoice_builder import domain
from invoice_builder.crm_reads import CrmReads
from invoice_builder.customers import Customers
from invoice_builder.deps import SOURCE, Deps
from invoice_builder.domain import AutoDraftRule, Rejection
from invoice_builder.store import AUTO_DRAFTS

# How far back of its last pass the stage sweep searches (CRM search lags writes).
SWEEP_OVERLAP = timedelta(minutes=2)
log = get_logger(__name__)


@dataclass
class AutoDrafts:
    deps: Deps
    crm_reads: CrmReads
    customers: Customers

    async def on_crm_object_changed(self, event: Envelope[CrmObjectChanged]) -> None:
        """A deal entering a rule's stage requests one draft; never two for the same deal."""
        change = event.data
        portal_id = event.tenant.portal_id
        store = self.deps.store
        for rule in await store.rules_of(portal_id):
            if not domain.rule_fires(rule, change):
                continue
            claim = await store.claim_auto_draft(portal_id, change.object_id, rule.rule_id)
            if claim.get("status") != "pending":
                await store.relay_left(AUTO_DRAFTS, claim)
                return
            requested = await self.request_of(rule, change.object_id)
            await self.deps.record(
                f"deal:{portal_id}:{change.object_id}",
                event,
                "auto-draft.requested",
                {"rule_id": rule.rule_id, "request_id": str(requested.request_id)},
                related=[f"request:{requested.request_id}"],
            )
            await store.finish(
                AUTO_DRAFTS,
                claim["_id"],
                {"status": "requested", "request_id": str(requested.request_id)},
                [
                    Envelope.build(
                        requested,
                        source=SOURCE,
                        tenant=Tenant(portal_id=portal_id, account_id=rule.realm_id),
                        caused_by=None,
                        correlation_id=event.correlation_id,
                    )
                ],
            )
            return

    async def request_of(self, rule: AutoDraftRule, deal_id: str) -> InvoiceRequested:
        """The request an auto-draft rule makes: the deal's line items, its party as customer."""
        account = await self.deps.store.account(rule.realm_id)
        if account is None:
            raise PermanentError(f"auto-draft rule {rule.rule_id}: account {rule.realm_id} unknown")
        currency = account.home_currency
        items = await self.crm_reads.lines(rule.portal_id, "deals", deal_id, currency)
        links = await self.deps.store.product_links(rule.portal_id, rule.realm_id)
        lines = domain.lines_from_crm(
            items, links, rule.chosen_items, default_tax_code=rule.default_tax_code
        )
        if isinstance(lines, Rejection):
            raise PermanentError(f"auto-draft rule {rule.rule_id}, deal {deal_id}: {lines.message}")
        party = await self.crm_reads.party(rule.portal_id, "deals", deal_id)
        customer = await self.customers.choice(rule.realm_id, party)
        return InvoiceRequested(
            request_id=domain.auto_draft_request_id(rule.portal_id, deal_id),
            deal_id=deal_id,
            origin=InvoiceRequestOrigin.AUTO_DRAFT_RULE,
            customer=customer,
            lines=lines,
            terms_id=rule.terms_id,
            rule_id=rule.rule_id,
        )

    # ------------------------------------------------------------------ the stage sweep

    async def sweep_rule_stages(self) -> TenantPass:
        """The auto-draft rules' safety net: HubSpot does not send a lost webhook again, so a
        deal whose move into a rule's stage the gateway never heard of would never be drafted.
        Per portal (a failing one is skipped and reported), each rule's stage is searched for
        deals changed since the last pass; one that entered the stage while the rule was on and
        has no auto-draft yet goes through the webhook's own path, so whichever comes first
        drafts it, once."""
        portals = await self.deps.store.portals_with_rules()
        return await each_tenant("auto-draft-sweep", portals, self._sweep_portal, kind="portal")

    async def _sweep_portal(self, portal_id: str) -> int:
        found = 0
        store = self.deps.store
        for rule in await store.rules_of(portal_id):
            if not rule.enabled or rule.active_since is None:
                continue
            started = self.deps.now()
            since = await store.swept_until(portal_id, rule.rule_id) or rule.active_since
            since -= SWEEP_OVERLAP  # search lags writes by a few seconds
            for deal_id in await self._deals_in_stage(portal_id, rule.deal_stage, since):
                if await store.auto_draft_of(portal_id, deal_id) is not None:
                    continue
                entered = await self._entered(portal_id, deal_id, rule.deal_stage)
                if entered is None or entered < rule.active_since:
                    continue
                if await self._draft_swept(portal_id, deal_id, rule, entered):
                    found += 1
            await store.mark_swept(portal_id, rule.rule_id, started)
        return found

    async def _draft_swept(
        self, portal_id: str, deal_id: str, rule: AutoDraftRule, entered: datetime
    ) -> bool:
        """A deal the sweep found goes through the webhook's path; False when it failed."""
        cause = Envelope.build(
            domain.stage_entered(rule, deal_id, entered),
            source=SOURCE,
            tenant=Tenant(portal_id=portal_id),
            correlation_id=f"stage-sweep:{portal_id}:{deal_id}",
        )
        log.info("deal found in a rule's stage without its webhook", deal_id=deal_id)
        try:
            await self.on_crm_object_changed(cause)
        except Exception as exc:
            # As the webhook's consumer would: this deal fails, the others go on.
            failed = decide(exc, Origin.SYSTEM)
            log.warning(
                "stage sweep could not draft a deal",
                deal_id=deal_id,
                failure=failed.failure.value,
                reason=failed.reason,
            )
            return False
        return True

    async def _deals_in_stage(self, portal_id: str, stage: str, since: datetime) -> list[str]:
        request = SearchRequest(
            filter_groups=[
                FilterGroup(
                    filters=[
                        Filter(property_name="dealstage", operator="EQ", value=stage),
                        Filter(
                            property_name="hs_lastmodifieddate",
                            operator="GTE",
                            value=str(int(since.timestamp() * 1000)),
                        ),
                    ]
                )
            ],
            properties=["dealstage"],
            limit=100,
        )
        crm = self.deps.crm.portal(portal_id)
        return [deal.id async for deal in crm.search_all("deals", request)]

    async def _entered(self, portal_id: str, deal_id: str, stage: str) -> datetime | None:
        """When the deal last entered `stage`, from the stage's history (None: it is not there)."""
        deal = await self.deps.crm.portal(portal_id).get(
            "deals", deal_id, properties=["dealstage"], properties_with_history=["dealstage"]
        )
        if deal.get("dealstage") != stage:
            return None
        history = (deal.properties_with_history or {}).get("dealstage") or []
        moments = [h.timestamp for h in history if h.value == stage and h.timestamp]
        return max(moments) if moments else None
