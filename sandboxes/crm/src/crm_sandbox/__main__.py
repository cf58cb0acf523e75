"""`python -m crm_sandbox --host 127.0.0.1 --port 8765 [--time-scale 10] [--seed seed.json]`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import uvicorn

from crm_sandbox.api_app_events import find_app_events_dir
from crm_sandbox.app import build_app
from crm_sandbox.state import SandboxConfig


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"CRM_SANDBOX_{name}", default)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = SandboxConfig()
    p = argparse.ArgumentParser(prog="crm_sandbox", description=__doc__)
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(_env("PORT", "8765") or 8765))
    p.add_argument(
        "--time-scale",
        type=float,
        default=float(_env("TIME_SCALE", "1") or 1),
        help="run rate windows and Retry-After this many times faster",
    )
    p.add_argument(
        "--webhook-time-scale",
        type=float,
        default=None,
        help="speed-up for webhook retry back-off (defaults to --time-scale)",
    )
    p.add_argument(
        "--limit-per-10s",
        type=int,
        default=d.default_limit,
        help="default per-portal ten-second limit for new portals",
    )
    p.add_argument("--daily-limit", type=int, default=None, help="default per-portal daily limit")
    p.add_argument("--search-per-second", type=int, default=d.search_per_second)
    p.add_argument(
        "--search-lag",
        type=float,
        default=d.search_lag_seconds,
        help="seconds before a write becomes visible to search",
    )
    p.add_argument(
        "--filter-caps",
        default="5,6,18",
        help="max filter groups, filters per group, filters in total",
    )
    p.add_argument("--timeline-duplicate", choices=["overwrite", "conflict"], default="overwrite")
    p.add_argument(
        "--app-events",
        default=_env("APP_EVENTS"),
        help="the app project's app-events folder to deploy (default: the checkout's "
        "hubspot-app/src/app/app-events, when there is one; 'none' for no event types)",
    )
    p.add_argument(
        "--app-events-unapproved",
        action="store_true",
        help="new portals see the app's app events as not approved (v4 sends get 403)",
    )
    p.add_argument(
        "--app-event-duplicate",
        choices=["conflict", "ignore"],
        default=d.app_event_duplicate,
        help="what a repeated app event occurrence id gets: 409, or accepted and unchanged",
    )
    p.add_argument("--no-retry-after", action="store_true", help="send 429s without Retry-After")
    p.add_argument("--token-ttl", type=int, default=d.token_ttl_seconds)
    p.add_argument(
        "--auth-code-ttl",
        type=float,
        default=d.auth_code_ttl_seconds,
        help="authorization-code lifetime in seconds, on the --time-scale clock",
    )
    p.add_argument("--app-id", type=int, default=d.app_id)
    p.add_argument("--client-id", default=_env("CLIENT_ID", d.client_id))
    p.add_argument("--client-secret", default=_env("CLIENT_SECRET", d.client_secret))
    p.add_argument("--developer-key", default=_env("DEVELOPER_KEY", d.developer_key))
    p.add_argument("--webhook-batch-size", type=int, default=d.webhook_batch_size)
    p.add_argument("--webhook-duplicate-rate", type=float, default=d.webhook_duplicate_rate)
    p.add_argument("--seed", default=_env("SEED"), help="JSON file with app settings and portals")
    p.add_argument("--log-level", default="warning")
    return p.parse_args(argv)


def _app_events_dir(choice: str | None) -> str | None:
    if choice == "none":
        return None
    if choice:
        return choice
    found = find_app_events_dir(Path.cwd(), Path(__file__).resolve())
    return str(found) if found else None


def config_from(args: argparse.Namespace) -> SandboxConfig:
    groups, per_group, total = (int(x) for x in args.filter_caps.split(","))
    return SandboxConfig(
        time_scale=args.time_scale,
        webhook_time_scale=args.webhook_time_scale,
        default_limit=args.limit_per_10s,
        daily_limit=args.daily_limit,
        search_per_second=args.search_per_second,
        search_lag_seconds=args.search_lag,
        max_filter_groups=groups,
        max_filters_per_group=per_group,
        max_filters_total=total,
        timeline_duplicate=args.timeline_duplicate,
        app_events_dir=_app_events_dir(args.app_events),
        app_events_approved=not args.app_events_unapproved,
        app_event_duplicate=args.app_event_duplicate,
        retry_after_on_429=not args.no_retry_after,
        token_ttl_seconds=args.token_ttl,
        auth_code_ttl_seconds=args.auth_code_ttl,
        app_id=args.app_id,
        client_id=args.client_id,
        client_secret=args.client_secret,
        developer_key=args.developer_key,
        webhook_batch_size=args.webhook_batch_size,
        webhook_duplicate_rate=args.webhook_duplicate_rate,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.host not in {"127.0.0.1", "localhost", "::1"} and not _env("ALLOW_PUBLIC"):
        sys.exit("crm_sandbox listens on loopback only; set CRM_SANDBOX_ALLOW_PUBLIC=1 to override")
    seed = json.loads(Path(args.seed).read_text()) if args.seed else None
    app = build_app(config_from(args), seed)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
