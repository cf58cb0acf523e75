"""contact-sync's and product-sync's backfill routes, called with the operator credential, and
the records a run could not sync.

A run keeps only how many records failed. Each failure was published as a `*.sync-failed`
event (`contact.sync-failed`, `product.sync-failed`) with trigger `backfill` and correlation id
`backfill:<realm>:<kind>`, naming the QuickBooks record, a code and a sentence; nothing else
keeps them (a backfill writes no audit entries, and the mapping status keeps only a mapping's
last error). `failures` reads them back from that topic, from the run's start to its end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from dealbooks_contracts import spec_for_type

from dealbooks_cli.deadletters import dead_letter_topics
from dealbooks_cli.operations import answer_of, json_of
from dealbooks_cli.stack import CliError, Stack

SERVICES = {"contacts": "contact-sync", "products": "product-sync"}
ACTIONS = {"plan": "", "start": "", "resume": "/resume", "cancel": "/cancel", "status": ""}
# What the sync services answer (404) to an account's latest run when it has had none.
NO_RUN = "no backfill run of this account"
# Each kind's failure event and the QuickBooks record it names.
FAILURES = {
    "contacts": ("contact.sync-failed", "customer", "qbo_customer_id"),
    "products": ("product.sync-failed", "item", "qbo_item_id"),
}
# Events are stamped a moment before the run's end is saved; clocks differ a little.
_SLACK = timedelta(seconds=5)


async def call(
    stack: Stack,
    kind: str,
    action: str,
    portal: str,
    realm: str,
    caps: dict[str, int],
) -> dict[str, Any]:
    """One backfill route of the service that syncs `kind`; its answer, or CliError."""
    response = await _request(stack, kind, action, portal, realm, caps)
    return answer_of(SERVICES[kind], response)


async def latest(stack: Stack, kind: str, portal: str, realm: str) -> dict[str, Any] | None:
    """The account's latest run, or None when it has had none (a normal answer, not a
    refusal); CliError otherwise."""
    response = await _request(stack, kind, "status", portal, realm, {})
    body = json_of(response)
    if response.status_code == 404 and isinstance(body, dict) and body.get("error") == NO_RUN:
        return None
    return answer_of(SERVICES[kind], response)


async def _request(
    stack: Stack,
    kind: str,
    action: str,
    portal: str,
    realm: str,
    caps: dict[str, int],
) -> httpx.Response:
    service = SERVICES[kind]
    url = f"{stack.url(service)}/portals/{portal}/accounts/{realm}/backfill{ACTIONS[action]}"
    headers = {"Authorization": f"Bearer {stack.operator_credential()}"}
    params: dict[str, str] = {k: str(v) for k, v in caps.items()}
    if action == "plan":
        params["dry_run"] = "true"
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5)) as client:
            if action == "status":
                return await client.get(url, headers=headers)
            return await client.post(url, params=params, headers=headers)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {service} at {url}: {exc}") from exc


def failure_topic(stack: Stack, kind: str) -> str:
    """The topic (with TOPIC_PREFIX) the failures of a `kind` backfill were published on."""
    return stack.settings().topic(spec_for_type(FAILURES[kind][0]).topic)


async def failures(stack: Stack, kind: str, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The records `run` could not sync, oldest first: the QuickBooks record, the code and
    the sentence of its `*.sync-failed` event, and where that event is. CliError when Kafka
    does not answer."""
    started, ended = _when(run.get("started_at")), _when(run.get("finished_at"))
    if started is None:
        return []
    correlation = f"backfill:{run.get('realm_id')}:{kind}"
    topic = failure_topic(stack, kind)
    _, record, id_field = FAILURES[kind]
    found = []
    async with dead_letter_topics(stack) as topics:
        for letter in await topics.since(topic, started - _SLACK):
            event = letter.event or {}
            data: dict[str, Any] = event["data"] if isinstance(event.get("data"), dict) else {}
            at = _when(event.get("occurred_at"))
            if event.get("correlation_id") != correlation or data.get("trigger") != "backfill":
                continue
            if at is None or at < started - _SLACK or (ended and at > ended + _SLACK):
                continue
            found.append(
                {
                    "record": record,
                    "qbo_id": data.get(id_field),
                    "code": data.get("code"),
                    "message": data.get("message"),
                    "mapping_id": data.get("mapping_id"),
                    "crm_property": data.get("crm_property"),
                    "at": at.isoformat(),
                    "event_id": event.get("id"),
                    "topic": letter.dlq_topic,
                    "position": f"{letter.partition}:{letter.offset}",
                }
            )
    return sorted(found, key=lambda f: str(f["at"]))


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
