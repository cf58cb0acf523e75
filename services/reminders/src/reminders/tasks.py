"""A reminder's CRM task, made at most once.

A CRM task has no key the CRM dedupes on, so each reminder is claimed in reminders' own
database (`reminder_tasks`) before its task is created, and recorded as open after. A run
stopped between the two (or a create whose answer was lost) leaves the claim: the run that
takes it over once the lease has passed first looks for a task carrying the reminder's
reference in its body (among the tasks of the record it goes on, or by a search for one on
no record), and records that one if found. So a task is made twice only if a run still at
work past the lease creates it after that look.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from dealbooks_crm import CrmClient, CrmObject, Filter, FilterGroup, SearchRequest

from reminders.domain import carries_key
from reminders.store import Claim, Doc, Store

# A claim older than this was left by a run that stopped; another run takes it over. Longer
# than a task create with all its retries of 429s.
CLAIM_LEASE_SECONDS = 120.0
# The hour (UTC) a task is due on its day.
DUE_HOUR = 12


@dataclass(frozen=True)
class TaskRequest:
    """One reminder's task: what it says, when it is due, whose it is, where it goes."""

    subject: str
    body: str
    due: date
    priority: str
    owner_id: str | None
    on: Sequence[tuple[str, str]]  # (object type, id) of the record it goes on, if any
    key: str


@dataclass
class ReminderTasks:
    """Creates reminders' CRM tasks once each, and finds them again."""

    store: Store
    crm: CrmClient
    lease_seconds: float = CLAIM_LEASE_SECONDS

    async def create_once(self, portal_id: str, claim: Doc, task: TaskRequest) -> str | None:
        """The id of the reminder's task, made now or found made by a run that stopped; None
        when the reminder is done already or another run is making its task right now (the
        next pass looks again)."""
        claimed = await self.store.claim(claim, self.lease_seconds)
        if claimed in {Claim.DONE, Claim.HELD}:
            return None
        if claimed is Claim.TAKEN_OVER:
            found = await self.find(portal_id, task.key, task.on)
            if found is not None:
                return found.id
        made = await self.crm.portal(portal_id).create_task(
            task.subject,
            body=task.body,
            due=datetime.combine(task.due, time(DUE_HOUR), tzinfo=UTC),
            on=list(task.on),
            owner_id=task.owner_id,
            priority=task.priority,
        )
        return made.id

    async def find(
        self, portal_id: str, key: str, on: Sequence[tuple[str, str]]
    ) -> CrmObject | None:
        """The task carrying `key` in its body, if the CRM has one."""
        crm = self.crm.portal(portal_id)
        if on:
            object_type, object_id = on[0]
            tasks = await crm.tasks_on(object_type, object_id)
        else:
            search = SearchRequest(
                filter_groups=[
                    FilterGroup(
                        filters=[
                            Filter(
                                property_name="hs_task_body", operator="CONTAINS_TOKEN", value=key
                            )
                        ]
                    )
                ],
                properties=["hs_task_subject", "hs_task_body", "hs_task_status"],
                limit=10,
            )
            tasks = (await crm.search("tasks", search)).results
        return next((t for t in tasks if carries_key(str(t.get("hs_task_body") or ""), key)), None)

    async def complete(self, portal_id: str, task_id: str) -> None:
        await self.crm.portal(portal_id).complete_task(task_id)
