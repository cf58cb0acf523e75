"""Key rotation: tokens sealed with an old key are sealed again with the new one, so the old
key can be removed (on a real MongoDB-wire server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from connector_auth.crypto import TokenCipher, generate_key_spec
from connector_auth.reseal import reseal
from pymongo import AsyncMongoClient

pytestmark = pytest.mark.integration


@pytest.fixture
async def accounts(mongo_uri: str, namespace: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    yield client[f"{namespace}_connector_auth"]["accounts"]
    await client.drop_database(f"{namespace}_connector_auth")
    await client.close()


def sealed(cipher: TokenCipher, key: str) -> dict[str, Any]:
    return {
        "access": cipher.encrypt(f"access-of-{key}", f"{key}:access"),
        "refresh": cipher.encrypt(f"refresh-of-{key}", f"{key}:refresh"),
    }


async def test_a_rotation_reseals_every_old_token_once_and_the_old_key_can_go(
    accounts: Any,
) -> None:
    old_spec, new_spec = generate_key_spec("k1"), generate_key_spec("k2")
    old, rotated = TokenCipher.from_spec(old_spec), TokenCipher.from_spec(f"{new_spec},{old_spec}")
    half = sealed(old, "p1:r2")
    half["access"] = rotated.encrypt("access-of-p1:r2", "p1:r2:access")  # refreshed since
    await accounts.insert_many(
        [
            {"_id": "p1:r1", "tokens": sealed(old, "p1:r1"), "token_version": 4},
            {"_id": "p1:r2", "tokens": half, "token_version": 9},
            {"_id": "p1:r3", "status": "disconnected"},  # no tokens at all
        ]
    )

    changed = await reseal(accounts, rotated, lambda doc: str(doc["_id"]))
    again = await reseal(accounts, rotated, lambda doc: str(doc["_id"]))

    assert (changed, again) == (2, 0)
    only_new = TokenCipher.from_spec(new_spec)
    async for doc in accounts.find({"tokens": {"$exists": True}}):
        key = doc["_id"]
        for field in ("access", "refresh"):
            assert doc["tokens"][field]["kid"] == "k2"
            assert only_new.decrypt(doc["tokens"][field], f"{key}:{field}") == f"{field}-of-{key}"
    # The token version is a refresh's business: re-sealing leaves it alone.
    versions = {doc["_id"]: doc.get("token_version") async for doc in accounts.find()}
    assert versions == {"p1:r1": 4, "p1:r2": 9, "p1:r3": None}
