"""CRM tasks on a deal, each made at most once (an approval's task, its reminder).

A CRM task has no key the CRM dedupes on, so each is claimed in invoice-builder's own database
(`crm_tasks`) before it is created and finished with its id after. A run stopped between the
two (or a create whose answer was lost) leaves the claim unfinished: the run that takes it over
once the lease has passed first looks among the deal's tasks for one whose body carries the
task's reference, and creates it only if there is none. Completing a task is a plain update,
safe to repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dealbooks_crm import CrmClient, CrmNotFound, CrmValidation
from dealbooks_kit import TransientError, get_logger

from invoice_builder.approval import TaskText, carries_reference
from invoice_builder.store import Store, TaskClaim

log = get_logger(__name__)
# Longer than a task create with all its retries of 429s.
CLAIM_LEASE_SECONDS = 90.0


@dataclass
class CrmTasks:
    store: Store
    crm: CrmClient
    lease_seconds: float = CLAIM_LEASE_SECONDS

    async def ensure(
        self,
        portal_id: str,
        key: str,
        text: TaskText,
        *,
        deal_id: str,
        owner_id: str | None,
        due: datetime,
    ) -> str:
        """The id of the task `key` on the deal, made now unless it was made before."""
        claim = await self.store.claim_task(portal_id, key, self.lease_seconds)
        if claim.state == TaskClaim.DONE:
            assert claim.task_id is not None
            return claim.task_id
        if claim.state == TaskClaim.HELD:
            raise TransientError(f"CRM task {key} is being made by another run")
        crm = self.crm.portal(portal_id)
        if claim.state == TaskClaim.TAKEN_OVER:
            for task in await crm.tasks_on("deals", deal_id):
                if carries_reference(task.get("hs_task_body") or "", key):
                    await self.store.finish_task(portal_id, key, task.id)
                    return task.id
        try:
            made = await crm.create_task(
                text.subject, body=text.body, due=due, on=[("deals", deal_id)], owner_id=owner_id
            )
        except CrmValidation as exc:
            if not owner_id or "owner" not in exc.message.lower():
                raise
            # An approver who is no longer an owner of the portal: the task still goes on the
            # deal, unassigned, rather than the approval not being asked at all.
            log.warning("approval task owner refused; task left unassigned", owner_id=owner_id)
            made = await crm.create_task(
                text.subject, body=text.body, due=due, on=[("deals", deal_id)]
            )
        await self.store.finish_task(portal_id, key, made.id)
        return made.id

    async def complete(self, portal_id: str, task_ids: list[str]) -> None:
        """Mark tasks done (a task someone deleted in the CRM is nothing to complete)."""
        crm = self.crm.portal(portal_id)
        for task_id in task_ids:
            try:
                await crm.complete_task(task_id)
            except CrmNotFound:
                log.info("approval task no longer in the CRM", task_id=task_id)
