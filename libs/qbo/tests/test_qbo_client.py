"""Behaviour of the QBO client over real HTTP against the sandbox."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from dealbooks_http import RetryPolicy, StaticTokenProvider
from dealbooks_infra.testing import qbo_faults
from dealbooks_qbo import (
    AmountMismatch,
    AuthExpired,
    AuthRevoked,
    BatchOperation,
    BusinessRuleViolation,
    CompanyInfo,
    Customer,
    CustomTxnNumbersRequired,
    Deleted,
    DuplicateDocNumber,
    DuplicateName,
    Forbidden,
    IntuitOAuth,
    InvalidQuery,
    InvalidTaxCode,
    Invoice,
    InvoiceLine,
    Item,
    NotFound,
    OAuthEndpoints,
    Payment,
    QboClient,
    QboCompany,
    Ref,
    RefreshingTokenProvider,
    SalesItemDetail,
    ServerError,
    StaleObject,
    Throttled,
    TokenSet,
)
from qbo_sandbox.pytest_plugin import SandboxCompany, SandboxHandle

FAST_RETRY = RetryPolicy(
    attempts=6, timeout=30.0, wait_initial=0.05, wait_max=1.0, wait_jitter=0.05
)


def invoice_body(
    amount: str = "100.00", customer: str = "1", item: str = "1", **extra: object
) -> dict:
    return {
        "CustomerRef": {"value": customer},
        "Line": [
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": Decimal(amount),
                "SalesItemLineDetail": {"ItemRef": {"value": item}},
            }
        ],
        **extra,
    }


async def test_invoice_create_adds_subtotal_numbers_lines_and_derives_due_date(company: QboCompany):
    invoice = await company.create(Invoice, invoice_body("250.00", TxnDate="2026-03-02"))

    assert invoice.Id and invoice.SyncToken == "0"
    assert invoice.DocNumber and invoice.DocNumber.isdigit()
    assert invoice.TotalAmt == invoice.Balance == Decimal("250.00")
    assert [ln.DetailType for ln in invoice.Line] == ["SalesItemLineDetail", "SubTotalLineDetail"]
    assert invoice.Line[0].LineNum == 1 and invoice.Line[0].Id == "1"
    assert invoice.Line[0].SalesItemLineDetail.TaxCodeRef.value == "NON"
    assert str(invoice.DueDate) == "2026-04-01"  # Net 30 default terms
    assert invoice.EmailStatus == "NotSet"
    assert invoice.CustomerRef.name == "Amy's Bird Sanctuary"


async def test_typed_invoice_model_round_trips_with_exact_decimals(company: QboCompany):
    draft = Invoice(
        CustomerRef=Ref(value="2"),
        DocNumber="CRM-7",
        PrivateNote="crm-deal:7",
        Line=[
            InvoiceLine(
                DetailType="SalesItemLineDetail",
                Amount=Decimal("12.34"),
                Description="Onboarding package",
                SalesItemLineDetail=SalesItemDetail(
                    ItemRef=Ref(value="2"), Qty=Decimal("2"), UnitPrice=Decimal("6.17")
                ),
            )
        ],
    )
    invoice = await company.create(Invoice, draft)
    assert invoice.TotalAmt == Decimal("12.34") and invoice.DocNumber == "CRM-7"
    assert invoice.Line[0].SalesItemLineDetail.UnitPrice == Decimal("6.17")


async def test_same_idempotency_key_twice_creates_one_invoice(company: QboCompany):
    before = await company.count("Invoice")
    first = await company.create(Invoice, invoice_body(), idempotency_key="deal-42:invoice")
    again = await company.create(Invoice, invoice_body(), idempotency_key="deal-42:invoice")

    assert again.Id == first.Id
    assert await company.count("Invoice") == before + 1


async def test_different_idempotency_keys_create_two_invoices(company: QboCompany):
    a = await company.create(Invoice, invoice_body(), idempotency_key="a")
    b = await company.create(Invoice, invoice_body(), idempotency_key="b")
    assert a.Id != b.Id


async def test_sparse_update_changes_only_sent_fields_and_bumps_sync_token(company: QboCompany):
    invoice = await company.create(Invoice, invoice_body(PrivateNote="crm-deal:1"))
    updated = await company.update(
        Invoice,
        {"Id": invoice.Id, "SyncToken": invoice.SyncToken, "CustomerMemo": {"value": "Thanks"}},
    )
    assert updated.SyncToken == "1"
    assert updated.PrivateNote == "crm-deal:1"
    assert updated.CustomerMemo.value == "Thanks"


async def test_update_with_old_sync_token_raises_stale_object(company: QboCompany):
    invoice = await company.create(Invoice, invoice_body())
    await company.update(Invoice, {"Id": invoice.Id, "SyncToken": "0", "PrivateNote": "one"})
    with pytest.raises(StaleObject) as err:
        await company.update(Invoice, {"Id": invoice.Id, "SyncToken": "0", "PrivateNote": "two"})
    assert err.value.code == "5010" and err.value.status == 400


async def test_full_update_replaces_lines_and_recomputes_totals(company: QboCompany):
    invoice = await company.create(Invoice, invoice_body("100.00"))
    body = invoice_body("40.00", Id=invoice.Id, SyncToken=invoice.SyncToken)
    body["Line"].append(
        {
            "DetailType": "SalesItemLineDetail",
            "Amount": Decimal("60.00"),
            "SalesItemLineDetail": {
                "ItemRef": {"value": "2"},
                "Qty": 2,
                "UnitPrice": Decimal("30"),
            },
        }
    )
    updated = await company.update(Invoice, body, sparse=False)
    assert updated.TotalAmt == Decimal("100.00")
    assert len([ln for ln in updated.Line if ln.DetailType == "SalesItemLineDetail"]) == 2


async def test_void_zeroes_amounts_and_marks_voided(company: QboCompany):
    invoice = await company.create(Invoice, invoice_body("80.00"))
    voided = await company.void_invoice(invoice.Id, invoice.SyncToken)
    assert voided.TotalAmt == voided.Balance == Decimal("0")
    assert voided.PrivateNote == "Voided"
    assert voided.SyncToken == "1"
    assert voided.DocNumber == invoice.DocNumber


async def test_deleted_invoice_is_a_tombstone_and_reads_raise_not_found(company: QboCompany):
    invoice = await company.create(Invoice, invoice_body())
    gone = await company.delete(Invoice, invoice.Id, invoice.SyncToken)
    assert isinstance(gone, Deleted) and gone.status == "Deleted" and gone.Id == invoice.Id
    with pytest.raises(NotFound) as err:
        await company.read(Invoice, invoice.Id)
    assert "deleted" in err.value.detail


async def test_send_invoice_records_email_delivery(company: QboCompany):
    invoice = await company.create(Invoice, invoice_body())
    sent = await company.send_invoice(invoice.Id, send_to="ap@acme.example")
    assert sent.EmailStatus == "EmailSent"
    assert sent.DeliveryInfo.DeliveryType == "Email" and sent.DeliveryInfo.DeliveryTime
    assert sent.BillEmail.Address == "ap@acme.example"


async def test_payment_reduces_balance_links_back_and_moves_sync_token(company: QboCompany):
    invoice = await company.create(Invoice, invoice_body("459.00"))
    payment = await company.create(
        Payment,
        {
            "CustomerRef": {"value": "1"},
            "TotalAmt": Decimal("220.00"),
            "Line": [
                {
                    "Amount": Decimal("220.00"),
                    "LinkedTxn": [{"TxnId": invoice.Id, "TxnType": "Invoice"}],
                }
            ],
        },
    )
    assert payment.applied_to() == {invoice.Id: Decimal("220.00")}
    after = await company.read(Invoice, invoice.Id)
    assert after.Balance == Decimal("239.00") and after.TotalAmt == Decimal("459.00")
    assert after.payment_ids() == [payment.Id]
    assert after.SyncToken == "1"

    voided = await company.void_payment(payment.Id, payment.SyncToken)
    assert voided.TotalAmt == Decimal("0")
    assert (await company.read(Invoice, invoice.Id)).Balance == Decimal("459.00")


async def test_payment_recorded_in_qbo_ui_is_visible_to_client(
    qbo_sandbox: SandboxHandle, qbo_company, company
):
    invoice = await company.create(Invoice, invoice_body("100.00"))
    qbo_sandbox.record_payment(qbo_company.realm_id, invoice.Id, "100.00")
    paid = await company.read(Invoice, invoice.Id)
    assert paid.Balance == Decimal("0") and paid.TotalAmt == Decimal("100.00")


async def test_duplicate_display_name_raises_duplicate_name(company: QboCompany):
    await company.create(Customer, {"DisplayName": "Acme Rockets"})
    with pytest.raises(DuplicateName) as err:
        await company.create(Customer, {"DisplayName": "Acme Rockets"})
    assert err.value.code == "6240"


async def test_inactivating_customer_appends_deleted_and_frees_the_name(company: QboCompany):
    customer = await company.create(Customer, {"DisplayName": "Thrifty Meats"})
    gone = await company.inactivate(Customer, customer.Id, customer.SyncToken)
    assert gone.Active is False and gone.DisplayName == "Thrifty Meats (deleted)"
    again = await company.create(Customer, {"DisplayName": "Thrifty Meats"})
    assert again.Id != customer.Id
    active = await company.query_all("SELECT * FROM Customer WHERE DisplayName LIKE 'Thrifty%'")
    assert [c.Id for c in active] == [again.Id]
    every = await company.query_all(
        "SELECT * FROM Customer WHERE Active IN (true, false) AND DisplayName LIKE 'Thrifty%'"
    )
    assert len(every) == 2


async def test_item_inactivation_and_duplicate_item_name(company: QboCompany):
    item = await company.create(
        Item, {"Name": "Widget", "Type": "Service", "IncomeAccountRef": {"value": "79"}}
    )
    with pytest.raises(DuplicateName):
        await company.create(
            Item, {"Name": "Widget", "Type": "Service", "IncomeAccountRef": {"value": "79"}}
        )
    gone = await company.inactivate(Item, item.Id, item.SyncToken)
    assert gone.Name == "Widget (deleted)" and gone.Active is False


async def test_custom_transaction_numbers_require_a_unique_doc_number(
    qbo_sandbox: SandboxHandle, qbo_company: SandboxCompany, company: QboCompany
):
    qbo_sandbox.set_preferences(qbo_company.realm_id, custom_txn_numbers=True)
    assert (await company.preferences()).custom_txn_numbers
    with pytest.raises(CustomTxnNumbersRequired):
        await company.create(Invoice, invoice_body())
    first = await company.create(Invoice, invoice_body(DocNumber="CRM-10042"))
    assert first.DocNumber == "CRM-10042"
    with pytest.raises(DuplicateDocNumber) as err:
        await company.create(Invoice, invoice_body(DocNumber="CRM-10042"))
    assert err.value.code == "6140"
    auto = await company.create(Invoice, invoice_body(DocNumber="AUTO_GENERATE"))
    assert auto.DocNumber and auto.DocNumber.isdigit()


async def test_us_lines_accept_only_tax_or_non(company: QboCompany):
    body = invoice_body()
    body["Line"][0]["SalesItemLineDetail"]["TaxCodeRef"] = {"value": "7"}
    with pytest.raises(InvalidTaxCode):
        await company.create(Invoice, body)


async def test_amount_must_equal_qty_times_unit_price(company: QboCompany):
    body = invoice_body("100.00")
    body["Line"][0]["SalesItemLineDetail"].update({"Qty": 3, "UnitPrice": Decimal("30")})
    with pytest.raises(AmountMismatch):
        await company.create(Invoice, body)


async def test_non_us_invoice_needs_a_tax_code_on_every_line(qbo_sandbox: SandboxHandle):
    gb = qbo_sandbox.create_company("GB")
    async with QboClient(
        qbo_sandbox.base_url, StaticTokenProvider({gb.realm_id: gb.access_token})
    ) as qbo:
        uk = qbo.company(gb.realm_id)
        with pytest.raises(BusinessRuleViolation) as err:
            await uk.create(Invoice, invoice_body("1000.00"))
        assert "VAT rate" in err.value.detail
        body = invoice_body("1000.00")
        body["Line"][0]["SalesItemLineDetail"]["TaxCodeRef"] = {"value": "2"}
        invoice = await uk.create(Invoice, body)
        assert invoice.TxnTaxDetail.TotalTax == Decimal("200.00")
        assert invoice.TotalAmt == Decimal("1200.00") == invoice.Balance
        assert invoice.CurrencyRef.value == "GBP"
        info = await uk.company_info()
        assert info.Country == "GB" and not info.is_us


async def test_company_info_and_preferences_describe_the_company(company: QboCompany):
    info = await company.company_info()
    prefs = await company.preferences()
    assert isinstance(info, CompanyInfo) and info.is_us
    assert prefs.CurrencyPrefs.HomeCurrency.value == "USD"
    assert prefs.CurrencyPrefs.MultiCurrencyEnabled is False
    assert prefs.custom_txn_numbers is False


async def test_query_iterates_every_page_until_a_short_page(company: QboCompany):
    ops = [
        BatchOperation("create", "Customer", {"DisplayName": f"Pager {i:02d}"}) for i in range(7)
    ]
    assert all(r.ok for r in await company.batch(ops))
    rows = await company.query_all(
        "SELECT * FROM Customer WHERE DisplayName LIKE 'Pager%'", page_size=3
    )
    assert [c.DisplayName for c in rows] == [f"Pager {i:02d}" for i in range(7)]
    assert await company.count("Customer", "DisplayName LIKE 'Pager%'") == 7


async def test_query_with_no_rows_returns_an_empty_page(company: QboCompany):
    page = await company.query_page("SELECT * FROM Invoice WHERE DocNumber = 'nope'")
    assert page.rows == [] and page.entity is None


async def test_query_filters_by_reference_in_and_escaped_quote(company: QboCompany):
    a = await company.create(Invoice, invoice_body("10.00", customer="1"))
    await company.create(Invoice, invoice_body("20.00", customer="2"))
    rows = await company.query_all(
        f"SELECT * FROM Invoice WHERE CustomerRef = '1' AND Id IN ('{a.Id}', '999')"  # noqa: S608
    )
    assert [r.Id for r in rows] == [a.Id]
    amy = await company.query_all(
        "SELECT * FROM Customer WHERE DisplayName = 'Amy\\'s Bird Sanctuary'"
    )
    assert len(amy) == 1


async def test_bad_queries_raise_invalid_query(company: QboCompany):
    with pytest.raises(InvalidQuery) as err:
        await company.query_page("SELECT * FROM Custmoer")
    assert "invalid context declaration" in err.value.detail
    with pytest.raises(InvalidQuery) as err:
        await company.query_page("SELECT * FROM Customer MAXRESULTS 1500")
    assert "Max allowed value is 1000" in err.value.detail


async def test_batch_returns_results_in_order_with_typed_faults(company: QboCompany):
    invoice = await company.create(Invoice, invoice_body())
    ops = [
        BatchOperation("create", "Customer", {"DisplayName": "Boraski Family Store"}),
        BatchOperation("delete", "Invoice", {"Id": "99999", "SyncToken": "0"}),
        BatchOperation(
            "update",
            "Invoice",
            {"Id": invoice.Id, "SyncToken": "7", "sparse": True, "PrivateNote": "x"},
        ),
        BatchOperation("query", query="SELECT * FROM Invoice"),
    ] + [BatchOperation("create", "Customer", {"DisplayName": f"Bulk {i}"}) for i in range(30)]
    results = await company.batch(ops)
    assert len(results) == 34
    assert isinstance(results[0].entity, Customer)
    assert isinstance(results[1].error, NotFound)
    assert isinstance(results[2].error, StaleObject)
    assert results[3].page is not None and results[3].page.entity == "Invoice"
    assert all(r.ok for r in results[4:])


async def test_batch_with_same_idempotency_key_is_replayed(company: QboCompany):
    ops = [BatchOperation("create", "Customer", {"DisplayName": "Replay Once"})]
    first = await company.batch(ops, idempotency_key="sync-1")
    second = await company.batch(ops, idempotency_key="sync-1")
    assert first[0].entity.Id == second[0].entity.Id


async def test_cdc_returns_changes_and_tombstones(company: QboCompany, qbo_sandbox: SandboxHandle):
    start = (await company.company_info()).MetaData.LastUpdatedTime - timedelta(seconds=1)
    kept = await company.create(Invoice, invoice_body())
    dropped = await company.create(Invoice, invoice_body())
    await company.delete(Invoice, dropped.Id, dropped.SyncToken)
    result = await company.cdc(["Invoice", "Payment"], start)
    by_id = {r.Id: r for r in result.changes["Invoice"]}
    assert isinstance(by_id[kept.Id], Invoice)
    assert isinstance(by_id[dropped.Id], Deleted)
    assert "Payment" not in result.changes
    with pytest.raises(InvalidQuery):
        await company.cdc(["Invoice"], start - timedelta(days=31))


async def test_expired_access_token_is_refreshed_once_and_the_call_retried(
    qbo_sandbox: SandboxHandle, qbo_company: SandboxCompany
):
    oauth = IntuitOAuth("sandbox-client", "sandbox-secret", OAuthEndpoints.at(qbo_sandbox.base_url))
    # Far-future obtained_at: the provider trusts the token until QBO says 401.
    tokens = TokenSet(
        access_token=qbo_company.access_token,
        refresh_token=qbo_company.refresh_token,
        obtained_at=1e12,
    )
    provider = RefreshingTokenProvider(oauth, {qbo_company.realm_id: tokens})
    async with QboClient(qbo_sandbox.base_url, provider, retry=FAST_RETRY) as qbo:
        company = qbo.company(qbo_company.realm_id)
        qbo_sandbox.advance_clock(seconds=3601)
        info = await company.company_info()
        assert info.CompanyName
        rotated = provider.current(qbo_company.realm_id)
        assert rotated.access_token != qbo_company.access_token
        assert rotated.refresh_token != qbo_company.refresh_token
    # The superseded refresh token works during the 24-hour grace, then stops.
    assert (await oauth.refresh(qbo_company.refresh_token)).access_token
    qbo_sandbox.advance_clock(days=1.01)
    with pytest.raises(AuthRevoked) as err:
        await oauth.refresh(qbo_company.refresh_token)
    assert err.value.code == "invalid_grant"
    await oauth.http.aclose()


async def test_expired_token_without_refresh_raises_auth_expired(
    qbo_sandbox: SandboxHandle, qbo_company
):
    async with QboClient(
        qbo_sandbox.base_url, StaticTokenProvider({qbo_company.realm_id: qbo_company.access_token})
    ) as qbo:
        qbo_sandbox.advance_clock(seconds=3601)
        with pytest.raises(AuthExpired) as err:
            await qbo.company(qbo_company.realm_id).company_info()
    assert err.value.status == 401 and err.value.code == "3200"


async def test_revoked_grant_raises_auth_revoked(
    qbo_sandbox: SandboxHandle, qbo_company: SandboxCompany
):
    oauth = IntuitOAuth("sandbox-client", "sandbox-secret", OAuthEndpoints.at(qbo_sandbox.base_url))
    await oauth.revoke(qbo_company.refresh_token)
    async with QboClient(
        qbo_sandbox.base_url, StaticTokenProvider({qbo_company.realm_id: qbo_company.access_token})
    ) as qbo:
        with pytest.raises(AuthRevoked):
            await qbo.company(qbo_company.realm_id).company_info()
    with pytest.raises(AuthRevoked):
        await oauth.refresh(qbo_company.refresh_token)
    await oauth.http.aclose()


async def test_authorization_code_flow_yields_tokens_for_the_realm(
    qbo_sandbox: SandboxHandle, qbo_company
):
    oauth = IntuitOAuth("sandbox-client", "sandbox-secret", OAuthEndpoints.at(qbo_sandbox.base_url))
    url = (
        oauth.authorization_url("http://localhost/callback", state="s-1")
        + f"&sandbox_realm={qbo_company.realm_id}"
    )
    async with httpx.AsyncClient() as http:
        redirect = await http.get(url)
    assert redirect.status_code == 302
    query = parse_qs(urlparse(redirect.headers["location"]).query)
    assert query["state"] == ["s-1"] and query["realmId"] == [qbo_company.realm_id]
    tokens = await oauth.exchange_code(query["code"][0], "http://localhost/callback")
    assert tokens.expires_in == 3600 and tokens.refresh_token.startswith("RT1-")
    with pytest.raises(AuthRevoked):
        await oauth.exchange_code(query["code"][0], "http://localhost/callback")
    await oauth.http.aclose()


async def test_sandbox_token_on_production_company_is_forbidden(
    qbo_sandbox: SandboxHandle, qbo_company
):
    prod = qbo_sandbox.create_company("US", environment="production")
    async with QboClient(
        qbo_sandbox.base_url, StaticTokenProvider({prod.realm_id: qbo_company.access_token})
    ) as qbo:
        with pytest.raises(Forbidden) as err:
            await qbo.company(prod.realm_id).company_info()
    assert err.value.status == 403 and err.value.code == "3100"


async def test_429_storm_completes_without_exceeding_limits(
    qbo_sandbox: SandboxHandle, qbo_company: SandboxCompany, company: QboCompany
):
    with qbo_faults(qbo_sandbox, realm_id=qbo_company.realm_id, throttle_burst=12, latency_ms=1500):
        created = await asyncio.gather(
            *(
                company.create(Invoice, invoice_body(), idempotency_key=f"storm-{i}")
                for i in range(24)
            )
        )
    assert len({inv.Id for inv in created}) == 24
    stats = qbo_sandbox.stats(qbo_company.realm_id)
    assert stats["injected_throttles"] == 12
    assert stats["throttled"] == 0
    assert stats["max_in_flight"] <= 10 and stats["max_per_second"] <= 10


async def test_persistent_throttle_surfaces_as_throttled_even_as_xml(
    qbo_sandbox: SandboxHandle, qbo_company: SandboxCompany, client: QboClient
):
    client.retry = RetryPolicy(attempts=2, wait_initial=0.01, wait_max=0.05)
    with (
        qbo_faults(
            qbo_sandbox,
            realm_id=qbo_company.realm_id,
            throttle_burst=5,
            throttle_format="xml",
            retry_after=0,
        ),
        pytest.raises(Throttled) as err,
    ):
        await client.company(qbo_company.realm_id).company_info()
    assert err.value.status == 429 and err.value.code == "3001"


async def test_server_errors_are_retried_then_raised(
    qbo_sandbox: SandboxHandle, qbo_company: SandboxCompany, client: QboClient
):
    client.retry = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05)
    with (
        qbo_faults(qbo_sandbox, realm_id=qbo_company.realm_id, error_rate=1.0, error_status=503),
        pytest.raises(ServerError) as err,
    ):
        await client.company(qbo_company.realm_id).company_info()
    assert err.value.status == 503
    assert qbo_sandbox.stats(qbo_company.realm_id)["requests"] == 0


async def test_timeouts_are_retried_and_the_write_lands_once(
    qbo_sandbox: SandboxHandle, qbo_company: SandboxCompany
):
    tokens = StaticTokenProvider({qbo_company.realm_id: qbo_company.access_token})
    async with QboClient(qbo_sandbox.base_url, tokens, retry=FAST_RETRY, timeout=0.5) as qbo:
        company = qbo.company(qbo_company.realm_id)
        with qbo_faults(qbo_sandbox, realm_id=qbo_company.realm_id, timeout_burst=1):
            invoice = await company.create(Invoice, invoice_body(), idempotency_key="slow-1")
        # The first attempt was written but its answer timed out; the retry got the replay.
        assert await company.count("Invoice") == 1
        assert (await company.read(Invoice, invoice.Id)).SyncToken == "0"
