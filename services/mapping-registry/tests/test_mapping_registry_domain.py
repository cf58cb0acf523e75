"""The registry's own pure rules: versions, dry run and status counting."""

from __future__ import annotations

from datetime import UTC, datetime

from dealbooks_contracts import (
    ContactSynced,
    ContactSyncFailed,
    SyncAction,
    SyncFailureCode,
    SyncObjectType,
    SyncTrigger,
)
from mapping_registry.domain import (
    RECORD_STATUS_KEY,
    CrmProperty,
    Proposal,
    StatusDelta,
    dry_run,
    propose,
    seeded,
    status_deltas,
)

C = SyncObjectType.CONTACTS


def test_a_new_account_starts_at_version_1_with_defaults_and_sync_off() -> None:
    state = seeded(C)
    assert state.version == 1
    assert not state.settings.enabled
    assert {m.crm_property for m in state.mappings} >= {"email", "firstname", "lastname"}
    assert state.event().version == 1


def test_every_change_raises_the_version() -> None:
    state = seeded(C)
    changed = state.with_settings(
        state.settings.model_copy(update={"enabled": True}), datetime.now(UTC)
    )
    assert changed.version == 2 and changed.settings.enabled_since is not None
    phone = next(m for m in state.mappings if m.crm_property == "phone")
    proposed = propose(changed, Proposal(op="delete", mapping_id=phone.mapping_id), {})
    assert changed.with_mappings(proposed).version == 3


def test_dry_run_shows_what_a_proposed_mapping_would_write() -> None:
    state = seeded(C)
    props = {"jobtitle": CrmProperty("jobtitle", "string")}
    proposal = Proposal(op="add", crm_property="jobtitle", qbo_field="DisplayName")
    proposed = propose(state, proposal, props)
    records = [{"Id": "1", "DisplayName": "Amy's Bird Sanctuary", "GivenName": "Amy"}]
    [row] = dry_run(C, records, state.mappings, proposed)
    assert row["changes"] == {"jobtitle": {"from": None, "to": "Amy's Bird Sanctuary"}}
    assert row["after"]["firstname"] == "Amy"


def test_synced_counts_for_each_mapping_that_wrote_and_failures_for_the_one_at_fault() -> None:
    synced = ContactSynced(
        action=SyncAction.CREATED,
        trigger=SyncTrigger.WEBHOOK,
        mapping_version=2,
        mapping_ids=["m-email", "m-firstname"],
        qbo_customer_id="58",
    )
    assert status_deltas(synced) == [StatusDelta("m-email", ok=1), StatusDelta("m-firstname", ok=1)]
    failed = ContactSyncFailed(
        code=SyncFailureCode.CRM_REJECTED,
        message="Customer 58 was not synced: the CRM refused it.",
        trigger=SyncTrigger.WEBHOOK,
        permanent=True,
        attempts=1,
        qbo_customer_id="58",
    )
    [delta] = status_deltas(failed)
    assert delta.mapping_id == RECORD_STATUS_KEY and delta.failed == 1
