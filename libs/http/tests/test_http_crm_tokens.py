"""CRM tokens from connector-auth: which answers mean "not installed", and how long that is
believed."""

from __future__ import annotations

import httpx
import pytest
from dealbooks_http import ConnectorTokenProvider, PortalNotInstalled


def provider(answer: httpx.Response, calls: list[str]) -> ConnectorTokenProvider:
    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return answer

    http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return ConnectorTokenProvider("http://connector-auth", "svc", http=http)


async def test_connector_auths_not_installed_is_believed_for_a_few_seconds() -> None:
    calls: list[str] = []
    tokens = provider(httpx.Response(404, json={"error": "not_installed"}), calls).crm(60.0)

    for _ in range(3):
        with pytest.raises(PortalNotInstalled):
            await tokens.token("62515")
    tokens.installed("62515")  # connector.portal-installed heard: ask at once
    with pytest.raises(PortalNotInstalled):
        await tokens.token("62515")

    assert calls == ["/internal/v1/portals/62515/crm/access-token"] * 2


async def test_any_other_404_is_a_failure_not_an_uninstall() -> None:
    calls: list[str] = []
    tokens = provider(httpx.Response(404, text="no such route"), calls).crm()

    with pytest.raises(httpx.HTTPStatusError):
        await tokens.token("62515")


async def test_a_token_is_kept_for_what_is_left_of_its_life() -> None:
    calls: list[str] = []
    answer = httpx.Response(200, json={"access_token": "t-1", "expires_in": 1500})
    tokens = provider(answer, calls).crm()

    assert [await tokens.token("62515") for _ in range(3)] == ["t-1"] * 3
    assert len(calls) == 1
