"""`python -m reminders`: run the service (consumers, the reminder pass, its API) under uvicorn."""

from dealbooks_kit import serve

from reminders.app import build_app
from reminders.settings import RemindersSettings


def main() -> None:
    settings = RemindersSettings()
    serve(build_app(settings), settings)


if __name__ == "__main__":
    main()
