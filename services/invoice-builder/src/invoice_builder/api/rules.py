"""Auto-draft rules of a portal: list, read, save, delete. A rule drafts into its company, so
it may only name one connected to the rule's portal; another portal's rule is a 404.
`invoice_builder.auto_drafts` fires them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoice_builder.api.common import (
    Router,
    connected,
    error,
    json_object,
    service,
)
from invoice_builder.domain import AutoDraftRule

NO_RULE = "no such auto-draft rule"


ONE = "/auto-draft-rules/{rule_id}"
router = Router()


class RuleBody(BaseModel):
    """An auto-draft rule as the settings page sends it."""

    model_config = ConfigDict(extra="ignore")

    realm_id: str | int
    deal_stage: str
    enabled: bool = True
    terms_id: str | int | None = None
    default_tax_code: str | None = None
    chosen_items: dict[str, str] | None = None


@router.route("GET", "/auto-draft-rules")
async def list_rules(request: Request) -> Response:
    found = await service(request).store.rules_of(request.path_params["portal_id"])
    ordered = sorted(found, key=lambda r: (r.deal_stage, r.rule_id))
    return JSONResponse({"rules": [r.settings() for r in ordered]})


@router.route("GET", ONE)
async def get_rule(request: Request) -> Response:
    rule = await service(request).store.rule(
        request.path_params["portal_id"], request.path_params["rule_id"]
    )
    if rule is None:
        return error(404, NO_RULE)
    return JSONResponse(rule.settings())


@router.route("PUT", ONE)
async def put_rule(request: Request) -> Response:
    try:
        body = RuleBody.model_validate(await json_object(request))
    except PydanticValidationError as exc:
        return error(400, f"invalid rule: {exc}")
    rule = AutoDraftRule(
        rule_id=request.path_params["rule_id"],
        portal_id=request.path_params["portal_id"],
        realm_id=str(body.realm_id),
        deal_stage=body.deal_stage,
        enabled=body.enabled,
        terms_id=str(body.terms_id) if body.terms_id is not None else None,
        default_tax_code=body.default_tax_code,
        chosen_items=body.chosen_items or {},
    )
    # A rule drafts into its company: only into one connected to the rule's portal.
    await connected(request, rule.realm_id)
    await service(request).store.save_rule(rule)
    return JSONResponse({"rule_id": rule.rule_id, "saved": True})


@router.route("DELETE", ONE)
async def delete_rule(request: Request) -> Response:
    rule_id = request.path_params["rule_id"]
    if not await service(request).store.delete_rule(request.path_params["portal_id"], rule_id):
        return error(404, NO_RULE)
    return JSONResponse({"rule_id": rule_id, "deleted": True})
