"""The MongoDB guarantee the services build on: one document's update is atomic, so of several
conditional updates from one version, exactly one matches (compare-and-set). FerretDB 1.x
lacks it unpatched; the local build gives it back (`FERRETDB_PATCHES`)."""

from __future__ import annotations

import asyncio

from pymongo import AsyncMongoClient

WRITERS = 8
ROUNDS = 60


async def test_concurrent_conditional_updates_of_one_document_never_both_win(
    mongo_uri: str, namespace: str
) -> None:
    clients = [AsyncMongoClient(mongo_uri) for _ in range(4)]  # separate connections
    try:
        coll = clients[0][namespace]["cas"]
        await coll.insert_one({"_id": "doc", "version": 0, "writers": []})
        wins = [0] * WRITERS

        async def writer(i: int) -> None:
            mine = clients[i % len(clients)][namespace]["cas"]
            for round_ in range(ROUNDS):
                doc = await mine.find_one({"_id": "doc"})
                assert doc is not None
                cas = {"_id": "doc", "version": doc["version"]}
                change = {"$set": {"version": doc["version"] + 1}, "$push": {"writers": i}}
                if round_ % 2:
                    wins[i] += (await mine.update_one(cas, change)).modified_count
                else:
                    wins[i] += await mine.find_one_and_update(cas, change) is not None

        await asyncio.gather(*(writer(i) for i in range(WRITERS)))
        final = await coll.find_one({"_id": "doc"})
        assert final is not None
        # Every win moved the version by exactly one and left exactly one trace.
        assert final["version"] == sum(wins) == len(final["writers"])
        assert sum(wins) >= ROUNDS  # each round someone won
    finally:
        for client in clients:
            await client.close()
