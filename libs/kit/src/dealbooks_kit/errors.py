"""How a handler tells the kit whether a failure is worth retrying."""

from __future__ import annotations


class PermanentError(Exception):
    """Retrying cannot help (validation, a business rule, a 4xx): dead-letter with this reason.

    `reason` is written for a person reading the dead-letter topic.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(Exception):
    """A passing failure (timeout, 429, 5xx, broker or database unavailable): retry with backoff."""


class Settled(Exception):
    """Nothing can or should be done for this event, and nothing is wrong with it either: the
    portal it belongs to has uninstalled the app, say. The consumer settles it (no retry, no
    dead letter) and logs `reason` for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
