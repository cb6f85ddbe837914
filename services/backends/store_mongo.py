"""MongoStore: the Store on MongoDB, through PyMongo's AsyncMongoClient.

Documents: `subjects` and `teachers` keyed by `_id` = no, `users` by `_id` =
id; ids come from `counters` ($inc, never reused). `votes` hold
{user, teacher, value}, unique on (user, teacher).

Guarantees of a vote and its counts:
- replica set or sharded cluster (`hello` names a setName, or is mongos): the
  vote document and the teacher's counts and version change in one transaction.
- standalone server (no transactions): the vote document changes first, in one
  atomic find-and-modify that returns the value it replaced, then the teacher's
  counts move by the difference. Concurrent votes stay exact, since each change
  sees exactly the value it replaced; a crash between the two writes leaves one
  teacher's counts off by that vote, which `reconcile()` repairs.

A lost connection raises Unavailable (503); the driver reconnects by itself.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from datetime import date
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConfigurationError, ConnectionFailure, DuplicateKeyError, PyMongoError

from services.backends.store import Store
from services.errors import Conflict, FieldError, Invalid, NotFound, Unavailable
from services.models import Counts, Credentials, Page, Subject, SubjectTotals, Teacher, User, VoteResult
from services.schemas import account_key, username_key

P = ParamSpec("P")
T = TypeVar("T")
Session = AsyncClientSession | None
Doc = dict[str, Any]

SUBJECT_FIELDS = {"name": None, "intro": "", "is_hot": False}
TEACHER_FIELDS = {"name": None, "sex": None, "birth": None, "photo": "", "intro": "", "subject": None}
COUNT_FIELDS = {"subject": 1, "good_count": 1, "bad_count": 1, "version": 1}
COUNT_DELTAS = {"good": (1, 0), "bad": (0, 1), None: (0, 0)}
# Short server selection, so a request during an outage fails fast (503) instead of hanging.
CLIENT_DEFAULTS = {"serverSelectionTimeoutMS": 2000, "connectTimeoutMS": 2000, "socketTimeoutMS": 10000}
TRANSACTION_DEADLINE = 10.0
AFTER = ReturnDocument.AFTER
BEFORE = ReturnDocument.BEFORE


def is_mongo_url(url: str) -> bool:
    return url.startswith(("mongodb://", "mongodb+srv://"))


def _reachable(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn a lost connection into Unavailable; the next call tries the server again."""

    @functools.wraps(method)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except ConnectionFailure as exc:
            raise Unavailable("The store (MongoDB) is not reachable right now; try again shortly.") from exc

    return guarded


def _reason(exc: PyMongoError) -> str:
    """The first, useful part of a driver message (no topology dump)."""
    text = str(exc).split(", Timeout:")[0].split(" (configured timeouts")[0]
    return text.strip() or type(exc).__name__


