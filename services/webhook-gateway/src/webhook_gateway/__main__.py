"""`python -m webhook_gateway`: serve webhook-gateway with settings from the environment."""

from __future__ import annotations

from dealbooks_kit import serve

from webhook_gateway.app import build_app
from webhook_gateway.settings import WebhookGatewaySettings


def main() -> None:
    settings = WebhookGatewaySettings()
    serve(build_app(settings), settings)


if __name__ == "__main__":
    main()
