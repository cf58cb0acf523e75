"""`python -m status_tracker`: run the service (consumers, sweeps, read API) under uvicorn."""

from dealbooks_kit import serve

from status_tracker.app import build_app
from status_tracker.settings import StatusTrackerSettings


def main() -> None:
    settings = StatusTrackerSettings()
    serve(build_app(settings), settings)


if __name__ == "__main__":
    main()
