"""pytest plugin: a real CRM sandbox process for the session, fresh portals per test.

Fixtures: `crm_sandbox` (session; base URL and control helpers), `crm_portal` and
`crm_other_portal` (a fresh portal each), `crm_webhook_receiver` (a loopback endpoint
registered as the app's webhook target for the test), `crm_app_endpoint` (a loopback endpoint
standing in for the app's own routes: card fetches, workflow actions, the OAuth redirect) and
`crm_consent` (the sandbox, with the authorize screen's consent and the app's redirect URLs
put back to their defaults after the test)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from crm_sandbox.testing import CrmSandbox, SandboxPortal, WebhookReceiver, running_sandbox

# Rate windows run 50x faster (10 s -> 0.2 s) and webhook back-off 5000x (60 s -> 12 ms),
# so limits and retries are exercised for real without slowing the suite.
TIME_SCALE = os.environ.get("CRM_SANDBOX_TEST_TIME_SCALE", "50")
WEBHOOK_TIME_SCALE = os.environ.get("CRM_SANDBOX_TEST_WEBHOOK_TIME_SCALE", "5000")


@pytest.fixture(scope="session")
def crm_sandbox() -> Iterator[CrmSandbox]:
    """The CRM sandbox as a subprocess on a free 127.0.0.1 port, for the whole session."""
    with running_sandbox(
        "--time-scale", TIME_SCALE, "--webhook-time-scale", WEBHOOK_TIME_SCALE
    ) as sb:
        yield sb


@pytest.fixture
def crm_portal(crm_sandbox: CrmSandbox) -> SandboxPortal:
    """A fresh portal (USD, default limits) with an OAuth and a private-app token."""
    return crm_sandbox.create_portal()


@pytest.fixture
def crm_other_portal(crm_sandbox: CrmSandbox) -> SandboxPortal:
    """A second, unrelated portal (EUR) for tenant-isolation tests."""
    return crm_sandbox.create_portal(companyCurrency="EUR")


@pytest.fixture
def crm_webhook_receiver(crm_sandbox: CrmSandbox) -> Iterator[WebhookReceiver]:
    """A webhook endpoint set as the app's target; subscriptions are cleared afterwards."""
    receiver = WebhookReceiver().start()
    crm_sandbox.clear_subscriptions()
    crm_sandbox.clear_deliveries()
    crm_sandbox.configure_app(target_url=receiver.url)
    try:
        yield receiver
    finally:
        crm_sandbox.configure_app(target_url="")
        crm_sandbox.clear_subscriptions()
        crm_sandbox.clear_faults()
        receiver.stop()


@pytest.fixture
def crm_app_endpoint() -> Iterator[WebhookReceiver]:
    """A loopback endpoint for requests HubSpot sends to the app; set `answer` to reply."""
    endpoint = WebhookReceiver().start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture
def crm_consent(crm_sandbox: CrmSandbox) -> Iterator[CrmSandbox]:
    """The sandbox for a test that changes the authorize screen; reset afterwards."""
    try:
        yield crm_sandbox
    finally:
        crm_sandbox.reset_consent()
        crm_sandbox.configure_app(redirect_urls=[])
