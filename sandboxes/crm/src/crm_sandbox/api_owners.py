"""Owners v3: the portal's users as the owners `hubspot_owner_id` names (read only)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from crm_sandbox.errors import not_found, validation
from crm_sandbox.guard import Ctx, Guard, json_response
from crm_sandbox.state import User

PREFIXES = ["/crm/v3/owners", "/crm/owners/2026-03"]
SCOPE = "crm.objects.owners.read"
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
# Users have no creation time here; owners carry a fixed one.
CREATED_AT = "2019-08-06T02:41:52.000Z"


def owner_body(user: User) -> dict[str, Any]:
    return {
        "id": user.owner_id,
        "email": user.email,
        "type": "PERSON",
        "firstName": user.first_name,
        "lastName": user.last_name,
        "userId": user.id,
        "userIdIncludingInactive": user.id,
        "createdAt": CREATED_AT,
        "updatedAt": CREATED_AT,
        "archived": False,
    }


class OwnersApi:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def routes(self) -> list[Route]:
        g = self.guard
        routes: list[Route] = []
        for prefix in PREFIXES:
            routes += [
                g.route(prefix, self.list_owners, ["GET"], scope=SCOPE, label="/crm/v3/owners"),
                g.route(
                    prefix + "/{ownerId}",
                    self.read,
                    ["GET"],
                    scope=SCOPE,
                    label="/crm/v3/owners/{ownerId}",
                ),
            ]
        return routes

    async def list_owners(self, ctx: Ctx) -> Response:
        q = ctx.request.query_params
        try:
            limit = min(int(q.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
        except ValueError:
            raise validation("limit must be a number") from None
        users = [] if ctx.query_bool("archived") else sorted(ctx.portal.users.values(), key=_id)
        email = q.get("email")
        if email:
            users = [u for u in users if u.email.lower() == email.lower()]
        after = q.get("after")
        if after:
            users = [u for u in users if int(u.owner_id) >= int(after)]
        page, rest = users[:limit], users[limit:]
        body: dict[str, Any] = {"results": [owner_body(u) for u in page]}
        if rest:
            nxt = rest[0].owner_id
            body["paging"] = {
                "next": {"after": nxt, "link": f"{ctx.request.url.path}?after={nxt}&limit={limit}"}
            }
        return json_response(body)

    async def read(self, ctx: Ctx) -> Response:
        wanted = str(ctx.params["ownerId"])
        by = ctx.request.query_params.get("idProperty", "id")
        if by not in {"id", "userId"}:
            raise validation(f"idProperty must be id or userId, not {by}")
        for user in ctx.portal.users.values():
            if (user.owner_id if by == "id" else str(user.id)) == wanted:
                if ctx.query_bool("archived"):
                    break
                return json_response(owner_body(user))
        raise not_found(f"Owner with {by} {wanted} not found.")


def _id(user: User) -> int:
    return user.id
