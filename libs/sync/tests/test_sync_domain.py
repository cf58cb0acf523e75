"""Pure rules of QBO -> CRM sync: mapping validation, transforms, policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from dealbooks_contracts import (
    CreateUpdatePolicy,
    DeletePolicy,
    MappingTransform,
    SyncObjectType,
    SyncSettings,
    SyncTrigger,
)
from dealbooks_sync.domain import (
    Archive,
    CrmProperty,
    MappingRejected,
    ProblemCode,
    RecordFacts,
    Skip,
    Write,
    add_mapping,
    apply_mappings,
    cleared_properties,
    decide,
    default_mappings,
    delete_mapping,
    edit_mapping,
    settings_changed,
)

C, P = SyncObjectType.CONTACTS, SyncObjectType.PRODUCTS
CONTACT_PROPS = {
    name: CrmProperty(name, kind)
    for name, kind in [
        ("email", "string"),
        ("firstname", "string"),
        ("lastname", "string"),
        ("company", "string"),
        ("phone", "string"),
        ("mobilephone", "string"),
        ("address", "string"),
        ("city", "string"),
        ("state", "string"),
        ("zip", "string"),
        ("country", "string"),
        ("jobtitle", "string"),
        ("annualrevenue", "number"),
        ("hs_object_id", "number"),
    ]
}
CONTACT_PROPS["hs_object_id"] = CrmProperty("hs_object_id", "number", read_only=True)
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
ON = SyncSettings(
    enabled=True,
    create_update_policy=CreateUpdatePolicy.CREATE_AND_UPDATE,
    delete_policy=DeletePolicy.ARCHIVE,
    enabled_since=NOW,
)


def codes(exc: pytest.ExceptionInfo[MappingRejected]) -> list[ProblemCode]:
    return [p.code for p in exc.value.problems]


@pytest.mark.parametrize(
    ("crm_property", "qbo_field", "code", "named"),
    [
        ("nickname", "DisplayName", ProblemCode.UNKNOWN_CRM_PROPERTY, "nickname"),
        ("jobtitle", "JobTitle", ProblemCode.UNKNOWN_QBO_FIELD, "JobTitle"),
        ("annualrevenue", "DisplayName", ProblemCode.INCOMPATIBLE_TYPES, "annualrevenue"),
        ("firstname", "DisplayName", ProblemCode.DUPLICATE_CRM_PROPERTY, "firstname"),
        ("hs_object_id", "Balance", ProblemCode.READ_ONLY_PROPERTY, "hs_object_id"),
    ],
)
def test_a_mapping_the_crm_could_not_take_is_refused(
    crm_property: str, qbo_field: str, code: ProblemCode, named: str
) -> None:
    """Refused with its problem, whose message names what is wrong: an unknown CRM property or
    QBO field, text into a number property, a CRM property another mapping writes already, or
    a read-only one."""
    with pytest.raises(MappingRejected) as exc:
        add_mapping(C, default_mappings(C), crm_property, qbo_field, None, CONTACT_PROPS)
    assert codes(exc) == [code]
    assert named in exc.value.problems[0].message


def test_a_number_into_a_number_property_is_accepted() -> None:
    mappings = add_mapping(C, default_mappings(C), "annualrevenue", "Balance", None, CONTACT_PROPS)
    assert mappings[-1].crm_property == "annualrevenue"


def test_an_address_needs_the_address_to_text_transform() -> None:
    with pytest.raises(MappingRejected) as exc:
        add_mapping(C, default_mappings(C), "jobtitle", "ShipAddr", None, CONTACT_PROPS)
    assert "address_to_text" in exc.value.problems[0].message
    mappings = add_mapping(
        C,
        default_mappings(C),
        "jobtitle",
        "ShipAddr",
        MappingTransform.ADDRESS_TO_TEXT,
        CONTACT_PROPS,
    )
    assert mappings[-1].transform is MappingTransform.ADDRESS_TO_TEXT


def test_the_email_mapping_of_contacts_cannot_be_deleted_or_moved() -> None:
    email = next(m for m in default_mappings(C) if m.crm_property == "email")
    with pytest.raises(MappingRejected) as exc:
        delete_mapping(C, default_mappings(C), email.mapping_id)
    assert codes(exc) == [ProblemCode.REQUIRED_MAPPING]
    with pytest.raises(MappingRejected):
        edit_mapping(C, default_mappings(C), email.mapping_id, {"crm_property": "jobtitle"}, {})


def test_the_name_mapping_of_products_is_required() -> None:
    name = next(m for m in default_mappings(P) if m.crm_property == "name")
    assert name.required
    with pytest.raises(MappingRejected):
        delete_mapping(P, default_mappings(P), name.mapping_id)


def test_an_optional_mapping_can_be_deleted() -> None:
    phone = next(m for m in default_mappings(C) if m.crm_property == "phone")
    assert phone not in delete_mapping(C, default_mappings(C), phone.mapping_id)


def test_default_contact_mappings_write_the_customer_fields() -> None:
    customer = {
        "Id": "58",
        "DisplayName": "Ana Lima",
        "GivenName": "Ana",
        "FamilyName": "Lima",
        "PrimaryEmailAddr": {"Address": "ana@example.com"},
        "PrimaryPhone": {"FreeFormNumber": "(650) 555-0101"},
        "BillAddr": {"Line1": "1 Main St", "City": "Austin", "CountrySubDivisionCode": "TX"},
    }
    mapped = apply_mappings(C, customer, default_mappings(C))
    assert mapped.properties == {
        "email": "ana@example.com",
        "firstname": "Ana",
        "lastname": "Lima",
        "phone": "(650) 555-0101",
        "address": "1 Main St",
        "city": "Austin",
        "state": "TX",
    }
    assert "m-company" not in mapped.written


def test_a_field_emptied_in_qbo_clears_only_what_dealbooks_filled_before() -> None:
    mappings = default_mappings(C)
    customer = {
        "Id": "58",
        "GivenName": "Ana",
        "PrimaryEmailAddr": {"Address": "ana@example.com"},
        "PrimaryPhone": {"FreeFormNumber": ""},
    }
    mapped = apply_mappings(C, customer, mappings)
    # Last time dealbooks wrote phone and lastname; city was someone's own value in the CRM.
    filled_before = {"email", "firstname", "lastname", "phone"}

    cleared = cleared_properties(mappings, mapped, filled_before)

    assert cleared == {"phone": "m-phone", "lastname": "m-lastname"}
    assert cleared_properties(mappings, mapped, ()) == {}  # never linked: nothing to clear


def test_prices_are_written_as_exact_decimals() -> None:
    item = {"Id": "21", "Name": "Onboarding", "UnitPrice": Decimal("1234.50"), "Active": True}
    mapped = apply_mappings(P, item, default_mappings(P))
    assert mapped.properties["price"] == "1234.50"
    assert mapped.properties["dealbooks_qbo_active"] == "true"
    assert (
        apply_mappings(P, {**item, "UnitPrice": 0.1}, default_mappings(P)).properties["price"]
        == "0.1"
    )


def test_transforms_join_names_and_render_addresses() -> None:
    customer = {
        "GivenName": "Ana",
        "FamilyName": "Lima",
        "ShipAddr": {"Line1": "1 Main St", "City": "Austin", "PostalCode": "78701"},
    }
    mappings = add_mapping(
        C,
        [m for m in default_mappings(C) if m.crm_property not in {"firstname", "address"}],
        "firstname",
        "GivenName",
        MappingTransform.JOIN_GIVEN_FAMILY_NAME,
        CONTACT_PROPS,
    )
    mappings = add_mapping(
        C, mappings, "address", "ShipAddr", MappingTransform.ADDRESS_TO_TEXT, CONTACT_PROPS
    )
    mapped = apply_mappings(C, customer, mappings)
    assert mapped.properties["firstname"] == "Ana Lima"
    assert mapped.properties["address"] == "1 Main St, Austin, 78701"


def test_switch_off_skips_everything() -> None:
    off = ON.model_copy(update={"enabled": False})
    decision = decide(off, RecordFacts(active=True, created_at=NOW, linked=True))
    assert decision == Skip("sync is switched off")


def test_new_customer_after_switch_on_is_created() -> None:
    facts = RecordFacts(active=True, created_at=NOW + timedelta(minutes=1), linked=False)
    assert decide(ON, facts) == Write(create_allowed=True)


def test_customer_created_before_switch_on_waits_for_a_backfill() -> None:
    facts = RecordFacts(active=True, created_at=NOW - timedelta(days=1), linked=False)
    assert isinstance(decide(ON, facts), Skip)
    backfill = RecordFacts(
        active=True, created_at=NOW - timedelta(days=1), linked=False, trigger=SyncTrigger.BACKFILL
    )
    assert decide(ON, backfill) == Write(create_allowed=True)


def test_update_existing_only_never_creates() -> None:
    settings = ON.model_copy(
        update={"create_update_policy": CreateUpdatePolicy.UPDATE_EXISTING_ONLY}
    )
    facts = RecordFacts(active=True, created_at=NOW + timedelta(minutes=1), linked=False)
    assert decide(settings, facts) == Write(create_allowed=False)


def test_do_nothing_policy_skips() -> None:
    settings = ON.model_copy(update={"create_update_policy": CreateUpdatePolicy.DO_NOTHING})
    assert isinstance(decide(settings, RecordFacts(True, NOW, linked=True)), Skip)


def test_inactive_linked_record_is_archived_or_kept_per_delete_policy() -> None:
    facts = RecordFacts(active=False, created_at=NOW, linked=True)
    assert decide(ON, facts) == Archive()
    keep = ON.model_copy(update={"delete_policy": DeletePolicy.DO_NOTHING})
    assert isinstance(decide(keep, facts), Skip)
    merged = RecordFacts(active=True, created_at=NOW, linked=True, merged_away=True)
    assert decide(ON, merged) == Archive()


def test_switching_sync_on_stamps_enabled_since_and_keeps_it() -> None:
    off = ON.model_copy(update={"enabled": False, "enabled_since": None})
    switched = settings_changed(off, ON.model_copy(update={"enabled_since": None}), NOW)
    assert switched.enabled_since == NOW
    later = settings_changed(
        switched,
        switched.model_copy(update={"delete_policy": DeletePolicy.DO_NOTHING}),
        NOW + timedelta(days=1),
    )
    assert later.enabled_since == NOW
