"""An EMULATION of PyMongo's async API over mongomock, for tests only: not MongoDB.

No MongoDB server can be installed where CI runs, so the store contract suite
also runs MongoStore against this: mongomock (an in-memory, pure-Python fake of
PyMongo's synchronous API) behind the few AsyncMongoClient / AsyncDatabase /
AsyncCollection / AsyncCursor method names MongoStore calls, and only those.

What it does not emulate: sessions and transactions (mongomock has none) and
the `hello` command, so MongoStore runs here only in its standalone way
(`transactions=False`). Every operation yields to the event loop first, so
concurrent coroutines interleave between operations as they would against a
server, while each single operation stays atomic as a single-document write is
on MongoDB. `EmulatedServer.down` makes every operation fail the way a lost
server does (ServerSelectionTimeoutError), to test outages and recovery.
"""

from __future__ import annotations

import asyncio
from typing import Any

import mongomock
from pymongo.errors import ServerSelectionTimeoutError

Doc = dict[str, Any]


class EmulatedServer:
    """One in-memory "server" whose databases outlive the clients opened on it."""

    def __init__(self) -> None:
        self._backend = mongomock.MongoClient()
        self.down = False

    def client(self) -> EmulatedClient:
        return EmulatedClient(self)

    async def call(self, fn: Any, *args: Any, session: Any = None, **kwargs: Any) -> Any:
        if session is not None:
            raise NotImplementedError("the emulation has no sessions or transactions")
        await asyncio.sleep(0)
        if self.down:
            raise ServerSelectionTimeoutError("emulated outage: no server is reachable")
        return fn(*args, **kwargs)


class EmulatedClient:
    def __init__(self, server: EmulatedServer) -> None:
        self._server = server
        self.closed = False

    def __getitem__(self, name: str) -> EmulatedDatabase:
        return EmulatedDatabase(self, self._server, self._server._backend[name])

    async def close(self) -> None:
        self.closed = True

    async def drop_database(self, name: str) -> None:
        await self._server.call(self._server._backend.drop_database, name)


class EmulatedDatabase:
    def __init__(self, client: EmulatedClient, server: EmulatedServer, backend: Any) -> None:
        self.client = client
        self.name = backend.name
        self._server = server
        self._backend = backend

    def __getitem__(self, name: str) -> EmulatedCollection:
        return EmulatedCollection(self._server, self._backend[name])

    async def command(self, name: str) -> Doc:
        result: Doc = await self._server.call(self._backend.command, name)
        return result


class EmulatedCollection:
    def __init__(self, server: EmulatedServer, backend: Any) -> None:
        self._server = server
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        """The awaitable operations MongoStore (and the tests) use; nothing else."""
        if name not in OPERATIONS:
            raise AttributeError(f"the emulation does not provide {name}()")
        method = getattr(self._backend, name)

        async def operation(*args: Any, **kwargs: Any) -> Any:
            return await self._server.call(method, *args, **kwargs)

        return operation

    def find(self, *args: Any, **kwargs: Any) -> EmulatedCursor:
        return EmulatedCursor(self._server, self._backend, args, kwargs)

    async def aggregate(self, pipeline: list[Doc], session: Any = None) -> EmulatedCursor:
        docs = await self._server.call(lambda: list(self._backend.aggregate(pipeline)), session=session)
        return EmulatedCursor(self._server, None, (), {}, docs)


OPERATIONS = frozenset({
    "insert_one", "find_one", "find_one_and_update", "find_one_and_delete", "update_one", "update_many",
    "delete_one", "delete_many", "count_documents", "create_index", "index_information",
})


class EmulatedCursor:
    """find(...).sort(...).skip(...).limit(...) and `await to_list()`, like AsyncCursor."""

    def __init__(self, server: EmulatedServer, backend: Any, args: tuple[Any, ...], kwargs: Doc,
                 docs: list[Doc] | None = None) -> None:
        self._server = server
        self._backend = backend
        self._args = args
        self._kwargs = kwargs
        self._docs = docs
        self._steps: list[tuple[str, tuple[Any, ...]]] = []

    def sort(self, *args: Any) -> EmulatedCursor:
        self._steps.append(("sort", args))
        return self

    def skip(self, count: int) -> EmulatedCursor:
        self._steps.append(("skip", (count,)))
        return self

    def limit(self, count: int) -> EmulatedCursor:
        self._steps.append(("limit", (count,)))
        return self

    async def to_list(self, length: int | None = None) -> list[Doc]:
        if self._docs is not None:
            return self._docs[:length]

        def run() -> list[Doc]:
            cursor = self._backend.find(*self._args, **self._kwargs)
            for step, args in self._steps:
                cursor = getattr(cursor, step)(*args)
            return list(cursor)[:length]

        session = self._kwargs.pop("session", None)
        docs: list[Doc] = await self._server.call(run, session=session)
        return docs
