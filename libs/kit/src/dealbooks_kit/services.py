"""The services of dealbooks, in the order the local stack starts them, and how their settings
are named in the environment: what the stack, its tests and the operator's command line share."""

from __future__ import annotations

SERVICES = (
    "connector-auth",
    "webhook-gateway",
    "invoice-builder",
    "status-tracker",
    "reminders",
    "contact-sync",
    "product-sync",
    "mapping-registry",
    "console",
)


def env_prefix(service: str) -> str:
    """The settings prefix of a service: invoice-builder -> INVOICE_BUILDER_."""
    return service.upper().replace("-", "_") + "_"
