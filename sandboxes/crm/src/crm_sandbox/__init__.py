"""A HubSpot-style CRM API emulator over HTTP (see the package README)."""

from crm_sandbox.app import build_app
from crm_sandbox.state import SandboxConfig

__all__ = ["SandboxConfig", "build_app"]
