"""MongoStore: the Store on MongoDB, through PyMongo's AsyncMongoClient.

Documents: `subjects` and `teachers` keyed by `_id` = no, `users` by `_id` =
id; ids come from `counters` ($inc, never reused). `votes` hold
{user, teacher, value}, unique on (user, teacher). `vote_history` holds
{teacher, minute, good, bad, votes}, unique on (teacher, minute): the net change
of a teacher's counts in one minute (since 1970 UTC) and how many changes, moved
with the counts (services/backends/history_sums.py).

Guarantees of a vote and its counts:
- replica set or sharded cluster (`hello` names a setName, or is mongos): the
  vote document and the teacher's counts and version change in one transaction.
- standalone server (no transactions): the vote document changes first, in one
  atomic find-and-modify that returns the value it replaced, then the teacher's
  counts move by the difference, then its minute of history. Concurrent votes stay
  exact, since each change sees exactly the value it replaced; a crash between the
  writes leaves one teacher's counts off by that vote, which `reconcile()` repairs
  (or its history short of it, which nothing repairs: only a replica set makes the
  history exact).

A lost connection raises Unavailable (503); the driver reconnects by itself. The
plumbing (the client, transactions, ids) is services/backends/mongo_db.py's.

At about 400 lines this is the largest adapter: it is one class because it implements
the one Store port, whose parts (catalog, accounts, votes, reconcile) share the same
collections and the same two ways of staying atomic; store_sqlite.py is its twin.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any, TypeVar

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from services.backends import history_sums
from services.backends.mongo_db import (
    Doc,
    Session,
    atomically,
    database_of_url,
    failure_reason,
    has_transactions,
    next_id,
    reachable,
)
from services.backends.store import Store
from services.errors import Conflict, FieldError, Invalid, NotFound, Unavailable, VotingClosed
from services.models import (
    AuditEntry,
    AuditKind,
    Counts,
    Credentials,
    HistoryBucket,
    HistoryMinute,
    Page,
    Subject,
    SubjectTotals,
    Teacher,
    User,
    Visibility,
    VoteResult,
    VoteValue,
    VotingState,
    utc_now,
    voting_state,
)
from services.schemas import account_key, username_key

T = TypeVar("T")

SUBJECT_FIELDS = {
    "name": None, "intro": "", "is_hot": False, "opens_at": None, "closes_at": None, "visibility": "always",
}
TEACHER_FIELDS = {"name": None, "sex": None, "birth": None, "photo": "", "intro": "", "subject": None}
COUNT_FIELDS = {"subject": 1, "good_count": 1, "bad_count": 1, "version": 1}
COUNT_DELTAS = {"good": (1, 0), "bad": (0, 1), None: (0, 0)}
AFTER = ReturnDocument.AFTER
BEFORE = ReturnDocument.BEFORE


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
        self._history = database["vote_history"]

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MongoStore:
        """A store for `mongodb://HOST[:PORT][,...]/DATABASE[?options]`; ValueError for an unusable URL.
        Nothing is contacted until open()."""
        return cls(database_of_url(url, **options))

    async def open(self) -> bool:
        try:
            await self.database.command("ping")
            if self.transactions is None:
                self.transactions = await has_transactions(self.database)
            await self._create_indexes()
            return await self._mark_created()
        except PyMongoError as exc:
            await self.close()
            problem = "is not reachable" if isinstance(exc, ConnectionFailure) else "refused to open the store"
            raise Unavailable(f"MongoDB {problem}: {failure_reason(exc)}") from exc

    async def _create_indexes(self) -> None:
        await self._votes.create_index([("user", 1), ("teacher", 1)], unique=True, name="one_vote_per_user_and_teacher")
        await self._votes.create_index([("teacher", 1), ("value", 1)], name="votes_by_teacher")
        await self._users.create_index([("username_key", 1)], unique=True, name="unique_username")
        await self._teachers.create_index([("subject", 1), ("_id", 1)], name="teachers_by_subject")
        await self.database["audit"].create_index([("kind", 1), ("no", 1), ("_id", -1)], name="audit_by_record")
        await self._history.create_index([("teacher", 1), ("minute", 1)], unique=True, name="one_history_per_minute")

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

    @reachable
    async def ping(self) -> None:
        await self.database.command("ping")

    # -- subjects ----------------------------------------------------------

    @reachable
    async def list_subjects(self, offset: int = 0, limit: int | None = None) -> Page:
        return Page([_subject(doc) for doc in await self._page(self._subjects, {}, offset, limit)],
                    await self._subjects.count_documents({}))

    @reachable
    async def get_subject(self, no: int) -> Subject:
        doc = await self._subjects.find_one({"_id": no})
        if doc is None:
            raise NotFound(f"There is no subject {no}.")
        return _subject(doc)

    @reachable
    async def create_subject(self, fields: dict[str, Any]) -> Subject:
        doc = {"_id": await next_id(self._counters, "subjects"), **_with_defaults(fields, SUBJECT_FIELDS)}
        await self._subjects.insert_one(doc)
        return _subject(doc)

    @reachable
    async def update_subject(self, no: int, fields: dict[str, Any]) -> Subject:
        values = _fields(fields, SUBJECT_FIELDS)
        if not values:
            return await self.get_subject(no)
        doc = await self._subjects.find_one_and_update({"_id": no}, {"$set": values}, return_document=AFTER)
        if doc is None:
            raise NotFound(f"There is no subject {no}.")
        return _subject(doc)

    @reachable
    async def delete_subject(self, no: int) -> None:
        await self.get_subject(no)
        if await self._teachers.find_one({"subject": no}, {"_id": 1}) is not None:
            raise Conflict(f"Subject {no} still has teachers; move or delete them first.")
        await self._subjects.delete_one({"_id": no})

    # -- teachers ----------------------------------------------------------

    @reachable
    async def list_teachers(
        self, subject: int | None = None, offset: int = 0, limit: int | None = None
    ) -> Page:
        query = {} if subject is None else {"subject": subject}
        return Page([_teacher(doc) for doc in await self._page(self._teachers, query, offset, limit)],
                    await self._teachers.count_documents(query))

    @reachable
    async def get_teacher(self, no: int) -> Teacher:
        doc = await self._teachers.find_one({"_id": no})
        if doc is None:
            raise NotFound(f"There is no teacher {no}.")
        return _teacher(doc)

    @reachable
    async def create_teacher(self, fields: dict[str, Any]) -> Teacher:
        values = _with_defaults(fields, TEACHER_FIELDS)
        await self._check_subject_exists(values.get("subject"))
        no = await next_id(self._counters, "teachers")
        doc = {"_id": no, **values, "good_count": 0, "bad_count": 0, "version": 0}
        await self._teachers.insert_one(doc)
        return _teacher(doc)

    @reachable
    async def update_teacher(self, no: int, fields: dict[str, Any]) -> Teacher:
        values = _fields(fields, TEACHER_FIELDS)
        if not values or "subject" in values:
            current = await self.get_teacher(no)
            if not values:
                return current
            await self._check_subject_exists(values["subject"])
        doc = await self._teachers.find_one_and_update(
            {"_id": no}, {"$set": values, "$inc": {"version": 1}}, return_document=AFTER
        )
        if doc is None:
            raise NotFound(f"There is no teacher {no}.")
        return _teacher(doc)

    @reachable
    async def delete_teacher(self, no: int) -> None:
        async def delete(session: Session) -> None:
            if (await self._teachers.delete_one({"_id": no}, session=session)).deleted_count == 0:
                raise NotFound(f"There is no teacher {no}.")
            await self._votes.delete_many({"teacher": no}, session=session)
            await self._history.delete_many({"teacher": no}, session=session)

        await self._atomic(delete)

    # -- accounts ----------------------------------------------------------

    @reachable
    async def create_user(self, username: str, password_hash: str, role: str) -> User:
        key = account_key(username)
        user = User(await next_id(self._counters, "users"), username, role)
        try:
            await self._users.insert_one({
                "_id": user.id, "username": username, "username_key": key,
                "password_hash": password_hash, "role": role, "created_at": time.time(),
            })
        except DuplicateKeyError:
            raise Conflict(f"The username {username!r} is taken.") from None
        return user

    @reachable
    async def find_credentials(self, username: str) -> Credentials | None:
        """By username_key(), which is what older documents hold too (the casefold of an ASCII name)."""
        key = username_key(username)
        if key is None:
            return None
        doc = await self._users.find_one({"username_key": key})
        return None if doc is None else Credentials(_user(doc), doc["password_hash"])

    @reachable
    async def get_user(self, user_id: int) -> User:
        doc = await self._users.find_one({"_id": user_id})
        if doc is None:
            raise NotFound(f"There is no user {user_id}.")
        return _user(doc)

    @reachable
    async def set_user_role(self, user_id: int, role: str) -> User:
        doc = await self._users.find_one_and_update({"_id": user_id}, {"$set": {"role": role}}, return_document=AFTER)
        if doc is None:
            raise NotFound(f"There is no user {user_id}.")
        return _user(doc)

    # -- votes -------------------------------------------------------------

    @reachable
    async def set_vote(self, user_id: int, teacher: int, value: VoteValue | None) -> VoteResult:
        if value not in COUNT_DELTAS:
            raise ValueError(f"not a vote value: {value!r}")
        return await self._atomic(lambda session: self._set_vote(user_id, teacher, value, session))

    async def _set_vote(self, user_id: int, teacher: int, value: VoteValue | None, session: Session) -> VoteResult:
        before = await self._counts_of(teacher, session)
        key = {"user": user_id, "teacher": teacher}
        if await self._users.find_one({"_id": user_id}, {"_id": 1}, session=session) is None:
            raise NotFound(f"There is no user {user_id}.")  # no foreign key here: asked first, on both paths alike
        rules = await self._check_open(before.subject, key, value, session)
        if value is None:
            previous = await self._votes.find_one_and_delete(key, session=session)
        else:
            previous = await self._upsert_vote(key, value, session)
        old = None if previous is None else previous["value"]
        if old == value:
            return VoteResult(value, before, False, *rules)
        good = COUNT_DELTAS[value][0] - COUNT_DELTAS[old][0]
        bad = COUNT_DELTAS[value][1] - COUNT_DELTAS[old][1]
        doc = await self._teachers.find_one_and_update(
            {"_id": teacher}, {"$inc": {"good_count": good, "bad_count": bad, "version": 1}},
            projection=COUNT_FIELDS, return_document=AFTER, session=session,
        )
        if doc is None:  # standalone only: the teacher was deleted meanwhile; take the vote back
            await self._votes.delete_many({"teacher": teacher}, session=session)
            raise NotFound(f"There is no teacher {teacher}.")
        await self._record_change(teacher, good, bad, session)
        return VoteResult(value, _counts(doc), True, *rules)

    async def _check_open(
        self, subject: int, key: Doc, value: VoteValue | None, session: Session
    ) -> tuple[Visibility, VotingState]:
        """The subject's visibility and voting state; VotingClosed for a vote that would change
        something on a closed subject."""
        visibility, state = await self._rules(subject, session)
        if state == "closed":
            vote = await self._votes.find_one(key, {"value": 1}, session=session)
            if (None if vote is None else vote["value"]) != value:
                raise VotingClosed(subject)
        return visibility, state

    async def _rules(self, subject: int, session: Session) -> tuple[Visibility, VotingState]:
        doc = await self._subjects.find_one(
            {"_id": subject}, {"opens_at": 1, "closes_at": 1, "visibility": 1}, session=session
        ) or {}
        state = voting_state(_moment(doc.get("opens_at")), _moment(doc.get("closes_at")), utc_now())
        return doc.get("visibility", "always"), state

    async def _record_change(self, teacher: int, good: int, bad: int, session: Session) -> None:
        """One change of the teacher's counts, in this minute's history, with the change itself."""
        key = {"teacher": teacher, "minute": int(time.time() // 60)}
        for attempt in range(2):
            try:
                await self._history.update_one(
                    key, {"$inc": {"good": good, "bad": bad, "votes": 1}}, upsert=True, session=session
                )
                return
            except DuplicateKeyError:  # a concurrent first change of the minute inserted it
                if attempt or session is not None:
                    raise

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

    @reachable
    async def get_vote(self, user_id: int, teacher: int) -> VoteResult:
        counts = await self._counts_of(teacher, None)
        doc = await self._votes.find_one({"user": user_id, "teacher": teacher})
        rules = await self._rules(counts.subject, None)
        return VoteResult(None if doc is None else doc["value"], counts, False, *rules)

    @reachable
    async def voted_subjects(self, user_id: int) -> set[int]:
        teachers = [doc["teacher"] for doc in await self._votes.find({"user": user_id}, {"teacher": 1}).to_list()]
        found = await self._teachers.find({"_id": {"$in": teachers}}, {"subject": 1}).to_list()
        return {doc["subject"] for doc in found}

    @reachable
    async def voters(self, subject: int) -> set[int]:
        teachers = [doc["_id"] for doc in await self._teachers.find({"subject": subject}, {"_id": 1}).to_list()]
        return {doc["user"] for doc in await self._votes.find({"teacher": {"$in": teachers}}, {"user": 1}).to_list()}

    @reachable
    async def counts(self, subject: int | None = None) -> list[Counts]:
        query = {} if subject is None else {"subject": subject}
        return [_counts(doc) for doc in await self._teachers.find(query, COUNT_FIELDS).sort("_id", 1).to_list()]

    @reachable
    async def subject_totals(self) -> list[SubjectTotals]:
        subjects = await self._subjects.find({}, {"name": 1}).sort("_id", 1).to_list()
        cursor = await self._teachers.aggregate([
            {"$group": {"_id": "$subject", "good": {"$sum": "$good_count"}, "bad": {"$sum": "$bad_count"}}},
        ])
        sums = {doc["_id"]: (doc["good"], doc["bad"]) for doc in await cursor.to_list()}
        return [SubjectTotals(doc["_id"], doc["name"], *sums.get(doc["_id"], (0, 0))) for doc in subjects]

    @reachable
    async def tally_votes(self, teacher: int) -> tuple[int, int]:
        return await self._tally(teacher, None)

    @reachable
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

    # -- audit log ---------------------------------------------------------

    @reachable
    async def record_audit(self, entry: AuditEntry) -> AuditEntry:
        saved = replace(entry, id=await next_id(self._counters, "audit"))
        doc = saved.to_json()
        await self.database["audit"].insert_one({"_id": doc.pop("id"), **doc})
        return saved

    @reachable
    async def list_audit(
        self, offset: int = 0, limit: int | None = None, kind: AuditKind | None = None, no: int | None = None
    ) -> Page:
        query = {name: value for name, value in (("kind", kind), ("no", no)) if value is not None}
        audit = self.database["audit"]
        cursor = audit.find(query).sort("_id", -1).skip(offset)
        if limit is not None:
            cursor = cursor.limit(limit)
        docs = [] if limit is not None and limit <= 0 else await cursor.to_list()
        return Page([_audit_entry(doc) for doc in docs], await audit.count_documents(query))

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
                await self._record_change(teacher, good - doc["good_count"], bad - doc["bad_count"], session)
                return 1
        raise Unavailable(f"Teacher {teacher} kept changing while being recounted; try again.")

    # -- vote history ------------------------------------------------------

    @reachable
    async def history(self, teachers: Sequence[int], since: int, until: int, step: int) -> list[HistoryBucket]:
        """In a transaction where there are some, so that the counts and the changes agree."""
        return await self._atomic(functools.partial(self._history_in, list(teachers), since, until, step))

    async def _history_in(
        self, teachers: list[int], since: int, until: int, step: int, session: Session
    ) -> list[HistoryBucket]:
        starts = (await self._starts(teachers, since, session)).values()
        cursor = await self._history.aggregate([
            {"$match": {"teacher": {"$in": teachers}, "minute": {"$gte": since, "$lt": until}}},
            {"$group": {
                "_id": {"$subtract": ["$minute", {"$mod": [{"$subtract": ["$minute", since]}, step]}]},
                "good": {"$sum": "$good"}, "bad": {"$sum": "$bad"}, "votes": {"$sum": "$votes"},
            }},
        ], session=session)
        changes = {int(doc["_id"]): (doc["good"], doc["bad"], doc["votes"]) for doc in await cursor.to_list()}
        start = (sum(good for good, _ in starts), sum(bad for _, bad in starts))
        return history_sums.buckets(start, changes, since, until, step)

    @reachable
    async def history_minutes(
        self, teachers: Sequence[int], since: int, until: int, after: HistoryMinute | None, limit: int
    ) -> list[HistoryMinute]:
        return await self._atomic(functools.partial(self._history_minutes_in, list(teachers), since, until,
                                                    after, limit))

    async def _history_minutes_in(
        self, teachers: list[int], since: int, until: int, after: HistoryMinute | None, limit: int, session: Session
    ) -> list[HistoryMinute]:
        if limit <= 0:
            return []
        query: Doc = {"teacher": {"$in": teachers}, "minute": {"$gte": since, "$lt": until}}
        if after is not None:
            query["$or"] = [
                {"teacher": {"$gt": after.teacher}}, {"teacher": after.teacher, "minute": {"$gt": after.minute}},
            ]
        cursor = self._history.find(query, session=session).sort([("teacher", 1), ("minute", 1)]).limit(limit)
        docs = await cursor.to_list()
        rows = [(doc["teacher"], doc["minute"], doc["good"], doc["bad"], doc["votes"]) for doc in docs]
        starts = await self._starts(history_sums.new_teachers(rows, after), since, session)
        return history_sums.minutes(rows, after, starts)

    async def _starts(self, teachers: list[int], since: int, session: Session) -> dict[int, tuple[int, int]]:
        """Each teacher's counts at the start of minute `since`: its counts less the changes since."""
        counts = await self._teachers.find({"_id": {"$in": teachers}}, COUNT_FIELDS, session=session).to_list()
        cursor = await self._history.aggregate([
            {"$match": {"teacher": {"$in": teachers}, "minute": {"$gte": since}}},
            {"$group": {"_id": "$teacher", "good": {"$sum": "$good"}, "bad": {"$sum": "$bad"}}},
        ], session=session)
        since_then = {doc["_id"]: (doc["good"], doc["bad"]) for doc in await cursor.to_list()}
        return {
            doc["_id"]: (doc["good_count"] - since_then.get(doc["_id"], (0, 0))[0],
                         doc["bad_count"] - since_then.get(doc["_id"], (0, 0))[1])
            for doc in counts
        }

    # -- helpers -----------------------------------------------------------

    async def _atomic(self, work: Callable[[Session], Awaitable[T]]) -> T:
        return await atomically(self.database, bool(self.transactions), work)

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
    return Subject(
        no=doc["_id"], name=doc["name"], intro=doc["intro"], is_hot=bool(doc["is_hot"]),
        opens_at=_moment(doc.get("opens_at")), closes_at=_moment(doc.get("closes_at")),
        visibility=doc.get("visibility", "always"),
    )


def _moment(text: str | None) -> datetime | None:
    """Moments are stored as ISO 8601 text in UTC, like birth dates."""
    return None if text is None else datetime.fromisoformat(text)


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


def _audit_entry(doc: Doc) -> AuditEntry:
    fields = dict(doc)
    return AuditEntry(id=fields.pop("_id"), **fields)
