"""The app in CRM portals over real HTTP: install and sign-in through the CRM sandbox's OAuth,
sessions and their grants, CRM tokens for other services, uninstall and reinstall."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from dealbooks_kit import Access, AuthSettings, Guard
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

pytestmark = pytest.mark.integration


async def session_of(connector: Any, portal: str) -> httpx.Response:
    async with connector.browser(portal) as browser:
        return await browser.get(f"{connector.base_url}/v1/session")


async def crm_token(connector: Any, portal: str, rejected: str | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=connector.base_url, timeout=30.0) as client:
        answer = await client.post(
            f"/internal/v1/portals/{portal}/crm/access-token",
            headers=connector.auth(),
            json={"rejected_sha256": rejected} if rejected else None,
        )
    if answer.status_code == 200:
        connector.secrets.add(answer.json()["access_token"])
    return answer


def set_consent(connector: Any, **consent: Any) -> None:
    connector.crm.control.post("/oauth/consent", json=consent).raise_for_status()


async def test_install_stores_encrypted_tokens_sets_the_portal_up_publishes_and_signs_in(
    connector: Any, crm_sandbox: Any, db: Any
) -> None:
    portal = connector.new_portal()

    installed = await connector.sign_in(portal, "/install")

    assert installed.status_code == 200, installed.text
    assert f"installed in portal {portal}" in installed.text
    cookie = installed.headers["set-cookie"]
    assert "dealbooks_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie  # served from 127.0.0.1 here; Secure everywhere else
    session = (await session_of(connector, portal)).json()
    connector.secrets.add(session["grant"]["token"], session["csrf_token"])
    assert session["portals"] == [portal]
    assert session["email"]
    assert session["grant"]["expires_in"] == connector.settings.grant_ttl_seconds
    doc = await db.portals.find_one({"_id": portal})
    assert doc["status"] == "installed"
    answer = (await crm_token(connector, portal)).json()
    token = answer["access_token"]
    assert token not in str(doc)
    # Services cache it for what is left of its life (the CRM's expires_in, less the margin).
    assert answer["expires_in"] > connector.settings.refresh_margin_seconds
    assert set(connector.settings.required_crm_scopes()) <= set(doc["scopes"])
    assert "crm.objects.owners.read" in doc["scopes"]  # optional, asked for and granted here
    async with httpx.AsyncClient(base_url=crm_sandbox.base_url) as crm:
        props = await crm.get(
            "/crm/v3/properties/deals", headers={"Authorization": f"Bearer {token}"}
        )
    assert "acct_invoice_status" in {p["name"] for p in props.json()["results"]}
    events = await connector.events("connector.portal-installed.v1", 1, portal)
    assert [e["data"]["reinstall"] for e in events] == [False]
    assert events[0]["_key"] == portal.encode()


async def test_installing_again_updates_the_install_and_never_duplicates_it(
    connector: Any, db: Any
) -> None:
    portal = connector.new_portal()
    await connector.sign_in(portal, "/install")
    first = await db.portals.find_one({"_id": portal})

    again = await connector.sign_in(portal, "/install")
    signed_in = await connector.sign_in(portal, "/signin")  # a person signing in changes nothing

    assert again.status_code == 200
    assert signed_in.status_code == 200
    assert await db.portals.count_documents({"_id": portal}) == 1
    assert (await db.portals.find_one({"_id": portal}))["token_version"] == first[
        "token_version"
    ] + 1
    events = await connector.events("connector.portal-installed.v1", 2, portal)
    # An update of an install is not a return after an uninstall: nothing to catch up.
    assert [e["data"]["reinstall"] for e in events] == [False, False]


async def test_an_install_missing_scopes_is_refused_with_a_page_naming_them(
    connector: Any, db: Any
) -> None:
    portal = connector.new_portal()
    granted = [s for s in connector.settings.required_crm_scopes() if s != "timeline"]
    set_consent(connector, portalId=int(portal), scopes=granted, mode="auto", count=1)
    async with httpx.AsyncClient(timeout=30.0) as browser:
        start = await browser.get(f"{connector.base_url}/install")
        consent = await browser.get(start.headers["location"])
        refused = await browser.get(consent.headers["location"])

    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert "Missing: timeline" in refused.text
    assert "set-cookie" not in refused.headers
    assert await db.portals.find_one({"_id": portal}) is None


async def test_a_person_who_declines_consent_changes_nothing(connector: Any, db: Any) -> None:
    portal = connector.new_portal()
    set_consent(connector, portalId=int(portal), decision="deny", mode="auto", count=1)
    async with httpx.AsyncClient(timeout=30.0) as browser:
        start = await browser.get(f"{connector.base_url}/signin")
        consent = await browser.get(start.headers["location"])
        declined = await browser.get(consent.headers["location"])

    assert declined.status_code == 400
    assert "access_denied" in declined.text
    assert await db.portals.find_one({"_id": portal}) is None


async def test_a_session_for_portal_a_cannot_read_or_change_portal_b(connector: Any) -> None:
    portal_a, portal_b = connector.new_portal(), connector.new_portal()
    await connector.sign_in(portal_a)
    await connector.sign_in(portal_b)
    grant_a = (await session_of(connector, portal_a)).json()["grant"]["token"]
    connector.secrets.add(grant_a)

    async with connector.browser(portal_a) as browser:
        own = await browser.get(f"{connector.base_url}/v1/portals/{portal_a}/accounts")
        other = await browser.get(f"{connector.base_url}/v1/portals/{portal_b}/accounts")
        connect_other = await browser.get(
            f"{connector.base_url}/v1/portals/{portal_b}/quickbooks/connect"
        )
    async with httpx.AsyncClient(base_url=connector.base_url) as client:
        by_grant = await client.get(
            f"/v1/portals/{portal_b}/accounts", headers={"Authorization": f"Bearer {grant_a}"}
        )
        anonymous = await client.get(f"/v1/portals/{portal_a}/quickbooks/connect")
        bare = await client.get(f"/oauth/connect?portal_id={portal_a}")

    assert own.status_code == 200
    assert other.status_code == 403
    assert connect_other.status_code == 403
    assert by_grant.status_code == 403
    assert anonymous.status_code == 401
    assert bare.status_code == 404  # a bare portal_id starts nothing


async def test_the_grant_a_session_mints_opens_other_services_portal_routes_until_it_expires(
    connector: Any,
) -> None:
    portal = connector.new_portal()
    await connector.sign_in(portal)
    grant = (await session_of(connector, portal)).json()["grant"]["token"]
    connector.secrets.add(grant)
    guard = Guard(AuthSettings(grant_keys=connector.settings.grant_keys), "elsewhere")

    async def echo(request: Request) -> Response:
        return JSONResponse({"user": request.state.caller.user_id})

    app = guard.api([guard.route("/portals/{portal_id}/x", echo, ["GET"], Access.PORTAL)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as s:
        ok = await s.get(f"/portals/{portal}/x", headers={"Authorization": f"Bearer {grant}"})
    assert ok.status_code == 200


async def test_sign_out_needs_the_csrf_token_and_ends_the_session(connector: Any) -> None:
    portal = connector.new_portal()
    await connector.sign_in(portal)
    csrf = (await session_of(connector, portal)).json()["csrf_token"]
    connector.secrets.add(csrf)

    async with connector.browser(portal) as browser:
        forged = await browser.post(f"{connector.base_url}/signout")
        still = await browser.get(f"{connector.base_url}/v1/session")
        out = await browser.post(f"{connector.base_url}/signout", headers={"X-CSRF-Token": csrf})
    after = await session_of(connector, portal)  # the old cookie, kept by whoever copied it

    assert forged.status_code == 401
    assert still.status_code == 200
    assert out.status_code == 204
    assert 'dealbooks_session=""' in out.headers["set-cookie"]
    assert after.status_code == 401


async def test_an_uninstalled_portal_gets_no_token_publishes_once_and_reinstalling_resumes(
    connector: Any, crm_sandbox: Any
) -> None:
    portal = connector.new_portal()
    await connector.sign_in(portal, "/install")
    token = (await crm_token(connector, portal)).json()["access_token"]
    crm_sandbox.control.delete(f"/portals/{portal}/install").raise_for_status()

    # A service's CRM call is refused (401): it reports the token, connector-auth refreshes,
    # and the CRM answers BAD_REFRESH_TOKEN.
    rejected = await crm_token(connector, portal, hashlib.sha256(token.encode()).hexdigest())
    again = await crm_token(connector, portal)
    events = await connector.events("connector.portal-uninstalled.v1", 1, portal)
    await connector.sign_in(portal, "/install")
    resumed = await crm_token(connector, portal)
    installs = await connector.events("connector.portal-installed.v1", 2, portal)
    assert [e["data"]["reinstall"] for e in installs] == [False, True]

    assert rejected.status_code == 404
    assert rejected.json()["error"] == "not_installed"
    assert again.status_code == 404
    assert [e["data"]["reason"] for e in events] == ["refresh_refused"]
    assert resumed.status_code == 200


async def test_a_person_can_uninstall_the_app_from_dealbooks(
    connector: Any, crm_sandbox: Any, db: Any
) -> None:
    portal = connector.new_portal()
    await connector.sign_in(portal, "/install")
    csrf = (await session_of(connector, portal)).json()["csrf_token"]

    async with connector.browser(portal) as browser:
        done = await browser.delete(
            f"{connector.base_url}/v1/portals/{portal}/install", headers={"X-CSRF-Token": csrf}
        )

    assert done.status_code == 204
    assert (await db.portals.find_one({"_id": portal}))["status"] == "uninstalled"
    assert "tokens" not in await db.portals.find_one({"_id": portal})
    assert crm_sandbox.control.get(f"/portals/{portal}").json()["installed"] is False
    assert (await crm_token(connector, portal)).status_code == 404


async def test_a_sign_in_link_opened_in_another_browser_signs_nobody_in(
    connector: Any, db: Any
) -> None:
    # Someone starts a sign-in as themselves and sends the callback link to a victim: the
    # victim's browser must not end up signed in as them.
    portal = connector.new_portal()
    set_consent(connector, portalId=int(portal), mode="auto", count=1)
    async with httpx.AsyncClient(timeout=30.0) as attacker:
        start = await attacker.get(f"{connector.base_url}/signin")
        consent = await attacker.get(start.headers["location"])
    async with httpx.AsyncClient(timeout=30.0) as victim:
        lured = await victim.get(consent.headers["location"])

    assert lured.status_code == 400
    assert "another browser" in lured.text
    assert "dealbooks_session" not in lured.headers.get("set-cookie", "")
    assert await db.portals.find_one({"_id": portal}) is None
