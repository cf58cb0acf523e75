"""`python -m qbo_sandbox --host 127.0.0.1 --port 8765 [--time-scale 60] [--seed demo]`."""

from __future__ import annotations

import argparse

import uvicorn

from qbo_sandbox.app import build_app
from qbo_sandbox.config import SandboxConfig


def main(argv: list[str] | None = None) -> None:
    cfg = SandboxConfig.from_env()
    parser = argparse.ArgumentParser(
        prog="qbo_sandbox", description="QuickBooks Online API emulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=cfg.time_scale,
        help="divide webhook back-off and aggregation delays by this factor",
    )
    parser.add_argument(
        "--seed", default=cfg.seed, help="demo | none | path to a JSON list of companies"
    )
    parser.add_argument("--no-throttle", action="store_true", help="disable the per-realm limits")
    parser.add_argument("--throttle-format", choices=["xml", "json"], default=cfg.throttle_format)
    parser.add_argument("--requests-per-minute", type=int, default=cfg.requests_per_minute)
    parser.add_argument("--requests-per-second", type=int, default=cfg.requests_per_second)
    parser.add_argument("--concurrent-requests", type=int, default=cfg.concurrent_requests)
    parser.add_argument("--batch-per-minute", type=int, default=cfg.batch_per_minute)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    cfg.time_scale = args.time_scale
    cfg.seed = args.seed
    cfg.throttling = cfg.throttling and not args.no_throttle
    cfg.throttle_format = args.throttle_format
    cfg.requests_per_minute = args.requests_per_minute
    cfg.requests_per_second = args.requests_per_second
    cfg.concurrent_requests = args.concurrent_requests
    cfg.batch_per_minute = args.batch_per_minute
    uvicorn.run(
        build_app(cfg),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        # Injected timeouts hold requests open; they must not delay a stop.
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
