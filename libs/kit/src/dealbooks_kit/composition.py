"""What every service's composition root does the same way: hold its runtime and API clients,
serve them as one ASGI app that closes the clients on shutdown, and put its routes under a guard
that refuses to start without the credentials they check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from faststream.asgi.types import ASGIApp

from dealbooks_kit.access import ApiClients
from dealbooks_kit.auth import Access, Guard
from dealbooks_kit.runtime import ServiceApp, ServiceRuntime
from dealbooks_kit.settings import KitSettings


class Composed(Protocol):
    """A service process as its composition root built it."""

    @property
    def runtime(self) -> ServiceRuntime: ...

    async def aclose(self) -> None: ...


@dataclass
class ServiceParts:
    """A service process's runtime and API clients; a service's own parts extend it."""

    runtime: ServiceRuntime
    clients: ApiClients

    async def aclose(self) -> None:
        """Close the API clients (the runtime stops itself)."""
        await self.clients.aclose()


SettingsT = TypeVar("SettingsT", bound=KitSettings)
ComposedT = TypeVar("ComposedT", bound=Composed)


def serving(service: Composed, *, api: ASGIApp | None, title: str) -> ServiceApp:
    """The ASGI app of `service`: health, metrics and `api`, closing the service on shutdown."""
    app = service.runtime.asgi(api=api, title=title)
    app.on_shutdown(service.aclose)
    return app


def service_app(
    settings: SettingsT,
    build: Callable[[SettingsT], ComposedT],
    api: Callable[[ComposedT, Guard], ASGIApp],
    *,
    title: str,
    requires: tuple[Access, ...],
) -> ServiceApp:
    """The ASGI app of the service `build` makes of `settings`, its `api` under a guard; in
    production it refuses to start without the credentials of each access in `requires`."""
    guard = Guard(settings, settings.service_name)
    guard.require(*requires)
    service = build(settings)
    return serving(service, api=api(service, guard), title=title)
