"""The MongoDB plumbing under MongoStore: the client from a URL, outages as Unavailable,
transactions where the server has them, and ids that are never reused.

MongoStore (store_mongo.py) speaks in subjects, teachers, users and votes; this
module knows only documents, sessions and the server, as sqlite_db.py does under
the SQLite store.
"""

from __future__ import annotations

import asyncio
import functools
import random
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConfigurationError, ConnectionFailure, DuplicateKeyError, PyMongoError

from services.errors import Unavailable

P = ParamSpec("P")
T = TypeVar("T")
Session = AsyncClientSession | None
Doc = dict[str, Any]

CLIENT_DEFAULTS = {"serverSelectionTimeoutMS": 2000, "connectTimeoutMS": 2000, "socketTimeoutMS": 10000}
"""Short server selection, so a request during an outage fails fast (503) instead of hanging."""
TRANSACTION_DEADLINE = 10.0


def is_mongo_url(url: str) -> bool:
    return url.startswith(("mongodb://", "mongodb+srv://"))


def database_of_url(url: str, **options: Any) -> AsyncDatabase[Doc]:
    """The database of `mongodb://HOST[:PORT][,...]/DATABASE[?options]`; ValueError for an unusable URL.

    Nothing is contacted yet. Options in the URL win over the short defaults here.
    """
    given = {key.lower() for key, _ in parse_qsl(urlsplit(url).query)}
    defaults = {key: value for key, value in CLIENT_DEFAULTS.items() if key.lower() not in given}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # the driver only warns about a bad option, and drops it
            client: AsyncMongoClient[Doc] = AsyncMongoClient(url, **{**defaults, **options})
    except (ConfigurationError, ValueError, TypeError, UserWarning) as exc:
        raise ValueError(f"not a usable MongoDB URL: {exc}") from None
    try:
        return client.get_default_database()
    except ConfigurationError:
        raise ValueError("the MongoDB URL names no database (mongodb://HOST/DATABASE)") from None


def reachable(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn a lost connection into Unavailable; the next call tries the server again."""

    @functools.wraps(method)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except ConnectionFailure as exc:
            raise Unavailable("The store (MongoDB) is not reachable right now; try again shortly.") from exc

    return guarded


def failure_reason(exc: PyMongoError) -> str:
    """The first, useful part of a driver message (no topology dump)."""
    text = str(exc).split(", Timeout:")[0].split(" (configured timeouts")[0]
    return text.strip() or type(exc).__name__


async def has_transactions(database: AsyncDatabase[Doc]) -> bool:
    """A replica set or a sharded cluster (`hello` names a setName, or is mongos); not a standalone server."""
    hello = await database.command("hello")
    return "setName" in hello or hello.get("msg") == "isdbgrid"


async def atomically(database: AsyncDatabase[Doc], transactions: bool, work: Callable[[Session], Awaitable[T]]) -> T:
    """Run `work` in a transaction where the server has them (retrying conflicts), else as is."""
    if not transactions:
        return await work(None)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TRANSACTION_DEADLINE
    pause = 0.005
    async with database.client.start_session() as session:
        while True:
            try:
                async with await session.start_transaction():
                    return await work(session)
            except ConnectionFailure:
                raise
            except PyMongoError as exc:
                retry = exc.has_error_label("TransientTransactionError") or isinstance(exc, DuplicateKeyError)
                if not retry:
                    raise
                if loop.time() >= deadline:
                    raise Unavailable("The store is too busy right now; try again.") from exc
            await asyncio.sleep(random.uniform(0, pause))
            pause = min(pause * 2, 0.2)


async def next_id(counters: AsyncCollection[Doc], name: str) -> int:
    """The next id of `name` ($inc on its counter document, never reused)."""
    for attempt in range(2):
        try:
            doc = await counters.find_one_and_update(
                {"_id": name}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER,
            )
            assert doc is not None, "an upsert returns the document"
            return int(doc["seq"])
        except DuplicateKeyError:  # two first ids at once: the counter exists now
            if attempt:
                raise
    raise AssertionError("unreachable")
