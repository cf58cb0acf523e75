"""contact-sync's and product-sync's backfill routes, called with the operator credential."""

from __future__ import annotations

from typing import Any

import httpx

from dealbooks_cli.operations import answer_of
from dealbooks_cli.stack import CliError, Stack

SERVICES = {"contacts": "contact-sync", "products": "product-sync"}
ACTIONS = {"plan": "", "start": "", "resume": "/resume", "cancel": "/cancel", "status": ""}


async def call(
    stack: Stack,
    kind: str,
    action: str,
    portal: str,
    realm: str,
    caps: dict[str, int],
) -> dict[str, Any]:
    """One backfill route of the service that syncs `kind`; its answer, or CliError."""
    service = SERVICES[kind]
    url = f"{stack.url(service)}/portals/{portal}/accounts/{realm}/backfill{ACTIONS[action]}"
    headers = {"Authorization": f"Bearer {stack.operator_credential()}"}
    params: dict[str, str] = {k: str(v) for k, v in caps.items()}
    if action == "plan":
        params["dry_run"] = "true"
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5)) as client:
            if action == "status":
                response = await client.get(url, headers=headers)
            else:
                response = await client.post(url, params=params, headers=headers)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {service} at {url}: {exc}") from exc
    return answer_of(service, response)
