"""Behaviour of the CRM client over real HTTP against the CRM sandbox subprocess."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from crm_sandbox.pytest_plugin import TIME_SCALE
from crm_sandbox.testing import CrmSandbox, SandboxPortal, WebhookReceiver
from dealbooks_crm import (
    AssociationTypes,
    CrmAuthError,
    CrmClient,
    CrmConflict,
    CrmLimits,
    CrmNotFound,
    CrmRateLimited,
    CrmUnavailable,
    CrmValidation,
    Filter,
    FilterGroup,
    InvalidWebhookSignature,
    PortalCrm,
    PropertyDefinition,
    PropertyOption,
    SearchCapExceeded,
    SearchRequest,
    Sort,
    StaleWebhookTimestamp,
    TimelineEvent,
    parse_webhook_events,
    timeline_event_id,
    verify_signature_v3,
)
from dealbooks_http import RetryPolicy, StaticTokenProvider
from dealbooks_infra.testing import crm_fault

SCALE = float(TIME_SCALE)
FAST_RETRY = RetryPolicy(
    attempts=12, timeout=30.0, wait_initial=0.01, wait_max=0.25, wait_jitter=0.02
)


def scaled_limits(per_window: int = 110) -> CrmLimits:
    """The real budgets on the sandbox's sped-up clock."""
    return CrmLimits(
        requests_per_window=per_window,
        window_seconds=10.0 / SCALE,
        search_window_seconds=1.0 / SCALE,
    )


def make_client(
    sandbox: CrmSandbox,
    portal: SandboxPortal,
    *,
    token: str | None = None,
    limits: CrmLimits | None = None,
    path_style: str = "v3",
) -> CrmClient:
    tokens = StaticTokenProvider({portal.key: token or portal.access_token})
    return CrmClient(
        tokens,
        base_url=sandbox.base_url,
        limits=limits or scaled_limits(),
        retry=FAST_RETRY,
        path_style=path_style,  # type: ignore[arg-type]
    )


@pytest.fixture
async def crm(crm_sandbox: CrmSandbox, crm_portal: SandboxPortal) -> AsyncIterator[PortalCrm]:
    async with make_client(crm_sandbox, crm_portal) as client:
        yield client.portal(crm_portal.portal_id)


def calls(sandbox: CrmSandbox, portal: SandboxPortal, route: str) -> int:
    return int(sandbox.counters(portal.portal_id)["byRoute"].get(route, 0))


# ---- objects and upserts ---------------------------------------------------------------------


async def test_upsert_contact_by_email_creates_then_updates_the_same_contact(
    crm: PortalCrm,
) -> None:
    created = await crm.upsert_contact_by_email("Ana@Acme.example", {"firstname": "Ana"})
    updated = await crm.upsert_contact_by_email("ana@acme.example", {"lastname": "Lima"})
    assert created.new is True and updated.new is False
    assert updated.id == created.id
    assert updated.get("firstname") == "Ana" and updated.get("lastname") == "Lima"


async def test_batch_upsert_of_1000_contacts_takes_ten_calls(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm: PortalCrm
) -> None:
    contacts = [(f"c{i}@bulk.example", {"firstname": f"C{i}"}) for i in range(1000)]
    result = await crm.upsert_contacts_by_email(contacts)
    assert len(result.results) == 1000 and not result.errors
    route = "POST /crm/v3/objects/{objectType}/batch/upsert"
    assert calls(crm_sandbox, crm_portal, route) == 10


async def test_upsert_product_by_dealbooks_id_property(crm: PortalCrm) -> None:
    await crm.ensure_property_group("products", "acct_sync", "Accounting sync")
    await crm.ensure_properties(
        "products",
        [
            PropertyDefinition(
                name="acct_product_id",
                label="Accounting id",
                type="string",
                fieldType="text",
                groupName="acct_sync",
                hasUniqueValue=True,
            )
        ],
    )
    first = await crm.upsert_product(
        "acct_product_id", "qbo-7", {"name": "Service", "price": Decimal("600.00")}
    )
    again = await crm.upsert_product("acct_product_id", "qbo-7", {"price": Decimal("650.50")})
    assert again.id == first.id and again.new is False
    assert again.decimal("price") == Decimal("650.50")


