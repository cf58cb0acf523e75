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
async def _signed_in(services: Services, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A browser with a session cookie, talking to a console whose services are `services`."""
    app = build_app(
        ConsoleSettings(
            connector_auth_url="http://auth", invoice_builder_url="http://builder", **settings
        ),
        http=httpx.AsyncClient(transport=httpx.MockTransport(services)),
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
    """`async with signed_in(services, **settings) as browser:` a signed-in person's browser
    (a session cookie; `services` answers connector-auth's session question too)."""
    return _signed_in
