"""`python -m console`: serve the console with settings from the environment."""

from __future__ import annotations

from dealbooks_kit import configure_logging, get_logger

from console.app import build_app
from console.settings import ConsoleSettings

log = get_logger(__name__)


def main() -> None:
    import uvicorn

    settings = ConsoleSettings()
    configure_logging(settings.service_name, settings.log_level, json=settings.log_json)
    log.info("starting", host=settings.http_host, port=settings.http_port)
    uvicorn.run(
        build_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
