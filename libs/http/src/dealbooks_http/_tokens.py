from __future__ import annotations

from typing import Protocol


class TokenProvider(Protocol):
    """Hands out a currently valid bearer token for a tenant key (QBO realm or CRM portal)."""

    async def token(self, key: str) -> str:
        """Return a valid access token for `key`."""
        ...

    async def invalidate(self, key: str, token: str) -> None:
        """Forget `token` (the API rejected it); the next `token()` must fetch a fresh one."""
        ...


class StaticTokenProvider:
    """Fixed tokens per key, for tests, the demo and private-app tokens."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens = dict(tokens)

    def set(self, key: str, token: str) -> None:
        self._tokens[key] = token

    async def token(self, key: str) -> str:
        return self._tokens[key]

    async def invalidate(self, key: str, token: str) -> None:
        return None
