"""A public app's install as HubSpot runs it: users, the authorize screen, codes, tokens,
token info, refresh-token deletion, uninstall and reinstall."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from crm_sandbox.testing import CrmSandbox, SandboxPortal, WebhookReceiver, wait_until

REDIRECT = "http://127.0.0.1:8099/oauth/callback"
SCOPES = ["oauth", "crm.objects.deals.read", "crm.objects.deals.write"]


def browse(url: str) -> httpx.Response:
    """One browser step: the response as is, redirects not followed."""
    return httpx.get(url, follow_redirects=False, timeout=10)


def redirect_params(response: httpx.Response, redirect_uri: str = REDIRECT) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(redirect_uri + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(sb: CrmSandbox, code: str, redirect_uri: str = REDIRECT) -> httpx.Response:
    app = sb.app()
    form = {
        "grant_type": "authorization_code",
        "client_id": app["clientId"],
        "client_secret": app["clientSecret"],
        "code": code,
        "redirect_uri": redirect_uri,
    }
    return httpx.post(sb.base_url + "/oauth/v1/token", data=form, timeout=10)


def refresh(sb: CrmSandbox, refresh_token: str) -> httpx.Response:
    app = sb.app()
    form = {
        "grant_type": "refresh_token",
        "client_id": app["clientId"],
        "client_secret": app["clientSecret"],
        "refresh_token": refresh_token,
    }
    return httpx.post(sb.base_url + "/oauth/v1/token", data=form, timeout=10)


def install(sb: CrmSandbox, portal_id: int, scopes: list[str] = SCOPES) -> dict[str, Any]:
    """Authorize in the browser for the portal, then exchange the code like the app."""
    response = browse(sb.authorize_url(REDIRECT, scopes, portal_id=portal_id, state="s"))
    tokens = exchange(sb, redirect_params(response)["code"])
    assert tokens.status_code == 200, tokens.text
    return dict(tokens.json())


def deals_status(sb: CrmSandbox, token: str) -> httpx.Response:
    return httpx.get(
        sb.base_url + "/crm/v3/objects/deals",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


# ---- users ------------------------------------------------------------------------------------


def test_new_portal_has_one_admin_user_and_users_can_be_added(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    pid = crm_portal.portal_id
    [admin] = crm_sandbox.users(pid)
    assert admin == {
        "userId": pid * 1000 + 1,
        "email": f"admin@{pid}.example.com",
        "firstName": "",
        "lastName": "",
    }
    added = crm_sandbox.add_user(pid, "ops@example.com")
    assert added["userId"] != admin["userId"]
    assert [u["email"] for u in crm_sandbox.users(pid)] == [admin["email"], "ops@example.com"]
    with pytest.raises(httpx.HTTPStatusError) as duplicate:
        crm_sandbox.add_user(pid, "OPS@example.com")
    assert duplicate.value.response.status_code == 409


# ---- the authorize screen -------------------------------------------------------------------


def test_authorize_approves_automatically_for_the_signed_in_user(
    crm_consent: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    sb = crm_consent
    user = sb.add_user(crm_portal.portal_id, "installer@example.com")
    sb.set_consent(user_id=user["userId"], count=1)
    url = sb.authorize_url(REDIRECT, SCOPES, optional_scopes=["timeline"], state="xyz")
    params = redirect_params(browse(url))
    assert params["state"] == "xyz" and params["code"]
    tokens = exchange(sb, params["code"])
    body = tokens.json()
    assert tokens.status_code == 200
    assert set(body) >= {"token_type", "refresh_token", "access_token", "expires_in", "hub_id"}
    assert body["hub_id"] == crm_portal.portal_id
    assert body["user_id"] == user["userId"]
    assert body["scopes"] == sorted([*SCOPES, "timeline"])
    assert deals_status(sb, body["access_token"]).status_code == 200
    portal = sb.read_portal(crm_portal.portal_id)
    assert portal["installed"] is True and portal["installingUserId"] == user["userId"]


def test_account_specific_authorize_url_picks_that_portal(
    crm_consent: CrmSandbox, crm_portal: SandboxPortal, crm_other_portal: SandboxPortal
) -> None:
    crm_consent.set_consent(portal_id=crm_portal.portal_id, count=1)
    tokens = install(crm_consent, crm_other_portal.portal_id)
    assert tokens["hub_id"] == crm_other_portal.portal_id


def test_denied_consent_redirects_with_access_denied(
    crm_consent: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    crm_consent.set_consent(portal_id=crm_portal.portal_id, decision="deny", count=1)
    params = redirect_params(browse(crm_consent.authorize_url(REDIRECT, SCOPES, state="st")))
    assert params["error"] == "access_denied"
    assert params["error_description"]
    assert params["state"] == "st"
    assert "code" not in params


def test_consent_count_runs_out_then_default_applies(
    crm_consent: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    crm_consent.set_consent(portal_id=crm_portal.portal_id, decision="deny", count=1)
    url = crm_consent.authorize_url(REDIRECT, SCOPES, portal_id=crm_portal.portal_id)
    assert "error" in redirect_params(browse(url))
    assert "code" in redirect_params(browse(url))
    assert crm_consent.set_consent(mode="page")["count"] is None


def _form_request_id(page: str) -> str:
    match = re.search(r'name="request" value="([^"]+)"', page)
    assert match
    return match.group(1)


def test_consent_page_lists_scopes_and_connects_the_chosen_account(
    crm_consent: CrmSandbox, crm_portal: SandboxPortal, crm_other_portal: SandboxPortal
) -> None:
    sb = crm_consent
    sb.set_consent(portal_id=crm_portal.portal_id, mode="page", count=1)
    page = browse(sb.authorize_url(REDIRECT, SCOPES, state="p"))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert f"admin@{crm_portal.portal_id}.example.com" in html
    assert sb.app()["name"] in html
    for scope in SCOPES:
        assert f"<li><code>{scope}</code></li>" in html
    assert f'<option value="{crm_portal.portal_id}" selected>' in html
    assert f'<option value="{crm_other_portal.portal_id}">' in html
    assert '<label for="portalId">' in html
    assert '<button type="submit" name="decision" value="approve">Connect app</button>' in html
    assert '<button type="submit" name="decision" value="deny">Cancel</button>' in html
    form = {
        "request": _form_request_id(html),
        "portalId": str(crm_other_portal.portal_id),
        "decision": "approve",
    }
    answer = httpx.post(sb.base_url + "/oauth/authorize/decision", data=form)
    params = redirect_params(answer)
    assert params["state"] == "p"
    assert exchange(sb, params["code"]).json()["hub_id"] == crm_other_portal.portal_id
    # The page's request is answered once.
    again = httpx.post(sb.base_url + "/oauth/authorize/decision", data=form)
    assert again.status_code == 400


def test_consent_page_cancel_redirects_with_access_denied(
    crm_consent: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    crm_consent.set_consent(portal_id=crm_portal.portal_id, mode="page", count=1)
    page = browse(crm_consent.authorize_url(REDIRECT, SCOPES))
    form = {
        "request": _form_request_id(page.text),
        "portalId": str(crm_portal.portal_id),
        "decision": "deny",
    }
    answer = httpx.post(crm_consent.base_url + "/oauth/authorize/decision", data=form)
    assert redirect_params(answer)["error"] == "access_denied"


def test_wrong_client_id_is_a_400_page(crm_sandbox: CrmSandbox) -> None:
    response = browse(crm_sandbox.authorize_url(REDIRECT, SCOPES, client_id="nope"))
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "client_id" in response.text


def test_redirect_uri_must_be_registered_or_loopback_or_https(
    crm_consent: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    sb = crm_consent
    pid = crm_portal.portal_id
    assert browse(sb.authorize_url("http://app.example.com/cb", SCOPES, portal_id=pid)).is_error
    assert browse(sb.authorize_url("https://app.example.com/cb", SCOPES, portal_id=pid)).is_redirect
    sb.configure_app(redirect_urls=["https://app.example.com/cb"])
    mismatch = browse(sb.authorize_url(REDIRECT, SCOPES, portal_id=pid))
    assert mismatch.status_code == 400 and "redirect" in mismatch.text
    registered = browse(sb.authorize_url("https://app.example.com/cb", SCOPES, portal_id=pid))
    assert redirect_params(registered, "https://app.example.com/cb")["code"]


def test_granted_scopes_can_differ_from_the_requested_ones(
    crm_consent: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    crm_consent.set_consent(
        portal_id=crm_portal.portal_id, scopes=["oauth", "crm.objects.deals.read"], count=1
    )
    tokens = install(crm_consent, crm_portal.portal_id, [*SCOPES, "timeline"])
    assert tokens["scopes"] == ["crm.objects.deals.read", "oauth"]
    timeline = httpx.post(
        crm_consent.base_url + "/integrators/timeline/v3/events",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        json={},
    )
    assert timeline.status_code == 403
    assert sorted(crm_consent.read_portal(crm_portal.portal_id)["scopes"]) == tokens["scopes"]


# ---- codes ------------------------------------------------------------------------------------


def test_code_is_single_use_and_bound_to_its_redirect_uri(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    url = crm_sandbox.authorize_url(REDIRECT, SCOPES, portal_id=crm_portal.portal_id)
    code = redirect_params(browse(url))["code"]
    wrong = exchange(crm_sandbox, code, "http://127.0.0.1:8099/elsewhere")
    assert wrong.status_code == 400
    assert wrong.json()["status"] == "BAD_REDIRECT_URI" and wrong.json()["message"]
    assert exchange(crm_sandbox, code).status_code == 200
    reused = exchange(crm_sandbox, code)
    assert reused.status_code == 400 and reused.json()["status"] == "BAD_AUTH_CODE"


# ---- token info ---------------------------------------------------------------------------------


def test_token_info_describes_the_access_and_refresh_tokens(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    pid = crm_portal.portal_id
    tokens = install(crm_sandbox, pid)
    app = crm_sandbox.app()
    info = crm_sandbox.token_info(tokens["access_token"])
    assert info is not None
    assert info["token"] == tokens["access_token"]
    assert info["user"] == f"admin@{pid}.example.com"
    assert info["hub_domain"] == f"{pid}.example.com"
    assert info["scopes"] == sorted(SCOPES)
    assert len(info["scope_to_scope_group_pks"]) == len(SCOPES)
    assert (info["hub_id"], info["app_id"], info["user_id"]) == (pid, app["appId"], pid * 1000 + 1)
    assert info["token_type"] == "access"
    assert 0 < info["expires_in"] <= 1800
    signed = info["signed_access_token"]
    assert (signed["hubId"], signed["userId"], signed["appId"]) == (
        pid,
        pid * 1000 + 1,
        app["appId"],
    )
    assert signed["installingUserId"] == pid * 1000 + 1
    assert signed["hublet"] == "na1" and signed["expiresAt"] > 0
    refresh_info = crm_sandbox.token_info(tokens["refresh_token"], refresh=True)
    assert refresh_info == {
        "token": tokens["refresh_token"],
        "user": f"admin@{pid}.example.com",
        "hub_domain": f"{pid}.example.com",
        "scopes": sorted(SCOPES),
        "hub_id": pid,
        "client_id": app["clientId"],
        "user_id": pid * 1000 + 1,
        "token_type": "refresh",
    }


def test_token_info_of_unknown_or_expired_tokens_is_404(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    missing = httpx.get(crm_sandbox.base_url + "/oauth/v1/access-tokens/nope")
    assert missing.status_code == 404
    assert {"status", "message", "correlationId", "category"} <= set(missing.json())
    crm_sandbox.expire_token(crm_portal.access_token)
    assert crm_sandbox.token_info(crm_portal.access_token) is None
    assert crm_sandbox.token_info(crm_portal.private_app_token) is None
    assert crm_sandbox.token_info("nope", refresh=True) is None


def test_deleting_a_refresh_token_keeps_access_tokens_and_the_install(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    url = f"{crm_sandbox.base_url}/oauth/v1/refresh-tokens/{crm_portal.refresh_token}"
    assert httpx.delete(url).status_code == 204
    assert httpx.delete(url).status_code == 404
    assert refresh(crm_sandbox, crm_portal.refresh_token).json()["status"] == "BAD_REFRESH_TOKEN"
    assert deals_status(crm_sandbox, crm_portal.access_token).status_code == 200
    assert crm_sandbox.read_portal(crm_portal.portal_id)["installed"] is True


# ---- uninstall and reinstall ------------------------------------------------------------------


def test_uninstall_revokes_the_portals_oauth_tokens_only(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm_other_portal: SandboxPortal
) -> None:
    crm_sandbox.uninstall(crm_portal.portal_id)
    denied = deals_status(crm_sandbox, crm_portal.access_token)
    assert denied.status_code == 401
    assert denied.json()["category"] == "INVALID_AUTHENTICATION"
    refused = refresh(crm_sandbox, crm_portal.refresh_token)
    assert refused.status_code == 400 and refused.json()["status"] == "BAD_REFRESH_TOKEN"
    assert crm_sandbox.token_info(crm_portal.access_token) is None
    assert crm_sandbox.token_info(crm_portal.refresh_token, refresh=True) is None
    assert deals_status(crm_sandbox, crm_portal.private_app_token).status_code == 200
    assert deals_status(crm_sandbox, crm_other_portal.access_token).status_code == 200
    portal = crm_sandbox.read_portal(crm_portal.portal_id)
    assert portal["installed"] is False and portal["scopes"] == []


def test_app_uninstalls_itself_with_its_access_token(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    url = crm_sandbox.base_url + "/appinstalls/v3/external-install"
    private = {"Authorization": f"Bearer {crm_portal.private_app_token}"}
    assert httpx.delete(url, headers=private).status_code == 403
    oauth = {"Authorization": f"Bearer {crm_portal.access_token}"}
    assert httpx.delete(url, headers=oauth).status_code == 204
    assert deals_status(crm_sandbox, crm_portal.access_token).status_code == 401
    assert crm_sandbox.read_portal(crm_portal.portal_id)["installed"] is False


def test_a_new_code_reinstalls_an_uninstalled_portal(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    crm_sandbox.uninstall(crm_portal.portal_id)
    tokens = install(crm_sandbox, crm_portal.portal_id)
    assert deals_status(crm_sandbox, tokens["access_token"]).status_code == 200
    portal = crm_sandbox.read_portal(crm_portal.portal_id)
    assert portal["installed"] is True and portal["scopes"] == SCOPES
    assert refresh(crm_sandbox, tokens["refresh_token"]).status_code == 200


def test_reinstall_keeps_the_old_refresh_token_and_other_portals(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm_other_portal: SandboxPortal
) -> None:
    tokens = install(crm_sandbox, crm_portal.portal_id)
    assert tokens["refresh_token"] != crm_portal.refresh_token
    old = refresh(crm_sandbox, crm_portal.refresh_token)
    assert old.status_code == 200 and old.json()["hub_id"] == crm_portal.portal_id
    assert deals_status(crm_sandbox, crm_portal.access_token).status_code == 200
    assert refresh(crm_sandbox, crm_other_portal.refresh_token).status_code == 200
    assert deals_status(crm_sandbox, crm_other_portal.access_token).status_code == 200


def test_uninstalled_portal_gets_no_webhooks(
    crm_sandbox: CrmSandbox,
    crm_portal: SandboxPortal,
    crm_other_portal: SandboxPortal,
    crm_webhook_receiver: WebhookReceiver,
) -> None:
    crm_sandbox.subscribe("deal.creation")
    crm_sandbox.uninstall(crm_portal.portal_id)
    crm_sandbox.create_as_user(crm_portal.portal_id, "deals", {"dealname": "Gone"})
    crm_sandbox.create_as_user(crm_other_portal.portal_id, "deals", {"dealname": "Here"})
    crm_webhook_receiver.wait_for_events(lambda e: e["portalId"] == crm_other_portal.portal_id)
    wait_until(lambda: crm_sandbox.deliveries()["pending"] == 0)
    assert all(e["portalId"] != crm_portal.portal_id for e in crm_webhook_receiver.events())