async def test_set_deal_properties_renders_money_and_dates_exactly(crm: PortalCrm) -> None:
    await crm.ensure_property_group("deals", "acct_invoicing", "Invoicing")
    await crm.ensure_properties("deals", INVOICE_PROPERTIES)
    deal = await crm.create("deals", {"dealname": "Acme renewal", "amount": Decimal("1500.00")})
    updated = await crm.set_deal_properties(
        deal.id,
        {
            "acct_amount_billed": Decimal("1234.56"),
            "acct_invoice_status": "sent",
            "acct_invoice_due_date": date(2026, 10, 31),
            "acct_last_synced_at": datetime(2026, 9, 30, 12, 0, tzinfo=UTC),
        },
    )
    assert updated.decimal("acct_amount_billed") == Decimal("1234.56")
    assert updated.get("acct_invoice_due_date") == "2026-10-31"
    assert updated.get("acct_last_synced_at") == "2026-09-30T12:00:00.000Z"
    cleared = await crm.set_deal_properties(deal.id, {"acct_invoice_status": None})
    assert cleared.get("acct_invoice_status") is None


async def test_batch_update_archive_and_read_archived(crm: PortalCrm) -> None:
    created = (await crm.batch_create("products", [{"name": f"P{i}"} for i in range(150)])).results
    updated = await crm.batch_update(
        "products", [(p.id, {"price": Decimal("9.99")}) for p in created]
    )
    assert {p.decimal("price") for p in updated.results} == {Decimal("9.99")}
    await crm.archive("products", created[0].id)
    await crm.batch_archive("products", [p.id for p in created[1:]])
    assert [p async for p in crm.iter_objects("products")] == []
    gone = await crm.get("products", created[0].id, archived=True)
    assert gone.archived and gone.archived_at is not None
    with pytest.raises(CrmNotFound):
        await crm.get("products", created[0].id)


async def test_list_iterates_every_page(crm: PortalCrm) -> None:
    await crm.batch_create("companies", [{"name": f"Co {i}"} for i in range(230)])
    names = [c.get("name") async for c in crm.iter_objects("companies", page_size=100)]
    assert len(names) == 230


async def test_batch_read_reports_missing_ids_without_failing(crm: PortalCrm) -> None:
    deal = await crm.create("deals", {"dealname": "Exists"})
    result = await crm.batch_read("deals", [deal.id, "1"], properties=["dealname"])
    assert [r.id for r in result.results] == [deal.id]
    assert result.errors[0].category == "OBJECT_NOT_FOUND"


