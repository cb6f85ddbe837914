"""A user's vote on a teacher: /api/teachers/{no}/vote."""

from __future__ import annotations

from handlers.base import ApiHandler, record_no
from handlers.openapi import BODY, Operation
from services.models import VoteResultJson
from services.schemas import VoteRequest
from services.visibility import Reader

NO_TEACHER = {404: "No such teacher"}
CLOSED = {**NO_TEACHER, 409: "Voting on the teacher's subject is closed (`code`: voting_closed); nothing changed"}


class VoteHandler(ApiHandler):
    @Operation("getVote", "votes", "Your vote on a teacher",
               ok="Your vote (value null if none) and the teacher's counts", returns=VoteResultJson,
               secured=True, errors=(401, 404, 503), notes=NO_TEACHER)
    async def get(self, no: str) -> None:
        user = await self.authenticated_user()
        result = await self.services.votes.get(user.id, record_no(no, "teacher"))
        self.write_json(await self.services.visibility.vote(Reader.of(user), result))

    @Operation("castVote", "votes", "Vote good or bad (again: no change; the other value: a switch)",
               ok="Your vote and the teacher's counts after it", returns=VoteResultJson, request=VoteRequest,
               secured=True, errors=(401, 404, 409, *BODY, 503), notes=CLOSED)
    async def put(self, no: str) -> None:
        user = await self.authenticated_user()
        result = await self.services.votes.cast(user.id, record_no(no, "teacher"), self.json_body())
        self.write_json(await self.services.visibility.vote(Reader.of(user), result))

    @Operation("withdrawVote", "votes", "Withdraw your vote",
               ok="No vote (value null) and the teacher's counts after it", returns=VoteResultJson,
               secured=True, errors=(401, 404, 409, 503), notes=CLOSED)
    async def delete(self, no: str) -> None:
        user = await self.authenticated_user()
        result = await self.services.votes.set(user.id, record_no(no, "teacher"), None)
        self.write_json(await self.services.visibility.vote(Reader.of(user), result))
