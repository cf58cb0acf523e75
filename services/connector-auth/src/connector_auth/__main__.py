"""`python -m connector_auth`: serve connector-auth with settings from the environment."""

from __future__ import annotations

from dealbooks_kit import serve

from connector_auth.app import build_app
from connector_auth.settings import ConnectorAuthSettings


def main() -> None:
    settings = ConnectorAuthSettings()
    serve(build_app(settings), settings)


if __name__ == "__main__":
    main()
