"""A client killed in the middle of writes leaves nothing behind in the MongoDB-wire server: a
fresh client then inserts, updates, finds and builds indexes on the same collections at once.

The writes are those a service sends under load: bulk updates of many documents in one command
(a service writing back marks it kept while the server was away sends hundreds), updates of
one document at a time, findAndModify, inserts, deletes and cursors read a batch at a time.
FerretDB 1.x held one SQLite connection per statement of an update command until the command
returned, and wrote while still holding the read: at 100 statements its SQLite pool of 100
connections was spent by the command itself, and every later request on that database waited
for a connection forever; killing the client freed none of them (`FERRETDB_PATCHES`)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable
from typing import TypeVar

import pytest
from pymongo import AsyncMongoClient, ReturnDocument, UpdateOne

pytestmark = pytest.mark.integration

SEEDED = 300
BULK = 150  # statements in one update command: more than FerretDB's pool of 100 connections
T = TypeVar("T")
DEADLINE = 10.0  # seconds each probe may take on a busy machine (each takes milliseconds)

# The doomed client: separate connections writing side by side until it is SIGKILLed.
WRITER = r"""
import random, sys, threading, time
from pymongo import MongoClient, ReturnDocument, UpdateOne, DeleteOne
from pymongo.errors import PyMongoError

uri, db_name, seeded, bulk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
client = MongoClient(uri, maxPoolSize=32)
db = client[db_name]

def ids(r, n):
    return [f"d{r.randrange(seeded)}" for _ in range(n)]

def bulk_updates(i, r):
    coll = db["marks"] if i % 2 else db["claims"]
    coll.bulk_write([UpdateOne({"_id": d}, {"$inc": {"n": 1}}) for d in ids(r, bulk)],
                    ordered=False)

def single_updates(i, r):
    db["claims"].update_one({"_id": ids(r, 1)[0]}, {"$set": {"w": i}, "$inc": {"n": 1}})
    db["claims"].update_one({"_id": f"new{i}-{r.random()}"}, {"$set": {"w": i}}, upsert=True)

def find_and_modify(i, r):
    db["claims"].find_one_and_update(
        {"_id": ids(r, 1)[0]}, {"$inc": {"n": 1}}, return_document=ReturnDocument.AFTER
    )
    db["marks"].find_one_and_delete({"_id": f"gone{r.random()}"})

def inserts_and_deletes(i, r):
    keys = [f"i{i}-{r.random()}" for _ in range(20)]
    db["claims"].insert_many([{"_id": k, "w": i} for k in keys], ordered=False)
    db["claims"].bulk_write([DeleteOne({"_id": k, "w": i}) for k in keys[:10]], ordered=False)

def cursors(i, r):
    for n, _ in enumerate(db["claims"].find({"n": {"$gte": 0}}, batch_size=5)):
        if n == 40:
            break
        time.sleep(0.001)

def worker(i, job):
    r = random.Random(i)
    while True:
        try:
            job(i, r)
        except PyMongoError as exc:
            print(f"{job.__name__}: {exc!r}", file=sys.stderr, flush=True)

jobs = [bulk_updates, bulk_updates, single_updates, single_updates, find_and_modify,
        find_and_modify, inserts_and_deletes, cursors, cursors]
for i, job in enumerate(jobs):
    threading.Thread(target=worker, args=(i, job), daemon=True).start()
print("writing", flush=True)
time.sleep(3600)
"""


async def _within(what: str, awaitable: Awaitable[T]) -> T:
    """The result of `awaitable`, failing the test if it takes longer than DEADLINE."""
    try:
        return await asyncio.wait_for(awaitable, DEADLINE)
    except TimeoutError:
        pytest.fail(f"{what} did not finish within {DEADLINE:.0f}s after the client was killed")


async def test_a_client_killed_mid_writes_leaves_the_collections_writable(
    mongo_uri: str, namespace: str
) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_uri)
    try:
        db = client[namespace]
        for name in ("claims", "marks"):
            await db[name].insert_many([{"_id": f"d{i}", "n": 0} for i in range(SEEDED)])

        writer = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            mongo_uri,
            namespace,
            str(SEEDED),
            str(BULK),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            process_group=0,
        )
        try:
            assert writer.stdout is not None
            assert await asyncio.wait_for(writer.stdout.readline(), 30) == b"writing\n"
            await asyncio.sleep(1.5)  # every kind of write in flight, several times over
        finally:
            if writer.returncode is None:
                writer.send_signal(signal.SIGKILL)  # its own PID, mid-flight
            await writer.wait()
        assert writer.returncode == -signal.SIGKILL

        claims, marks = db["claims"], db["marks"]
        touched = await _within("count", claims.count_documents({"n": {"$gt": 0}}))
        assert touched > 0, "the killed client wrote nothing: it was not killed mid-writes"
        await _within("insert", claims.insert_one({"_id": "after", "n": 0}))
        await _within("update", claims.update_one({"_id": "after"}, {"$inc": {"n": 1}}))
        await _within(
            "findAndModify",
            claims.find_one_and_update(
                {"_id": "after"}, {"$inc": {"n": 1}}, return_document=ReturnDocument.AFTER
            ),
        )
        await _within("find", claims.find({"n": {"$gte": 0}}).to_list())
        await _within("createIndexes", claims.create_index([("n", 1)], name="by_n"))
        await _within("createIndexes", marks.create_index([("n", 1)], name="by_n"))
        updates = [UpdateOne({"_id": f"d{i}"}, {"$set": {"after": True}}) for i in range(BULK)]
        await _within("a bulk update", marks.bulk_write(updates, ordered=False))

        after = await _within("find_one", claims.find_one({"_id": "after"}))
        assert after is not None and after["n"] == 2
        assert await _within("count", marks.count_documents({"after": True})) == BULK
        indexes = await _within("listIndexes", (await claims.list_indexes()).to_list())
        assert "by_n" in {index["name"] for index in indexes}
    finally:
        await client.close()
