"""connector-auth's MongoDB collections: accounts and portal installs (each with encrypted
tokens and event outbox in one document), refresh leases, single-use OAuth states, sessions.

Every state change and the event it causes are written in one document update (the kit's
outbox, `dealbooks_kit.outbox`); its relay publishes and removes them, so the two cannot
diverge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from dealbooks_contracts import Envelope
from dealbooks_kit import IndexSpec, push
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from connector_auth.domain import AccountStatus, CompanyFacts, PortalStatus

ACCOUNTS = "accounts"
LEASES = "refresh_leases"
STATES = "oauth_states"
USED_STATES = "oauth_states_used"
PORTALS = "portals"
SESSIONS = "sessions"

INDEXES = [
    IndexSpec(ACCOUNTS, [("portal_id", 1), ("realm_id", 1)], unique=True, name="portal_realm"),
    IndexSpec(ACCOUNTS, [("realm_id", 1)], name="realm"),
    IndexSpec(LEASES, [("until", 1)], name="until"),
    IndexSpec(STATES, [("created_at", 1)], name="created"),
    IndexSpec(USED_STATES, [("created_at", 1)], name="created"),
    IndexSpec(SESSIONS, [("expires_at", 1)], name="expires"),
]

Doc = dict[str, Any]


def account_key(portal_id: str, realm_id: str) -> str:
    """The document id of one portal's link to one company."""
    return f"{portal_id}:{realm_id}"