class MongoStore(Store):
    """`database` is an AsyncDatabase (or a stand-in with the same method names).

    `transactions`: None asks the server with `hello`; True or False forces the
    replica-set or the standalone way. The store closes its client on close().
    """

    def __init__(self, database: AsyncDatabase[Doc], transactions: bool | None = None) -> None:
        self.database = database
        self.transactions = transactions
        self._subjects = database["subjects"]
        self._teachers = database["teachers"]
        self._users = database["users"]
        self._votes = database["votes"]
        self._counters = database["counters"]
        self._meta = database["meta"]

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MongoStore:
        """A store for `mongodb://HOST[:PORT][,...]/DATABASE[?options]`; ValueError for an unusable URL.

        Nothing is contacted until open(). Options in the URL win over the short defaults here.
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
            database = client.get_default_database()
        except ConfigurationError:
            raise ValueError("the MongoDB URL names no database (mongodb://HOST/DATABASE)") from None
        return cls(database)

    async def open(self) -> bool:
        try:
            await self.database.command("ping")
            if self.transactions is None:
                hello = await self.database.command("hello")
                self.transactions = "setName" in hello or hello.get("msg") == "isdbgrid"
            await self._create_indexes()
            return await self._mark_created()
        except PyMongoError as exc:
            await self.close()
            problem = "is not reachable" if isinstance(exc, ConnectionFailure) else "refused to open the store"
            raise Unavailable(f"MongoDB {problem}: {_reason(exc)}") from exc

    async def _create_indexes(self) -> None:
        await self._votes.create_index([("user", 1), ("teacher", 1)], unique=True, name="one_vote_per_user_and_teacher")
        await self._votes.create_index([("teacher", 1), ("value", 1)], name="votes_by_teacher")
        await self._users.create_index([("username_key", 1)], unique=True, name="unique_username")
        await self._teachers.create_index([("subject", 1), ("_id", 1)], name="teachers_by_subject")

    async def _mark_created(self) -> bool:
        try:
            previous = await self._meta.find_one_and_update(
                {"_id": "schema"}, {"$setOnInsert": {"version": 1, "created_at": time.time()}},
                upsert=True, return_document=BEFORE,
            )
        except DuplicateKeyError:  # another process created it at the same moment
            return False
        return previous is None

    async def close(self) -> None:
        await self.database.client.close()

    @_reachable
    async def ping(self) -> None:
        await self.database.command("ping")

    # -- subjects ----------------------------------------------------------

    @_reachable
    async def list_subjects(self, offset: int = 0, limit: int | None = None) -> Page:
        return Page([_subject(doc) for doc in await self._page(self._subjects, {}, offset, limit)],
                    await self._subjects.count_documents({}))

    @_reachable
    async def get_subject(self, no: int) -> Subject:
        doc = await self._subjects.find_one({"_id": no})
        if doc is None:
            raise NotFound(f"There is no subject {no}.")
        return _subject(doc)

    @_reachable
    async def create_subject(self, fields: dict[str, Any]) -> Subject:
        doc = {"_id": await self._next_id("subjects"), **_with_defaults(fields, SUBJECT_FIELDS)}
        await self._subjects.insert_one(doc)
        return _subject(doc)

    @_reachable
    async def update_subject(self, no: int, fields: dict[str, Any]) -> Subject:
        values = _fields(fields, SUBJECT_FIELDS)
        if not values:
            return await self.get_subject(no)
        doc = await self._subjects.find_one_and_update({"_id": no}, {"$set": values}, return_document=AFTER)
        if doc is None:
            raise NotFound(f"There is no subject {no}.")
        return _subject(doc)

    @_reachable
    async def delete_subject(self, no: int) -> None:
        await self.get_subject(no)
        if await self._teachers.find_one({"subject": no}, {"_id": 1}) is not None:
            raise Conflict(f"Subject {no} still has teachers; move or delete them first.")
        await self._subjects.delete_one({"_id": no})

    # -- teachers ----------------------------------------------------------

    @_reachable
    async def list_teachers(
        self, subject: int | None = None, offset: int = 0, limit: int | None = None
    ) -> Page:
        query = {} if subject is None else {"subject": subject}
        return Page([_teacher(doc) for doc in await self._page(self._teachers, query, offset, limit)],
                    await self._teachers.count_documents(query))

    @_reachable
    async def get_teacher(self, no: int) -> Teacher:
        doc = await self._teachers.find_one({"_id": no})
        if doc is None:
            raise NotFound(f"There is no teacher {no}.")
        return _teacher(doc)

    @_reachable
    async def create_teacher(self, fields: dict[str, Any]) -> Teacher:
        values = _with_defaults(fields, TEACHER_FIELDS)
        await self._check_subject_exists(values.get("subject"))
        doc = {"_id": await self._next_id("teachers"), **values, "good_count": 0, "bad_count": 0, "version": 0}
        await self._teachers.insert_one(doc)
        return _teacher(doc)

    @_reachable
    async def update_teacher(self, no: int, fields: dict[str, Any]) -> Teacher:
        values = _fields(fields, TEACHER_FIELDS)
        if not values or "subject" in values:
            current = await self.get_teacher(no)
            if not values:
                return current
            await self._check_subject_exists(values["subject"])
        doc = await self._teachers.find_one_and_update({"_id": no}, {"$set": values}, return_document=AFTER)
        if doc is None:
            raise NotFound(f"There is no teacher {no}.")
        return _teacher(doc)

    @_reachable
    async def delete_teacher(self, no: int) -> None:
        async def delete(session: Session) -> None:
            if (await self._teachers.delete_one({"_id": no}, session=session)).deleted_count == 0:
                raise NotFound(f"There is no teacher {no}.")
            await self._votes.delete_many({"teacher": no}, session=session)

        await self._atomic(delete)

    # -- accounts ----------------------------------------------------------

    @_reachable
    async def create_user(self, username: str, password_hash: str, role: str) -> User:
        key = account_key(username)
        user = User(await self._next_id("users"), username, role)
        try:
            await self._users.insert_one({
                "_id": user.id, "username": username, "username_key": key,
                "password_hash": password_hash, "role": role, "created_at": time.time(),
            })
        except DuplicateKeyError:
            raise Conflict(f"The username {username!r} is taken.") from None
        return user

    @_reachable
    async def find_credentials(self, username: str) -> Credentials | None:
        """By username_key(), which is what older documents hold too (the casefold of an ASCII name)."""
        key = username_key(username)
        if key is None:
            return None
        doc = await self._users.find_one({"username_key": key})
        return None if doc is None else Credentials(_user(doc), doc["password_hash"])

    @_reachable
    async def get_user(self, user_id: int) -> User:
        doc = await self._users.find_one({"_id": user_id})
        if doc is None:
            raise NotFound(f"There is no user {user_id}.")
        return _user(doc)

    # -- votes -------------------------------------------------------------

    @_reachable
    async def set_vote(self, user_id: int, teacher: int, value: str | None) -> VoteResult:
        if value not in COUNT_DELTAS:
            raise ValueError(f"not a vote value: {value!r}")
        return await self._atomic(lambda session: self._set_vote(user_id, teacher, value, session))

    async def _set_vote(self, user_id: int, teacher: int, value: str | None, session: Session) -> VoteResult:
        before = await self._counts_of(teacher, session)
        key = {"user": user_id, "teacher": teacher}
        if value is None:
            previous = await self._votes.find_one_and_delete(key, session=session)
        else:
            previous = await self._upsert_vote(key, value, session)
        old = None if previous is None else previous["value"]
        if old == value:
            return VoteResult(value, before, changed=False)
        good = COUNT_DELTAS[value][0] - COUNT_DELTAS[old][0]
        bad = COUNT_DELTAS[value][1] - COUNT_DELTAS[old][1]
        doc = await self._teachers.find_one_and_update(
            {"_id": teacher}, {"$inc": {"good_count": good, "bad_count": bad, "version": 1}},
            projection=COUNT_FIELDS, return_document=AFTER, session=session,
        )
        if doc is None:  # standalone only: the teacher was deleted meanwhile; take the vote back
            await self._votes.delete_many({"teacher": teacher}, session=session)
            raise NotFound(f"There is no teacher {teacher}.")
        return VoteResult(value, _counts(doc), changed=True)

    async def _upsert_vote(self, key: Doc, value: str, session: Session) -> Doc | None:
        """Set the vote; the document as it was before (None: there was none)."""
        for attempt in range(2):
            try:
                return await self._votes.find_one_and_update(
                    key, {"$set": {"value": value}}, upsert=True, return_document=BEFORE, session=session,
                )
            except DuplicateKeyError:  # a concurrent first vote inserted it: now it exists, update it
                if attempt or session is not None:
                    raise
        raise AssertionError("unreachable")

    @_reachable
    async def get_vote(self, user_id: int, teacher: int) -> VoteResult:
        counts = await self._counts_of(teacher, None)
        doc = await self._votes.find_one({"user": user_id, "teacher": teacher})
        return VoteResult(None if doc is None else doc["value"], counts, changed=False)

    @_reachable
    async def counts(self, subject: int | None = None) -> list[Counts]:
        query = {} if subject is None else {"subject": subject}
        return [_counts(doc) for doc in await self._teachers.find(query, COUNT_FIELDS).sort("_id", 1).to_list()]

    @_reachable
    async def subject_totals(self) -> list[SubjectTotals]:
        subjects = await self._subjects.find({}, {"name": 1}).sort("_id", 1).to_list()
        cursor = await self._teachers.aggregate([
            {"$group": {"_id": "$subject", "good": {"$sum": "$good_count"}, "bad": {"$sum": "$bad_count"}}},
        ])
        sums = {doc["_id"]: (doc["good"], doc["bad"]) for doc in await cursor.to_list()}
        return [SubjectTotals(doc["_id"], doc["name"], *sums.get(doc["_id"], (0, 0))) for doc in subjects]

    @_reachable
    async def tally_votes(self, teacher: int) -> tuple[int, int]:
        return await self._tally(teacher, None)

    @_reachable
    async def reconcile(self) -> int:
        """Recount every teacher from the votes; drop votes left by deleted teachers.

        Exact on a replica set (each fix is a transaction). On a standalone
        server, run it while no votes are being cast (after a crash, before
        the servers start again): a vote in flight between its two writes would
        be counted twice.
        """
        cursor = await self._votes.aggregate([{"$group": {
            "_id": "$teacher",
            "good": {"$sum": {"$cond": [{"$eq": ["$value", "good"]}, 1, 0]}},
            "bad": {"$sum": {"$cond": [{"$eq": ["$value", "bad"]}, 1, 0]}},
        }}])
        tallies = {doc["_id"]: (doc["good"], doc["bad"]) for doc in await cursor.to_list()}
        teachers = await self._teachers.find({}, COUNT_FIELDS).sort("_id", 1).to_list()
        corrected = 0
        for doc in teachers:
            if (doc["good_count"], doc["bad_count"]) != tallies.get(doc["_id"], (0, 0)):
                corrected += await self._atomic(functools.partial(self._recount, doc["_id"]))
        orphans = sorted(set(tallies) - {doc["_id"] for doc in teachers})
        if orphans:
            await self._votes.delete_many({"teacher": {"$in": orphans}})
        return corrected

    async def _recount(self, teacher: int, session: Session) -> int:
        """1 when the teacher's counts were wrong and are now fixed (version bumped), else 0."""
        for _ in range(10):
            doc = await self._teachers.find_one({"_id": teacher}, COUNT_FIELDS, session=session)
            if doc is None:
                return 0
            good, bad = await self._tally(teacher, session)
            if (doc["good_count"], doc["bad_count"]) == (good, bad):
                return 0
            fixed = await self._teachers.update_one(
                {"_id": teacher, "good_count": doc["good_count"], "bad_count": doc["bad_count"]},
                {"$set": {"good_count": good, "bad_count": bad}, "$inc": {"version": 1}}, session=session,
            )
            if fixed.modified_count:
                return 1
        raise Unavailable(f"Teacher {teacher} kept changing while being recounted; try again.")

    # -- helpers -----------------------------------------------------------

    async def _atomic(self, work: Callable[[Session], Awaitable[T]]) -> T:
        """Run `work` in a transaction where the server has them (retrying conflicts), else as is."""
        if not self.transactions:
            return await work(None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TRANSACTION_DEADLINE
        pause = 0.005
        async with self.database.client.start_session() as session:
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

    async def _next_id(self, name: str) -> int:
        for attempt in range(2):
            try:
                doc = await self._counters.find_one_and_update(
                    {"_id": name}, {"$inc": {"seq": 1}}, upsert=True, return_document=AFTER,
                )
                assert doc is not None, "an upsert returns the document"
                return int(doc["seq"])
            except DuplicateKeyError:  # two first ids at once: the counter exists now
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _page(self, collection: Any, query: Doc, offset: int, limit: int | None) -> list[Doc]:
        cursor = collection.find(query).sort("_id", 1).skip(offset)
        if limit is not None:
            if limit <= 0:
                return []
            cursor = cursor.limit(limit)
        docs: list[Doc] = await cursor.to_list()
        return docs

    async def _check_subject_exists(self, subject: Any) -> None:
        if subject is not None and await self._subjects.find_one({"_id": subject}, {"_id": 1}) is None:
            raise Invalid(
                "The request body is not valid.",
                [FieldError("subject", "no_such_subject", f"there is no subject {subject}")],
            )

    async def _counts_of(self, teacher: int, session: Session) -> Counts:
        doc = await self._teachers.find_one({"_id": teacher}, COUNT_FIELDS, session=session)
        if doc is None:
            raise NotFound(f"There is no teacher {teacher}.")
        return _counts(doc)

    async def _tally(self, teacher: int, session: Session) -> tuple[int, int]:
        good = await self._votes.count_documents({"teacher": teacher, "value": "good"}, session=session)
        bad = await self._votes.count_documents({"teacher": teacher, "value": "bad"}, session=session)
        return good, bad


# -- documents <-> records -----------------------------------------------------


def _fields(fields: dict[str, Any], allowed: dict[str, Any]) -> Doc:
    unknown = set(fields) - set(allowed)
    if unknown:
        raise ValueError(f"not a field: {sorted(unknown)}")
    return {key: value.isoformat() if isinstance(value, date) else value for key, value in fields.items()}


def _with_defaults(fields: dict[str, Any], allowed: dict[str, Any]) -> Doc:
    defaults = {key: value for key, value in allowed.items() if value is not None}
    return {**defaults, **_fields(fields, allowed)}


def _subject(doc: Doc) -> Subject:
    return Subject(no=doc["_id"], name=doc["name"], intro=doc["intro"], is_hot=bool(doc["is_hot"]))


def _teacher(doc: Doc) -> Teacher:
    return Teacher(
        no=doc["_id"], name=doc["name"], sex=bool(doc["sex"]), birth=date.fromisoformat(doc["birth"]),
        photo=doc["photo"], intro=doc["intro"], subject=doc["subject"],
        good_count=doc["good_count"], bad_count=doc["bad_count"], version=doc["version"],
    )


def _user(doc: Doc) -> User:
    return User(doc["_id"], doc["username"], doc["role"])


def _counts(doc: Doc) -> Counts:
    return Counts(doc["_id"], doc["subject"], doc["good_count"], doc["bad_count"], doc["version"])
