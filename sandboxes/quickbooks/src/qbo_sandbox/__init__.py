"""A QuickBooks Online Accounting API emulator: realms, OAuth, entities, query, batch, CDC,
throttling and webhooks, served over HTTP for development, the demo and tests."""

from qbo_sandbox.app import build_app
from qbo_sandbox.config import SandboxConfig

__all__ = ["SandboxConfig", "build_app"]
