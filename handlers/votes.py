"""A user's vote on a teacher: /api/teachers/{no}/vote."""

from __future__ import annotations

from handlers.base import ApiHandler, record_no


class VoteHandler(ApiHandler):
    async def get(self, no: str) -> None:
        claims = await self.authenticate()
        result = await self.services.votes.get(claims.user_id, record_no(no, "teacher"))
        self.write_json(result.to_json())

    async def put(self, no: str) -> None:
        claims = await self.authenticate()
        result = await self.services.votes.cast(claims.user_id, record_no(no, "teacher"), self.json_body())
        self.write_json(result.to_json())

    async def delete(self, no: str) -> None:
        claims = await self.authenticate()
        result = await self.services.votes.set(claims.user_id, record_no(no, "teacher"), None)
        self.write_json(result.to_json())
