"""The portal's CRM owners by name, for choosing an approver (and, in the console, a reminder
task's owner) instead of typing an owner id."""

from __future__ import annotations

from dealbooks_kit.openapi import describe
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoice_builder.api.common import Router, service
from invoice_builder.crm_reads import OwnersUnreadable

router = Router()


class OwnerAnswer(BaseModel):
    id: str
    name: str = Field(description="The owner's full name, else its e-mail, else 'Owner <id>'.")
    email: str | None = None
    user_id: str | None = Field(
        default=None, description="The CRM user the owner stands for (not the owner's id)."
    )


class OwnersAnswer(BaseModel):
    """The portal's active owners, by name; `owners` is null (and `reason` says what to do)
    when the app's install cannot read them."""

    owners: list[OwnerAnswer] | None
    reason: str | None = None


@router.route("GET", "/owners")
@describe(answers={200: OwnersAnswer})
async def owners(request: Request) -> Response:
    reads = service(request).handlers.crm_reads
    try:
        found = await reads.owners(request.path_params["portal_id"])
    except OwnersUnreadable as exc:
        return JSONResponse({"owners": None, "reason": str(exc)})
    return JSONResponse(
        {
            "owners": [
                {"id": o.id, "name": o.name, "email": o.email, "user_id": o.user_id} for o in found
            ]
        }
    )
