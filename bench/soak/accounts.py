"""The soak's users: an account a page logs in with (again, after a 401), and voters that cast
one vote at a time, resent until acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from typing import Any

from bench.soak.tally import Tally
from tests.harness.nginx import Nginx
from tests.harness.server import Response

PASSWORD = "correct horse battery"
RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)
"""Between attempts of one unacknowledged vote."""
VALUES = ("good", "bad", None)


class Account:
    """A user and its latest access token (pages share one; pushed tokens replace it)."""

    def __init__(self, nginx: Nginx, username: str) -> None:
        self.nginx = nginx
        self.username = username
        self.token = ""
        self.logins = 0
        self._renewing = asyncio.Lock()

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def register(self) -> None:
        body = {"username": self.username, "password": PASSWORD}
        response = await self.nginx.request("POST", "/api/auth/register", json_body=body)
        if response.status != 201:
            raise RuntimeError(f"register {self.username}: {response.status} {response.body[:200]!r}")
        await self.log_in()

    async def log_in(self) -> None:
        body = {"username": self.username, "password": PASSWORD}
        response = await self.nginx.request("POST", "/api/auth/login", json_body=body)
        if response.status != 200:
            raise RuntimeError(f"login {self.username}: {response.status} {response.body[:200]!r}")
        self.token = str(response.json()["access_token"])
        self.logins += 1

    async def renew(self, refused: str) -> None:
        """Log in again after a 401 (a session lost with a failed-over master), once per refused token."""
        async with self._renewing:
            if self.token == refused:
                with contextlib.suppress(Exception):
                    await self.log_in()

    async def api(self, method: str, path: str, **options: Any) -> Response:
        """A request as this user that must succeed in the end (the checks after the run): retried
        with backoff on anything but 200, logging in again on 401."""
        for attempt in range(40):
            token = self.token
            with contextlib.suppress(Exception):  # a reset or a timeout: try again
                response = await self.nginx.request(method, path, headers=self.bearer, **options)
                if response.status == 200:
                    return response
                if response.status == 401:
                    await self.renew(token)
            await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
        raise RuntimeError(f"{method} {path} as {self.username} kept failing")


class Voter(Account):
    """A user casting votes one at a time; `votes` holds its last acknowledged vote per teacher."""

    def __init__(self, nginx: Nginx, username: str) -> None:
        super().__init__(nginx, username)
        self.votes: dict[int, str | None] = {}
        self.busy = False

    async def vote(self, tally: Tally, teacher: int) -> None:
        """Switch the vote on `teacher` to another value, resending until acknowledged; the
        acknowledgement and the failed attempts go to `tally`."""
        value = random.choice([choice for choice in VALUES if choice != self.votes.get(teacher)])
        path = f"/api/teachers/{teacher}/vote"
        try:
            for attempt in itertools.count():
                token = self.token
                status: str
                try:
                    if value is None:
                        response = await self.nginx.request("DELETE", path, headers=self.bearer)
                    else:
                        response = await self.nginx.request(
                            "PUT", path, json_body={"value": value}, headers=self.bearer
                        )
                    status = str(response.status)
                except Exception as error:
                    status = type(error).__name__
                else:
                    if response.status == 200:
                        body = response.json()
                        if body["value"] != value or body["teacher"] != teacher:
                            tally.wrong_acks += 1
                        self.votes[teacher] = value
                        tally.acknowledged(teacher, int(body["version"]), attempt)
                        return
                    if response.status == 401:
                        await self.renew(token)
                tally.vote_failures[status] += 1
                await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
        finally:
            self.busy = False