async def test_dated_path_style_works_the_same(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    async with make_client(crm_sandbox, crm_portal, path_style="2026-03") as client:
        crm = client.portal(crm_portal.portal_id)
        deal = await crm.create("deals", {"dealname": "Dated"})
        contact = await crm.create("contacts", {"email": "dated@x.example"})
        await crm.associate("deals", deal.id, "contacts", contact.id)
        linked = await crm.associations("deals", deal.id, "contacts")
    assert [a.to_object_id for a in linked] == [contact.id]
    assert calls(crm_sandbox, crm_portal, "POST /crm/v3/objects/{objectType}") == 2


# ---- typed errors ------------------------------------------------------------------------------


async def test_duplicate_contact_raises_conflict_carrying_existing_id(crm: PortalCrm) -> None:
    existing = await crm.create("contacts", {"email": "dup@x.example"})
    with pytest.raises(CrmConflict) as caught:
        await crm.create("contacts", {"email": "dup@x.example"})
    assert caught.value.existing_id == existing.id
    assert caught.value.category == "CONFLICT"


async def test_missing_record_raises_not_found(crm: PortalCrm) -> None:
    with pytest.raises(CrmNotFound):
        await crm.get("deals", "424242")


async def test_invalid_option_raises_validation_with_problems(crm: PortalCrm) -> None:
    deal = await crm.create("deals", {"dealname": "D"})
    with pytest.raises(CrmValidation) as caught:
        await crm.set_deal_properties(deal.id, {"dealstage": "not-a-stage"})
    assert caught.value.problems[0]["code"] == "INVALID_OPTION"


async def test_unknown_token_raises_auth_error(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    async with make_client(crm_sandbox, crm_portal, token="not-a-token") as client:
        with pytest.raises(CrmAuthError) as caught:
            await client.portal(crm_portal.portal_id).get("deals", "1")
    assert caught.value.category == "INVALID_AUTHENTICATION"


async def test_expired_token_is_invalidated_and_replaced_once(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    class Refreshing:
        def __init__(self) -> None:
            self.current = crm_sandbox.issue_token(crm_portal.portal_id)
            self.invalidated: list[str] = []

        async def token(self, key: str) -> str:
            return self.current

        async def invalidate(self, key: str, token: str) -> None:
            self.invalidated.append(token)
            self.current = crm_sandbox.issue_token(crm_portal.portal_id)

    tokens = Refreshing()
    stale = tokens.current
    crm_sandbox.expire_token(stale)
    async with CrmClient(
        tokens, base_url=crm_sandbox.base_url, limits=scaled_limits(), retry=FAST_RETRY
    ) as client:
        details = await client.portal(crm_portal.portal_id).account_details()
    assert details.portal_id == crm_portal.portal_id
    assert tokens.invalidated == [stale]


async def test_a_stale_cached_token_and_then_a_refused_current_one_each_get_their_try(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    # The provider's cache held an older token; the one it holds now was refused too (say,
    # the app was uninstalled): each is reported, and the third, refreshed, one is used.
    issued = [crm_sandbox.issue_token(crm_portal.portal_id) for _ in range(3)]
    for refused in issued[:2]:
        crm_sandbox.expire_token(refused)

    class Provider:
        def __init__(self) -> None:
            self.given = iter(issued)
            self.current = next(self.given)
            self.invalidated: list[str] = []

        async def token(self, key: str) -> str:
            return self.current

        async def invalidate(self, key: str, token: str) -> None:
            self.invalidated.append(token)
            self.current = next(self.given)

    tokens = Provider()
    async with CrmClient(
        tokens, base_url=crm_sandbox.base_url, limits=scaled_limits(), retry=FAST_RETRY
    ) as client:
        details = await client.portal(crm_portal.portal_id).account_details()
    assert details.portal_id == crm_portal.portal_id
    assert tokens.invalidated == issued[:2]


async def test_a_token_refused_twice_is_the_answer(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    refused = crm_sandbox.issue_token(crm_portal.portal_id)
    crm_sandbox.expire_token(refused)

    class Unchanging:
        invalidated = 0

        async def token(self, key: str) -> str:
            return refused

        async def invalidate(self, key: str, token: str) -> None:
            self.invalidated += 1

    tokens = Unchanging()
    async with CrmClient(
        tokens, base_url=crm_sandbox.base_url, limits=scaled_limits(), retry=FAST_RETRY
    ) as client:
        with pytest.raises(CrmAuthError):
            await client.portal(crm_portal.portal_id).account_details()
    assert tokens.invalidated == 1


async def test_daily_limit_raises_rate_limited_without_retrying(
    crm_sandbox: CrmSandbox,
) -> None:
    portal = crm_sandbox.create_portal(dailyLimit=2)
    async with make_client(crm_sandbox, portal) as client:
        crm = client.portal(portal.portal_id)
        await crm.account_details()
        await crm.account_details()
        with pytest.raises(CrmRateLimited) as caught:
            await crm.account_details()
    assert caught.value.policy_name == "DAILY"
    assert crm_sandbox.counters(portal.portal_id)["total"] == 3


async def test_server_errors_are_retried_until_success(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm: PortalCrm
) -> None:
    crm_sandbox.inject_fault("status", status=503, count=2, portal_id=crm_portal.portal_id)
    details = await crm.account_details()
    assert details.company_currency == "USD"
    assert crm_sandbox.counters(crm_portal.portal_id)["total"] == 3


async def test_server_errors_outlasting_retries_raise_unavailable(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm: PortalCrm
) -> None:
    with (
        crm_fault(crm_sandbox, "status", status=502, count=50, portal_id=crm_portal.portal_id),
        pytest.raises(CrmUnavailable) as caught,
    ):
        await crm.account_details()
    assert caught.value.status == 502
    assert crm_sandbox.counters(crm_portal.portal_id)["total"] == FAST_RETRY.attempts


# ---- limits ------------------------------------------------------------------------------------


async def test_429_storm_completes_inside_the_portal_limit(crm_sandbox: CrmSandbox) -> None:
    portal = crm_sandbox.create_portal(limitPer10s=20)
    crm_sandbox.inject_fault("rate_limit", count=15, portal_id=portal.portal_id)
    # Configured a little under the portal's 20: on a 0.2 s window, scheduling jitter on a
    # loaded machine must not be mistaken for the client overrunning its budget.
    async with make_client(crm_sandbox, portal, limits=scaled_limits(18)) as client:
        crm = client.portal(portal.portal_id)
        created = await asyncio.gather(
            *(crm.create("products", {"name": f"Storm {i}"}) for i in range(80))
        )
    assert len({p.id for p in created}) == 80
    counters = crm_sandbox.counters(portal.portal_id)
    assert counters["injectedFaults"] == 15
    assert counters["rateLimited"] == 0  # the client itself never crossed the limit


async def test_a_portal_on_a_lower_tier_gets_its_own_budget(crm_sandbox: CrmSandbox) -> None:
    small = crm_sandbox.create_portal(limitPer10s=10)
    tokens = StaticTokenProvider({small.key: small.access_token})
    async with CrmClient(
        tokens,
        base_url=crm_sandbox.base_url,
        limits=scaled_limits(),
        portal_limits={small.portal_id: scaled_limits(8)},
        retry=RetryPolicy(attempts=1),
    ) as client:
        crm = client.portal(small.portal_id)
        await asyncio.gather(*(crm.account_details() for _ in range(40)))
    assert crm_sandbox.counters(small.portal_id)["rateLimited"] == 0


async def test_search_budget_stays_under_five_per_second(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm: PortalCrm
) -> None:
    await crm.create("deals", {"dealname": "Findable"})
    request = SearchRequest(
        filterGroups=[
            FilterGroup(filters=[Filter(propertyName="dealname", operator="EQ", value="findable")])
        ]
    )
    pages = await asyncio.gather(*(crm.search("deals", request) for _ in range(25)))
    assert all(p.total == 1 for p in pages)
    assert crm_sandbox.counters(crm_portal.portal_id)["rateLimited"] == 0


# ---- search ------------------------------------------------------------------------------------


async def test_search_all_pages_through_sorted_matches(crm: PortalCrm) -> None:
    await crm.batch_create("deals", [{"dealname": f"S{i}", "amount": str(i)} for i in range(450)])
    request = SearchRequest(
        filterGroups=[
            FilterGroup(filters=[Filter(propertyName="amount", operator="GTE", value="100")])
        ],
        sorts=[Sort(propertyName="amount", direction="DESCENDING")],
        properties=["amount"],
        limit=200,
    )
    amounts = [d.decimal("amount") async for d in crm.search_all("deals", request)]
    assert len(amounts) == 350
    assert amounts[0] == Decimal(449) and amounts[-1] == Decimal(100)


async def test_search_all_refuses_more_than_ten_thousand_matches(crm: PortalCrm) -> None:
    await crm.batch_create("products", [{"name": f"P{i}"} for i in range(10_001)])
    with pytest.raises(SearchCapExceeded) as caught:
        async for _ in crm.search_all("products", SearchRequest(limit=200)):
            pass
    assert caught.value.total == 10_001


def test_search_request_refuses_too_many_filters() -> None:
    group = FilterGroup(filters=[Filter(propertyName="amount", operator="HAS_PROPERTY")] * 7)
    with pytest.raises(ValueError, match="per group"):
        SearchRequest(filterGroups=[group]).check_caps()


# ---- properties --------------------------------------------------------------------------------

INVOICE_PROPERTIES = [
    PropertyDefinition(
        name="acct_amount_billed",
        label="Amount billed",
        type="number",
        fieldType="number",
        groupName="acct_invoicing",
        numberDisplayHint="currency",
    ),
    PropertyDefinition(
        name="acct_invoice_status",
        label="Invoice status",
        type="enumeration",
        fieldType="select",
        groupName="acct_invoicing",
        options=[
            PropertyOption(label=label, value=value, displayOrder=n)
            for n, (label, value) in enumerate(
                [
                    ("Draft", "draft"),
                    ("Sent", "sent"),
                    ("Partially paid", "partially_paid"),
                    ("Paid", "paid"),
                ]
            )
        ],
    ),
    PropertyDefinition(
        name="acct_invoice_due_date",
        label="Invoice due date",
        type="date",
        fieldType="date",
        groupName="acct_invoicing",
    ),
    PropertyDefinition(
        name="acct_last_synced_at",
        label="Last synced",
        type="datetime",
        fieldType="date",
        groupName="acct_invoicing",
    ),
]


async def test_ensure_properties_is_idempotent(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm: PortalCrm
) -> None:
    group = await crm.ensure_property_group("deals", "acct_invoicing", "Invoicing")
    again = await crm.ensure_property_group("deals", "acct_invoicing", "Invoicing")
    first = await crm.ensure_properties("deals", INVOICE_PROPERTIES)
    second = await crm.ensure_properties("deals", INVOICE_PROPERTIES)
    assert group.name == again.name == "acct_invoicing"
    assert [p.name for p in first] == [p.name for p in second]
    assert first[1].options[2].value == "partially_paid"
    assert calls(crm_sandbox, crm_portal, "POST /crm/v3/properties/{objectType}/groups") == 1
    assert calls(crm_sandbox, crm_portal, "POST /crm/v3/properties/{objectType}/batch/create") == 1


async def test_property_with_wrong_field_type_is_rejected(crm: PortalCrm) -> None:
    await crm.ensure_property_group("deals", "acct_invoicing", "Invoicing")
    bad = PropertyDefinition(
        name="acct_bad", label="Bad", type="number", fieldType="select", groupName="acct_invoicing"
    )
    with pytest.raises(CrmValidation):
        await crm.ensure_properties("deals", [bad])


# ---- associations and quotes -------------------------------------------------------------------


async def test_associations_single_labelled_batch_and_removal(crm: PortalCrm) -> None:
    deal = await crm.create("deals", {"dealname": "Assoc"})
    company = await crm.create("companies", {"name": "Acme"})
    contacts = (
        await crm.batch_create("contacts", [{"email": f"a{i}@x.example"} for i in range(3)])
    ).results
    await crm.associate(
        "deals", deal.id, "companies", company.id, [AssociationTypes.DEAL_TO_COMPANY_PRIMARY]
    )
    result = await crm.associate_many("deals", "contacts", [(deal.id, c.id) for c in contacts])
    assert not result.errors
    [company_link] = await crm.associations("deals", deal.id, "companies")
    assert company_link.type_ids == {
        AssociationTypes.DEAL_TO_COMPANY_PRIMARY,
        AssociationTypes.DEAL_TO_COMPANY,
    }
    back = await crm.associations("companies", company.id, "deals")
    assert back[0].type_ids == {
        AssociationTypes.COMPANY_TO_DEAL_PRIMARY,
        AssociationTypes.COMPANY_TO_DEAL,
    }
    by_contact = await crm.batch_associations("contacts", "deals", [c.id for c in contacts])
    assert all(rows[0].to_object_id == deal.id for rows in by_contact.values())
    await crm.remove_association("deals", deal.id, "companies", company.id)
    assert await crm.associations("deals", deal.id, "companies") == []


async def test_read_quote_returns_line_items_contacts_company_and_deal(crm: PortalCrm) -> None:
    deal = await crm.create("deals", {"dealname": "Quoted", "amount": Decimal("300.00")})
    contact = await crm.create("contacts", {"email": "buyer@x.example"})
    company = await crm.create("companies", {"name": "Buyer Inc"})
    product = await crm.create("products", {"name": "Widget", "price": Decimal("100.00")})
    quote = await crm.create(
        "quotes",
        {
            "hs_title": "Q1",
            "hs_expiration_date": datetime(2026, 12, 31, tzinfo=UTC),
            "hs_status": "DRAFT",
        },
        associations=[
            (deal.id, AssociationTypes.QUOTE_TO_DEAL),
            (contact.id, AssociationTypes.QUOTE_TO_CONTACT),
            (company.id, AssociationTypes.QUOTE_TO_COMPANY),
        ],
    )
    for quantity in (1, 2):
        await crm.create(
            "line_items",
            {"hs_product_id": product.id, "quantity": quantity},
            associations=[(quote.id, AssociationTypes.LINE_ITEM_TO_QUOTE)],
        )
    await crm.update("quotes", quote.id, {"hs_status": "APPROVAL_NOT_NEEDED"})
    details = await crm.read_quote(quote.id)
    assert details.quote.get("hs_status") == "APPROVAL_NOT_NEEDED"
    assert details.quote.get("hs_locked") == "true"
    assert details.quote.decimal("hs_quote_amount") == Decimal("300.00")
    assert [li.decimal("amount") for li in details.line_items] == [
        Decimal("100.00"),
        Decimal("200.00"),
    ]
    assert details.line_items[0].get("name") == "Widget"
    assert details.deal is not None and details.deal.id == deal.id
    assert [c.id for c in details.contacts] == [contact.id]
    assert [c.id for c in details.companies] == [company.id]


async def test_read_deal_returns_line_items_contacts_and_companies(crm: PortalCrm) -> None:
    contact = await crm.create("contacts", {"email": "payer@x.example", "firstname": "Pat"})
    company = await crm.create("companies", {"name": "Payer Ltd"})
    deal = await crm.create(
        "deals",
        {"dealname": "Direct", "amount": Decimal("150.00")},
        associations=[
            (contact.id, AssociationTypes.DEAL_TO_CONTACT),
            (company.id, AssociationTypes.DEAL_TO_COMPANY_PRIMARY),
        ],
    )
    for name, price in (("Setup", Decimal("100.00")), ("Support", Decimal("50.00"))):
        await crm.create(
            "line_items",
            {"name": name, "quantity": 1, "price": price},
            associations=[(deal.id, AssociationTypes.LINE_ITEM_TO_DEAL)],
        )

    details = await crm.read_deal(deal.id)

    assert details.deal.get("dealname") == "Direct"
    assert [li.get("name") for li in details.line_items] == ["Setup", "Support"]
    assert [li.decimal("price") for li in details.line_items] == [
        Decimal("100.00"),
        Decimal("50.00"),
    ]
    assert [c.get("firstname") for c in details.contacts] == ["Pat"]
    assert [c.get("name") for c in details.companies] == ["Payer Ltd"]


async def test_deal_without_associations_reads_with_empty_lists(crm: PortalCrm) -> None:
    deal = await crm.create("deals", {"dealname": "Bare"})

    details = await crm.read_deal(deal.id)

    assert (details.line_items, details.contacts, details.companies) == ([], [], [])


# ---- tenant isolation --------------------------------------------------------------------------


async def test_portals_cannot_see_each_others_records(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm_other_portal: SandboxPortal
) -> None:
    tokens = StaticTokenProvider(
        {
            crm_portal.key: crm_portal.access_token,
            crm_other_portal.key: crm_other_portal.access_token,
        }
    )
    async with CrmClient(
        tokens, base_url=crm_sandbox.base_url, limits=scaled_limits(), retry=FAST_RETRY
    ) as client:
        mine, theirs = (
            client.portal(crm_portal.portal_id),
            client.portal(crm_other_portal.portal_id),
        )
        deal = await mine.create("deals", {"dealname": "Private deal"})
        with pytest.raises(CrmNotFound):
            await theirs.get("deals", deal.id)
        with pytest.raises(CrmNotFound):
            await theirs.update("deals", deal.id, {"dealname": "hijacked"})
        assert (await theirs.batch_read("deals", [deal.id])).results == []
        request = SearchRequest(query="Private")
        assert (await theirs.search("deals", request)).total == 0
        assert (await mine.search("deals", request)).total == 1
        assert (await theirs.account_details()).company_currency == "EUR"
    assert (
        crm_sandbox.read(crm_portal.portal_id, "deals", deal.id)["properties"]["dealname"]
        == "Private deal"
    )


# ---- timeline events ---------------------------------------------------------------------------

PAYMENT_TEMPLATE = {
    "name": "Client behaviour test payment",
    "objectType": "deals",
    "headerTemplate": "Payment of {{amount}} {{currency}} for {{invoiceNumber}}",
    "tokens": [
        {"name": "invoiceNumber", "label": "Invoice number", "type": "string"},
        {"name": "amount", "label": "Amount", "type": "number"},
        {"name": "currency", "label": "Currency", "type": "string"},
        {"name": "paidAt", "label": "Paid at", "type": "date"},
    ],
}


async def test_same_timeline_event_id_twice_leaves_one_event(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm: PortalCrm
) -> None:
    template = crm_sandbox.add_event_template(PAYMENT_TEMPLATE)
    deal = await crm.create("deals", {"dealname": "Paid deal"})
    event_id = timeline_event_id("pay", "realm-1", "payment-98765")
    assert event_id == timeline_event_id("pay", "realm-1", "payment-98765")
    event = TimelineEvent(
        eventTemplateId=template["id"],
        id=event_id,
        objectId=deal.id,
        tokens={
            "invoiceNumber": "INV-1003",
            "amount": "1500.00",
            "currency": "USD",
            "paidAt": "1790000000000",
        },
        extraData={"allocations": [{"invoice": "INV-1003", "amount": "1500.00"}]},
    )
    first = await crm.create_timeline_event(event)
    await crm.create_timeline_event(event)
    await crm.create_timeline_events([event])
    events = crm_sandbox.timeline_events(crm_portal.portal_id, object_id=deal.id)
    assert first.id == event_id
    assert [e["id"] for e in events] == [event_id]


async def test_timeline_event_with_undeclared_token_is_rejected(
    crm_sandbox: CrmSandbox, crm: PortalCrm
) -> None:
    template = crm_sandbox.add_event_template(PAYMENT_TEMPLATE)
    deal = await crm.create("deals", {"dealname": "D"})
    event = TimelineEvent(
        eventTemplateId=template["id"], id="x-1", objectId=deal.id, tokens={"nope": "1"}
    )
    with pytest.raises(CrmValidation):
        await crm.create_timeline_event(event)


# ---- webhooks: the app's own writes come back, signed -----------------------------------------


async def test_webhook_for_our_own_write_verifies_and_parses(
    crm_sandbox: CrmSandbox,
    crm_portal: SandboxPortal,
    crm_webhook_receiver: WebhookReceiver,
    crm: PortalCrm,
) -> None:
    crm_sandbox.subscribe("deal.propertyChange", "dealstage")
    deal = await crm.create("deals", {"dealname": "Echo"})
    await crm.set_deal_properties(deal.id, {"dealstage": "contractsent"})
    crm_webhook_receiver.wait_for_events(lambda e: e["objectId"] == int(deal.id))
    request = crm_webhook_receiver.requests[0]
    verify_signature_v3(
        client_secret=crm_sandbox.app()["clientSecret"],
        method="POST",
        uri=crm_webhook_receiver.url,
        body=request.body,
        signature=request.headers["X-HubSpot-Signature-v3"],
        timestamp=request.headers["X-HubSpot-Request-Timestamp"],
    )
    secret = crm_sandbox.app()["clientSecret"]
    signature = request.headers["X-HubSpot-Signature-v3"]
    timestamp = request.headers["X-HubSpot-Request-Timestamp"]
    url = crm_webhook_receiver.url
    with pytest.raises(StaleWebhookTimestamp):
        verify_signature_v3(
            client_secret=secret,
            method="POST",
            uri=url,
            body=request.body,
            signature=signature,
            timestamp=timestamp,
            now_ms=int(timestamp) + 300_001,
        )
    with pytest.raises(InvalidWebhookSignature):
        verify_signature_v3(
            client_secret=secret,
            method="POST",
            uri=url,
            body=request.body + b" ",
            signature=signature,
            timestamp=timestamp,
        )
    with pytest.raises(InvalidWebhookSignature):
        verify_signature_v3(
            client_secret=secret + "x",
            method="POST",
            uri=url,
            body=request.body,
            signature=signature,
            timestamp=timestamp,
        )
    [event] = parse_webhook_events(request.body)
    assert event.portal_id == crm_portal.portal_id
    assert event.subscription_type == "deal.propertyChange"
    assert (event.property_name, event.property_value) == ("dealstage", "contractsent")
    assert event.change_source == "INTEGRATION"  # our own write echoed back
