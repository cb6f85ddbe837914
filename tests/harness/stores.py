"""The stores the contract suites open, and the databases they opened, dropped after each test.

SQLite, a real PostgreSQL server (started for the run), the MongoDB emulation, and a real
MongoDB when LIVEVOTE_TEST_MONGODB_URL names one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from pymongo import AsyncMongoClient

from services.backends.postgres_db import Limits
from services.backends.store import Store
from services.backends.store_mongo import MongoStore
from services.backends.store_postgres import PostgresStore
from services.backends.store_sqlite import SqliteStore
from tests.harness.mongo_emulation import EmulatedServer
from tests.harness.postgres_server import POSTGRES

# A real MongoDB, when there is one: `mongodb://HOST[:PORT]/` (the tests pick their own database names).
MONGODB_URL = os.environ.get("LIVEVOTE_TEST_MONGODB_URL")
NO_MONGODB = "LIVEVOTE_TEST_MONGODB_URL is not set: no real MongoDB server to test against"
# Not MongoDB: mongomock behind PyMongo's async method names (see tests/harness/mongo_emulation.py).
EMULATED_MONGODB = EmulatedServer()
OPENED_DATABASES: list[str] = []


def open_sqlite(tmp_path: Path) -> Store:
    return SqliteStore(tmp_path / "store.db")


def database_name(path: Path) -> str:
    """One database per test folder, so reopening the same folder finds the same data."""
    name = "livevote_test_" + hashlib.sha256(str(path).encode()).hexdigest()[:20]
    OPENED_DATABASES.append(name)
    return name


def open_postgres(tmp_path: Path) -> Store:
    return PostgresStore(POSTGRES.database(database_name(tmp_path)), Limits(pool_size=4))


def mongodb_url(database: str) -> str:
    assert MONGODB_URL is not None
    parts = urlsplit(MONGODB_URL)
    return urlunsplit(parts._replace(path="/" + database))


def open_emulated_mongodb(tmp_path: Path) -> Store:
    database: Any = EMULATED_MONGODB.client()[database_name(tmp_path)]
    return MongoStore(database, transactions=False)


def open_mongodb(tmp_path: Path) -> Store:
    return MongoStore.from_url(mongodb_url(database_name(tmp_path)))


STORES: dict[str, Callable[[Path], Store]] = {
    "sqlite": open_sqlite, "postgresql": open_postgres, "mongodb-emulated": open_emulated_mongodb,
}
if MONGODB_URL:
    STORES["mongodb"] = open_mongodb
STORE_PARAMS = ["sqlite", "postgresql", "mongodb-emulated",
                pytest.param("mongodb", marks=pytest.mark.skipif(not MONGODB_URL, reason=NO_MONGODB))]


@pytest.fixture(autouse=True)
async def drop_test_databases() -> AsyncIterator[None]:
    """Drop the databases a test opened (PostgreSQL, MongoDB real and emulated) once it is over."""
    yield
    names = list(dict.fromkeys(OPENED_DATABASES))
    OPENED_DATABASES.clear()
    await POSTGRES.drop(names)
    emulated = EMULATED_MONGODB.client()
    for name in names:
        await emulated.drop_database(name)
    if MONGODB_URL and names:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGODB_URL, serverSelectionTimeoutMS=2000)
        try:
            for name in names:
                await client.drop_database(name)
        finally:
            await client.close()


def teacher_fields(subject: int, name: str = "李雷", **extra: Any) -> dict[str, Any]:
    fields = {"name": name, "sex": True, "birth": date(1980, 5, 17), "photo": "a.svg", "intro": "", "subject": subject}
    fields.update(extra)
    return fields
