"""The envelope: building, chaining, wire round-trips, money as strings, time, ids, keys."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from dealbooks_contracts import (
    CrmChange,
    CrmObjectChanged,
    CrmObjectType,
    Envelope,
    EnvelopeError,
    ExistingCustomer,
    InvoiceDrafted,
    InvoiceLineRequest,
    InvoiceRequested,
    InvoiceRequestOrigin,
    Money,
    NewCustomer,
    QboCustomerRef,
    QboEntityChanged,
    QboOperation,
    Tenant,
    all_specs,
    decode,
    spec_for_model,
    uuid7,
    uuid7_time,
)
from dealbooks_contracts.schemas import schema_for
from pydantic import ValidationError

TENANT = Tenant(portal_id="portal-1", account_id="9130354")


def _drafted(amount: str = "1250.10") -> InvoiceDrafted:
    return InvoiceDrafted(
        request_id=uuid4(),
        deal_id="deal-7",
        qbo_invoice_id="145",
        doc_number="1001",
        customer=QboCustomerRef(qbo_customer_id="58", display_name="Acme Ltd"),
        customer_created=False,
        total=Money(amount=Decimal(amount), currency="GBP"),
        invoice_date=date(2025, 3, 1),
        due_date=date(2025, 3, 31),
    )


def _requested() -> InvoiceRequested:
    return InvoiceRequested(
        request_id=uuid4(),
        deal_id="deal-7",
        origin=InvoiceRequestOrigin.WIZARD,
        customer=NewCustomer(display_name="Acme Ltd (Jane Roe)", email="jane@acme.test"),
        lines=[
            InvoiceLineRequest(
                qbo_item_id="11",
                quantity=Decimal("2.5"),
                unit_price=Money(amount=Decimal("0.10"), currency="GBP"),
                tax_code_id="2",
            )
        ],
    )


def test_build_fills_type_version_id_time_and_starts_a_chain() -> None:
    event = Envelope.build(_drafted(), source="invoice-builder", tenant=TENANT)
    assert (event.type, event.version, event.topic) == ("invoice.drafted", 1, "invoice.drafted.v1")
    assert event.id.version == 7
    assert event.correlation_id == str(event.id)
    assert event.causation_id is None
    assert event.occurred_at.tzinfo is UTC


def test_round_trip_keeps_decimal_money_as_strings() -> None:
    event = Envelope.build(_drafted("1250.10"), source="invoice-builder", tenant=TENANT)
    wire = json.loads(event.to_bytes())
    assert wire["data"]["total"] == {"amount": "1250.10", "currency": "GBP"}
    back = Envelope[InvoiceDrafted].from_bytes(event.to_bytes())
    assert back == event
    assert back.data.total.amount == Decimal("1250.10")
    assert isinstance(back.data.total.amount, Decimal)


def test_nested_decimals_and_unions_round_trip() -> None:
    event = Envelope.build(_requested(), source="invoice-builder", tenant=TENANT)
    wire = json.loads(event.to_bytes())
    line = wire["data"]["lines"][0]
    assert line["quantity"] == "2.5"
    assert line["unit_price"] == {"amount": "0.10", "currency": "GBP"}
    assert wire["data"]["customer"]["kind"] == "new"
    back = decode(event.to_bytes())
    assert back == event
    assert isinstance(back.data, InvoiceRequested)
    assert isinstance(back.data.customer, NewCustomer)


def test_existing_customer_choice_is_decoded_by_its_kind() -> None:
    payload = _requested().model_copy(update={"customer": ExistingCustomer(qbo_customer_id="58")})
    event = Envelope.build(payload, source="invoice-builder", tenant=TENANT)
    back = Envelope[InvoiceRequested].from_bytes(event.to_bytes())
    assert back.data.customer == ExistingCustomer(qbo_customer_id="58")


def test_exponent_decimals_go_on_the_wire_in_fixed_point() -> None:
    money = Money(amount=Decimal("1E+2"), currency="USD")
    assert json.loads(money.model_dump_json()) == {"amount": "100", "currency": "USD"}


def test_float_money_is_refused() -> None:
    with pytest.raises(ValidationError, match="never a float"):
        Money(amount=12.5, currency="USD")
    with pytest.raises(ValidationError, match="never a float"):
        Money.model_validate_json('{"amount": 12.5, "currency": "USD"}')


@pytest.mark.parametrize("amount", ["NaN", "Infinity"])
def test_non_finite_money_is_refused(amount: str) -> None:
    with pytest.raises(ValidationError):
        Money(amount=Decimal(amount), currency="USD")


@pytest.mark.parametrize("currency", ["usd", "US", "EURO", ""])
def test_currency_must_be_an_iso_4217_code(currency: str) -> None:
    with pytest.raises(ValidationError):
        Money(amount=Decimal("1"), currency=currency)


def test_every_money_amount_in_every_schema_is_a_string() -> None:
    for spec in all_specs():
        money = schema_for(spec)["$defs"].get("Money")
        if money is not None:
            assert money["properties"]["amount"]["type"] == "string"


def test_uuid7_ids_are_version_7_and_time_ordered() -> None:
    ids = [uuid7() for _ in range(2000)]
    assert all(i.version == 7 and i.variant == "specified in RFC 4122" for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert abs(uuid7_time(ids[0]) - datetime.now(UTC)) < timedelta(seconds=5)


def test_envelope_ids_are_time_ordered() -> None:
    events = [Envelope.build(_drafted(), source="t", tenant=TENANT) for _ in range(50)]
    assert [e.id for e in events] == sorted(e.id for e in events)


def test_an_id_that_is_not_uuid7_is_refused() -> None:
    event = Envelope.build(_drafted(), source="invoice-builder", tenant=TENANT)
    wire = json.loads(event.to_bytes())
    wire["id"] = str(uuid4())
    with pytest.raises(ValidationError):
        Envelope[InvoiceDrafted].model_validate(wire)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        Envelope.build(
            _drafted(), source="t", tenant=TENANT, occurred_at=datetime(2025, 3, 1, 12, 0)
        )
    event = Envelope.build(_drafted(), source="t", tenant=TENANT)
    wire = json.loads(event.to_bytes())
    wire["occurred_at"] = "2025-03-01T12:00:00"
    with pytest.raises(ValidationError, match="timezone"):
        Envelope[InvoiceDrafted].model_validate(wire)


def test_aware_datetimes_are_normalised_to_utc_iso_8601() -> None:
    paris = timezone(timedelta(hours=1))
    event = Envelope.build(
        _drafted(), source="t", tenant=TENANT, occurred_at=datetime(2025, 3, 1, 13, 0, tzinfo=paris)
    )
    assert event.occurred_at == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert json.loads(event.to_bytes())["occurred_at"] == "2025-03-01T12:00:00Z"


def test_caused_by_carries_correlation_tenant_and_sets_causation() -> None:
    parent = Envelope.build(_requested(), source="invoice-builder", tenant=TENANT)
    child = Envelope.build(_drafted(), source="invoice-builder", caused_by=parent)
    assert child.correlation_id == parent.correlation_id
    assert child.causation_id == parent.id
    assert child.tenant == parent.tenant
    grandchild = Envelope.build(_drafted(), source="t", tenant=TENANT).caused_by(child)
    assert grandchild.correlation_id == parent.correlation_id
    assert grandchild.causation_id == child.id


def test_build_needs_a_tenant_without_a_parent() -> None:
    with pytest.raises(ValueError, match="tenant"):
        Envelope.build(_drafted(), source="t")


def test_kafka_key_is_the_realm_id() -> None:
    event = Envelope.build(_drafted(), source="t", tenant=TENANT)
    assert event.kafka_key == b"9130354"


def test_portal_scoped_events_are_keyed_by_portal() -> None:
    change = CrmObjectChanged(
        crm_event_id="e-1",
        object_type=CrmObjectType.DEAL,
        object_id="deal-7",
        change=CrmChange.PROPERTY_CHANGED,
        changed_at=datetime(2025, 3, 1, tzinfo=UTC),
        property_name="dealstage",
        property_value="closedwon",
    )
    event = Envelope.build(change, source="webhook-gateway", tenant=Tenant(portal_id="portal-1"))
    assert event.kafka_key == b"portal-1"
    with pytest.raises(ValueError, match="no QBO account"):
        event.tenant.require_account_id()


def test_account_scoped_events_require_the_realm() -> None:
    with pytest.raises(ValidationError, match="account_id"):
        Envelope.build(_drafted(), source="t", tenant=Tenant(portal_id="portal-1"))


def test_type_must_match_the_payload_model() -> None:
    with pytest.raises(ValidationError, match=r"is invoice\.drafted v1"):
        Envelope[InvoiceDrafted](
            type="invoice.linked",
            version=1,
            source="t",
            tenant=TENANT,
            correlation_id="c",
            data=_drafted(),
        )


def test_decode_picks_the_model_and_checks_the_topic() -> None:
    change = QboEntityChanged(
        realm_id="9130354",
        entity="Payment",
        entity_id="301",
        operation=QboOperation.CREATE,
        last_updated=datetime(2025, 3, 1, tzinfo=UTC),
    )
    raw = Envelope.build(change, source="webhook-gateway", tenant=TENANT).to_bytes()
    assert isinstance(decode(raw, topic="qbo.entity-changed.v1").data, QboEntityChanged)
    with pytest.raises(EnvelopeError, match="does not belong"):
        decode(raw, topic="invoice.drafted.v1")


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"type": "invoice.teleported", "version": 1}',
        b'{"type": "invoice.drafted", "version": 1, "data": {}}',
    ],
)
def test_decode_refuses_garbage_with_one_error_type(raw: bytes) -> None:
    with pytest.raises(EnvelopeError):
        decode(raw)


def test_consumers_ignore_fields_they_do_not_know_yet() -> None:
    event = Envelope.build(_drafted(), source="t", tenant=TENANT)
    wire = json.loads(event.to_bytes())
    wire["data"]["added_later"] = "x"
    assert Envelope[InvoiceDrafted].model_validate(wire) == event


def test_events_are_immutable() -> None:
    event = Envelope.build(_drafted(), source="t", tenant=TENANT)
    with pytest.raises(ValidationError):
        event.source = "other"  # type: ignore[misc]


def test_no_event_carries_a_token_or_secret() -> None:
    forbidden = ("token", "secret", "password", "authorization", "api_key")
    for spec in all_specs():
        text = json.dumps(schema_for(spec)).lower()
        names = _property_names(schema_for(spec))
        assert not [n for n in names if any(word in n.lower() for word in forbidden)], spec.topic
        assert 'refresh_token"' not in text


def _property_names(node: object) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            names.update(properties)
        for value in node.values():
            names |= _property_names(value)
    elif isinstance(node, list):
        for value in node:
            names |= _property_names(value)
    return names


def test_uuid7_time_refuses_other_versions() -> None:
    with pytest.raises(ValueError, match="UUIDv7"):
        uuid7_time(UUID(int=0))


def test_customer_choice_without_kind_is_refused_on_the_wire() -> None:
    event = Envelope.build(_requested(), source="invoice-builder", tenant=TENANT)
    wire = json.loads(event.to_bytes())
    del wire["data"]["customer"]["kind"]
    with pytest.raises(ValidationError):
        Envelope[InvoiceRequested].model_validate(wire)
    schema = schema_for(spec_for_model(InvoiceRequested))
    assert "kind" in schema["$defs"]["NewCustomer"]["required"]
