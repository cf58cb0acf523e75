"""Putting a fact on a CRM record's timeline exactly once: an app event occurrence where the
portal's app events are approved, otherwise a note associated with the record.

HubSpot's legacy timeline API answers only apps that already had timeline events; a new app
sends app events (timeline v4), which need HubSpot's approval. Whether they are approved is
learnt by trying: a 403 (not approved, or `timeline` not granted) turns the portal to notes
for `recheck_seconds`, then v4 is tried again; a 404 (the event type is not deployed, or the
record is gone) makes that one entry a note. Occurrences are idempotent by id. Notes are not,
so each one is recorded in status-tracker's own database (`crm_entries`): claimed before it
is created, finished after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dealbooks_crm import AppEventOccurrence, CrmClient, CrmError
from dealbooks_kit import TransientError, get_logger

from status_tracker.domain import TimelineEntry, carries_reference
from status_tracker.store import APP_EVENT, NOTE, Claim, Store

log = get_logger(__name__)
# A claim on a note older than this was left by a run that stopped (or is stuck); another
# run takes it over. Longer than a note create with all its retries of 429s.
CLAIM_LEASE_SECONDS = 90.0
CLAIM_POLL_SECONDS = 0.25


@dataclass
class AppEventsAccess:
    """Per portal, whether the app's app events were refused lately: such a portal gets notes
    without being asked again until `recheck_seconds` pass (HubSpot may approve the app
    meanwhile). Process memory: each replica learns it at the cost of one refused call."""

    recheck_seconds: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    _refused_until: dict[str, float] = field(default_factory=dict)

    def allows(self, portal_id: str) -> bool:
        until = self._refused_until.get(portal_id)
        if until is None or until <= self.clock():
            self._refused_until.pop(portal_id, None)
            return True
        return False

    def refuse(self, portal_id: str) -> None:
        self._refused_until[portal_id] = self.clock() + self.recheck_seconds


def refused_app_events(error: CrmError) -> bool:
    """Whether an answer to an app event says app events cannot be used for this portal
    (HubSpot documents only that they need its approval; see the CRM sandbox's README)."""
    return error.status == 403


def unknown_to_app_events(error: CrmError) -> bool:
    """Whether an answer says this occurrence's event type (or record) is unknown: a 404
    says nothing of the other entries, so only this one becomes a note."""
    return error.status == 404


@dataclass
class CrmEntries:
    """Writes `TimelineEntry`s to the CRM, each at most once (see the module docstring)."""

    store: Store
    crm: CrmClient
    access: AppEventsAccess = field(default_factory=AppEventsAccess)
    lease_seconds: float = CLAIM_LEASE_SECONDS

    async def put(self, portal_id: str, entry: TimelineEntry) -> str:
        """Put `entry` on its record; answers how it is shown there (APP_EVENT or NOTE)."""
        known = await self.store.entry(portal_id, entry.key)
        if known is not None and known.get("done"):
            return str(known["kind"])
        # A note begun earlier may exist already: it stays a note.
        sendable = known is None and entry.event_type and self.access.allows(portal_id)
        if sendable and await self._send_app_event(portal_id, entry):
            return APP_EVENT
        return await self._note(portal_id, entry)

    async def _send_app_event(self, portal_id: str, entry: TimelineEntry) -> bool:
        assert entry.event_type is not None
        occurrence = AppEventOccurrence(
            event_type_name=entry.event_type,
            id=entry.key,
            object_id=entry.object_id,
            properties=dict(entry.properties),
        )
        try:
            # A repeated id answers 409 and stands as sent: occurrences are immutable.
            await self.crm.portal(portal_id).send_app_event(occurrence)
        except CrmError as exc:
            if unknown_to_app_events(exc):
                log.info("app event type or record unknown; a note instead", reason=exc.message)
                return False
            if not refused_app_events(exc):
                raise
            self.access.refuse(portal_id)
            log.info(
                "app events refused; notes instead for a while",
                reason=exc.message,
                recheck_s=self.access.recheck_seconds,
            )
            return False
        await self.store.finish_entry(portal_id, entry, APP_EVENT)
        return True

    async def _note(self, portal_id: str, entry: TimelineEntry) -> str:
        """Create the note once. The claim is written before the create and finished after
        it. A run stopped between the two (or a create whose answer was lost) leaves the
        claim unfinished: the run that takes it over, once the lease has passed, first looks
        among the record's notes for one carrying the entry's key, finishes the claim with it
        if found, and creates the note only if not. So a note is made twice only if a run
        still at work past the lease creates it after that look."""
        crm = self.crm.portal(portal_id)
        deadline = time.monotonic() + self.lease_seconds + 5 * CLAIM_POLL_SECONDS
        while time.monotonic() < deadline:
            claim = await self.store.claim_entry(portal_id, entry, self.lease_seconds)
            if claim is Claim.DONE:
                return NOTE
            if claim is Claim.HELD:  # another run is creating it right now
                await asyncio.sleep(CLAIM_POLL_SECONDS)
                continue
            if claim is Claim.TAKEN_OVER:
                notes = await crm.notes_on(entry.object_type, entry.object_id)
                body = "hs_note_body"
                made = [n for n in notes if carries_reference(n.get(body) or "", entry.key)]
                if made:
                    await self.store.finish_entry(portal_id, entry, NOTE, made[0].id)
                    return NOTE
            note = await crm.create_note(entry.note_html, on=[(entry.object_type, entry.object_id)])
            await self.store.finish_entry(portal_id, entry, NOTE, note.id)
            return NOTE
        raise TransientError(f"note {entry.key} is still being written by another run")
