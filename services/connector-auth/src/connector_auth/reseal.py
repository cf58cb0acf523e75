"""Re-encrypting stored tokens with the active key, so an old key can be removed.

Rotation (deploy/RUNBOOK.md): put a new key first in `CONNECTOR_AUTH_TOKEN_KEYS`, keep the old
one after it, and restart. New and refreshed tokens are sealed with the new key at once; this
pass re-seals the rest (accounts and portals whose tokens were not refreshed since), after
which no stored token names the old key and it can be removed.

A token is re-sealed by a conditional write on the very ciphertext it read, and the token
version is left alone: a refresh running meanwhile writes its new tokens as if the pass had
never been, and the pass's write then finds nothing to change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dealbooks_kit import get_logger
from pymongo.asynchronous.collection import AsyncCollection

from connector_auth.crypto import TokenCipher

log = get_logger(__name__)

FIELDS = ("access", "refresh")


async def reseal(
    collection: AsyncCollection[dict[str, Any]],
    cipher: TokenCipher,
    context_of: Callable[[dict[str, Any]], str],
) -> int:
    """Re-seal with the active key every token of `collection` sealed with another;
    `context_of(doc)` is the prefix its ciphertexts are bound to. Returns the documents
    changed."""
    changed = 0
    stale = {"$or": [{f"tokens.{f}.kid": {"$ne": cipher.active_kid}} for f in FIELDS]}
    async for doc in collection.find({"tokens": {"$exists": True}, **stale}, {"tokens": 1}):
        tokens = doc.get("tokens") or {}
        old = {f: tokens[f] for f in FIELDS if isinstance(tokens.get(f), dict)}
        moved = {f: sealed for f, sealed in old.items() if not cipher.is_current(sealed)}
        if not moved:
            continue
        prefix = context_of(doc)
        fresh = {
            f"tokens.{f}": cipher.encrypt(cipher.decrypt(sealed, f"{prefix}:{f}"), f"{prefix}:{f}")
            for f, sealed in moved.items()
        }
        unchanged = {f"tokens.{f}.ct": sealed["ct"] for f, sealed in moved.items()}
        result = await collection.update_one({"_id": doc["_id"], **unchanged}, {"$set": fresh})
        changed += result.modified_count
    if changed:
        log.info("tokens re-sealed with the active key", documents=changed, key=cipher.active_kid)
    return changed
