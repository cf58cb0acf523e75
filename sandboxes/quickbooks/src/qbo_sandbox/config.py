"""Sandbox settings. Every figure QBO documents loosely (or not at all) is a knob here."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# Intuit's 2025 schedule for redelivering a failed webhook batch, in seconds; then every 6 h.
WEBHOOK_RETRY_SCHEDULE: tuple[float, ...] = (0, 10, 20, 30, 300, 1200, 7200, 14400, 21600)


@dataclass
class AppConfig:
    """One registered OAuth app (a development or production key pair)."""

    client_id: str
    client_secret: str
    environment: str  # "sandbox" | "production"
    redirect_uris: tuple[str, ...] = ()


@dataclass
class SandboxConfig:
    # Divides every webhook back-off and aggregation delay, so tests can see retries quickly.
    time_scale: float = 1.0
    # The consent screen lets the person choose the company (as Intuit's does for a user of
    # several companies) instead of approving the first one of the app's environment.
    company_chooser: bool = False
    requests_per_minute: int = 500
    requests_per_second: int = 10
    concurrent_requests: int = 10
    batch_per_minute: int = 40
    batch_max_items: int = 30
    max_results: int = 1000
    throttling: bool = True
    throttle_format: str = "xml"  # "xml" | "json": the real 429 is often XML
    access_token_seconds: int = 3600
    refresh_token_seconds: int = 8_726_400
    refresh_grace_seconds: int = 86_400
    cdc_days: int = 30
    cdc_max_objects: int = 1000
    send_bumps_synctoken: bool = False
    requestid_conflict_600: bool = False
    enforce_unique_docnumber: bool = True
    require_docnumber_with_custom: bool = True
    # How QBO's reader takes values of uncertain shape (see the README): "" in a non-string
    # property as absent, and numbers sent as strings.
    empty_string_as_absent: bool = True
    numbers_from_strings: bool = True
    # When a sales line's Amount must equal Qty x UnitPrice: nonzero | present | off.
    qty_price_check: str = "nonzero"
    webhook_aggregation_seconds: float = 0.05
    webhook_max_events: int = 100
    webhook_timeout_seconds: float = 3.0
    apps: list[AppConfig] = field(
        default_factory=lambda: [
            AppConfig("sandbox-client", "sandbox-secret", "sandbox"),
            AppConfig("production-client", "production-secret", "production"),
        ]
    )
    seed: str = "demo"  # "demo" | "none" | path to a JSON list of companies

    @classmethod
    def from_env(cls) -> SandboxConfig:
        """Defaults overridden by QBO_SANDBOX_<FIELD> environment variables."""
        cfg = cls()
        for name, value in vars(cfg).items():
            raw = os.environ.get(f"QBO_SANDBOX_{name.upper()}")
            if raw is None or isinstance(value, list):
                continue
            if isinstance(value, bool):
                setattr(cfg, name, raw.lower() in {"1", "true", "yes", "on"})
            elif isinstance(value, int):
                setattr(cfg, name, int(raw))
            elif isinstance(value, float):
                setattr(cfg, name, float(raw))
            else:
                setattr(cfg, name, raw)
        return cfg
