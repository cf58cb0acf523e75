"""What the console's page tests share: the console over stand-in services (httpx's mock
transport), reached as a signed-in person's browser."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from console.app import build_app
from console.settings import ConsoleSettings

COOKIE = "dbs1.k.claims.mac"  # shaped like connector-auth's session cookie
Services = Callable[[httpx.Request], httpx.Response]


@asynccontextmanager
async def _signed_in(
    services: Services,
    *,
    portal: str,
    csrf: str,
    session: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser with a session cookie, talking to a console whose services are `services`;
    connector-auth's session question is answered here (Ann, of `portal`, with `csrf`, and
    whatever `session` adds)."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/session":
            return httpx.Response(200, json={
                "user_id": "u-ann", "portals": [portal], "email": "ann@summit.example",
                "grant": {"token": "grant", "expires_in": 300}, "csrf_token": csrf,
                **(session or {}),
            })  # fmt: skip
        return services(request)

    app = build_app(
        ConsoleSettings(
            connector_auth_url="http://auth", invoice_builder_url="http://builder", **settings
        ),
        http=httpx.AsyncClient(transport=httpx.MockTransport(answer)),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://console",
        cookies={"dealbooks_session": COOKIE},
        headers={"accept": "text/html"},
    ) as client:
        yield client


@pytest.fixture
def signed_in() -> Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]:
    """`async with signed_in(services, portal=..., csrf=..., session=..., **settings) as
    browser:` a signed-in person's browser (a session cookie; the session is answered for
    `services`, with `session`'s fields besides)."""
    return _signed_in