class Accounts:
    """Connected accounts of every portal."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._c = db[ACCOUNTS]

    async def get(self, portal_id: str, realm_id: str) -> Doc | None:
        return await self._c.find_one({"_id": account_key(portal_id, realm_id)})

    async def by_id(self, key: str) -> Doc | None:
        return await self._c.find_one({"_id": key})

    async def list_for_portal(self, portal_id: str) -> list[Doc]:
        cursor = self._c.find(
            {"portal_id": portal_id, "status": {"$ne": AccountStatus.DISCONNECTED.value}},
            projection={"tokens": 0, "outbox": 0},
        ).sort("connected_at", 1)
        return [doc async for doc in cursor]

    async def editions_of(self, portal_ids: Sequence[str]) -> list[tuple[str, str | None]]:
        """(portal, edition) of each company these portals have not disconnected."""
        cursor = self._c.find(
            {
                "portal_id": {"$in": list(portal_ids)},
                "status": {"$ne": AccountStatus.DISCONNECTED.value},
            },
            projection={"portal_id": 1, "company": 1},
        )
        return [
            (str(d["portal_id"]), (d.get("company") or {}).get("edition")) async for d in cursor
        ]

    async def connected_for_realm(self, realm_id: str) -> list[Doc]:
        cursor = self._c.find(
            {"realm_id": realm_id, "status": AccountStatus.CONNECTED.value},
            projection={"tokens": 0, "outbox": 0},
        )
        return [doc async for doc in cursor]

    async def connected(self) -> list[str]:
        """The keys of every connected account (a periodic pass's tenants)."""
        cursor = self._c.find({"status": AccountStatus.CONNECTED.value}, projection={"_id": 1})
        return sorted([str(doc["_id"]) async for doc in cursor])

    async def save_connected(
        self,
        *,
        portal_id: str,
        realm_id: str,
        environment: str,
        facts: CompanyFacts,
        tokens: Doc,
        now: datetime,
        event: Envelope[Any],
    ) -> None:
        """Create or update the account as connected, with new tokens and its event."""
        await self._c.update_one(
            {"_id": account_key(portal_id, realm_id)},
            {
                "$set": {
                    "portal_id": portal_id,
                    "realm_id": realm_id,
                    "status": AccountStatus.CONNECTED.value,
                    "environment": environment,
                    "company": asdict(facts),
                    "tokens": tokens,
                    "connected_at": now,
                    "last_refresh_at": now,
                },
                "$inc": {"token_version": 1},
                **push([event]),
            },
            upsert=True,
        )

    async def store_refreshed(self, key: str, version: int, tokens: Doc, now: datetime) -> bool:
        """Write the rotated tokens over the version the refresh started from."""
        result = await self._c.update_one(
            {"_id": key, "token_version": version},
            {"$set": {"tokens": tokens, "last_refresh_at": now}, "$inc": {"token_version": 1}},
        )
        return result.modified_count == 1

    async def mark_reauth_required(self, key: str, event: Envelope[Any]) -> bool:
        """Connected -> reauth_required with its event; False if it was not connected."""
        result = await self._c.update_one(
            {"_id": key, "status": AccountStatus.CONNECTED.value},
            {
                "$set": {"status": AccountStatus.REAUTH_REQUIRED.value},
                **push([event]),
            },
        )
        return result.modified_count == 1

    async def mark_disconnected(self, key: str, now: datetime, event: Envelope[Any]) -> bool:
        """Delete the tokens, record the disconnection and its event."""
        result = await self._c.update_one(
            {"_id": key, "status": {"$ne": AccountStatus.DISCONNECTED.value}},
            {
                "$set": {
                    "status": AccountStatus.DISCONNECTED.value,
                    "disconnected_at": now,
                },
                "$unset": {"tokens": ""},
                **push([event]),
            },
        )
        return result.modified_count == 1

    async def update_facts(self, key: str, facts: CompanyFacts, event: Envelope[Any]) -> None:
        await self._c.update_one(
            {"_id": key},
            {"$set": {"company": asdict(facts)}, **push([event])},
        )


class RefreshLeases:
    """Single-flight refresh across replicas: one lease document per account and token version.

    Creating a document with a unique id is the one operation the MongoDB-wire subset makes
    atomic (conditional updates are not isolated there), so exactly one replica wins it.
    """

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._c = db[LEASES]

    @staticmethod
    def _id(key: str, version: int) -> str:
        return f"{key}@{version}"

    async def acquire(
        self, key: str, version: int, owner: str, now: datetime, until: datetime
    ) -> bool:
        """True for exactly one caller per (account, version) while the lease is live."""
        lease_id = self._id(key, version)
        try:
            await self._c.insert_one({"_id": lease_id, "owner": owner, "until": until})
            return True
        except DuplicateKeyError:
            pass
        # A lease past its time was abandoned by a crashed holder: clear it, then race again.
        stale = await self._c.delete_one({"_id": lease_id, "until": {"$lt": now}})
        if stale.deleted_count == 0:
            return False
        try:
            await self._c.insert_one({"_id": lease_id, "owner": owner, "until": until})
            return True
        except DuplicateKeyError:
            return False

    async def release(self, key: str, version: int, owner: str) -> None:
        await self._c.delete_one({"_id": self._id(key, version), "owner": owner})

    async def forget_before(self, cutoff: datetime) -> None:
        await self._c.delete_many({"until": {"$lt": cutoff}})


class OAuthStates:
    """Nonces of issued OAuth states; using one records it under a unique id, so only once."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._c = db[STATES]
        self._used = db[USED_STATES]

    async def issue(self, nonce: str, portal_id: str, now: datetime) -> None:
        await self._c.insert_one({"_id": nonce, "portal_id": portal_id, "created_at": now})

    async def spend(self, nonce: str, now: datetime) -> bool:
        """True once for a nonce whose state our signature vouches for (nothing to look up)."""
        try:
            await self._used.insert_one({"_id": nonce, "created_at": now})
        except DuplicateKeyError:
            return False
        return True

    async def consume(self, nonce: str, portal_id: str, now: datetime) -> bool:
        """True once for an issued nonce of this portal; False for unknown or reused ones."""
        if await self._c.find_one({"_id": nonce, "portal_id": portal_id}) is None:
            return False
        try:
            await self._used.insert_one({"_id": nonce, "created_at": now})
        except DuplicateKeyError:
            return False
        return True

    async def forget_before(self, cutoff: datetime) -> int:
        """Drop states that can no longer be used (no TTL indexes on the MongoDB-wire subset)."""
        result = await self._c.delete_many({"created_at": {"$lt": cutoff}})
        await self._used.delete_many({"created_at": {"$lt": cutoff}})
        return result.deleted_count


class Portals:
    """CRM portals that installed the app: encrypted CRM tokens, the install's scopes and who
    installed it, with the event outbox in the same document."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._c = db[PORTALS]

    async def by_id(self, portal_id: str) -> Doc | None:
        return await self._c.find_one({"_id": portal_id})

    async def save_installed(
        self,
        portal_id: str,
        *,
        tokens: Doc,
        scopes: list[str],
        user: Doc,
        now: datetime,
        event: Envelope[Any],
    ) -> None:
        """Create or update the install with new tokens; a reinstall updates, never adds."""
        await self._c.update_one(
            {"_id": portal_id},
            {
                "$set": {
                    "status": PortalStatus.INSTALLED.value,
                    "tokens": tokens,
                    "scopes": scopes,
                    "installed_by": user,
                    "installed_at": now,
                    "last_refresh_at": now,
                },
                "$inc": {"token_version": 1},
                **push([event]),
            },
            upsert=True,
        )

    async def store_refreshed(
        self, portal_id: str, version: int, tokens: Doc, now: datetime
    ) -> bool:
        result = await self._c.update_one(
            {"_id": portal_id, "token_version": version},
            {"$set": {"tokens": tokens, "last_refresh_at": now}, "$inc": {"token_version": 1}},
        )
        return result.modified_count == 1

    async def mark_uninstalled(
        self, portal_id: str, now: datetime, event: Envelope[Any], version: int | None = None
    ) -> bool:
        """Installed -> uninstalled: the tokens are deleted, the event stored; False if it was
        not installed (or, given `version`, its tokens are of another version by now)."""
        match: Doc = {"_id": portal_id, "status": PortalStatus.INSTALLED.value}
        if version is not None:
            match["token_version"] = version
        result = await self._c.update_one(
            match,
            {
                "$set": {"status": PortalStatus.UNINSTALLED.value, "uninstalled_at": now},
                "$unset": {"tokens": ""},
                **push([event]),
            },
        )
        return result.modified_count == 1


class Sessions:
    """Signed-in people: one document per session, deleted at sign-out."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._c = db[SESSIONS]

    async def open(self, session: Doc) -> None:
        await self._c.replace_one({"_id": session["_id"]}, session, upsert=True)

    async def get(self, sid: str, now: datetime) -> Doc | None:
        doc = await self._c.find_one({"_id": sid})
        if doc is None or doc["expires_at"] <= now:
            return None
        return doc

    async def close(self, sid: str) -> None:
        await self._c.delete_one({"_id": sid})

    async def forget_before(self, cutoff: datetime) -> None:
        await self._c.delete_many({"expires_at": {"$lt": cutoff}})
