"""The soak's live pages: WebSockets through nginx over TLS that behave like the pages' client
(static/js/live-client.js): subscribe on welcome, keep the highest version per teacher, reconnect
with backoff."""

from __future__ import annotations

import asyncio
import random
import ssl
from time import monotonic as now
from typing import TYPE_CHECKING

import orjson

from bench.soak.accounts import Account
from bench.soak.tally import Tally
from bench.wsload import WsClient, connect

if TYPE_CHECKING:
    from collections.abc import Callable

BACKOFF_FIRST, BACKOFF_MAX = 0.5, 15.0
"""static/js/live-client.js's reconnect backoff, in seconds."""

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE  # nginx's certificate is a self-signed one made for this run


async def open_socket(port: int, token: str, factory: Callable[[], WsClient]) -> WsClient:
    """/ws through nginx over TLS, as a page opens it: its Origin, the token in a subprotocol.
    `factory` makes the client with its callback set, since `welcome` may come in the 101's own read."""
    headers = {"Origin": f"https://127.0.0.1:{port}", "Sec-WebSocket-Protocol": f"livevote.v1, bearer.{token}"}
    return await connect(port, "/ws", headers, factory=factory, ssl=TLS, timeout=20)


class Page:
    """One live page on one channel, for the whole run, across its reconnections: what befalls its
    sockets, and when it shows each version, goes to `tally`."""

    def __init__(self, index: int, channel: str, account: Account, port: int, tally: Tally) -> None:
        self.index = index
        self.channel = channel
        self.account = account
        self.port = port
        """nginx's."""
        self.tally = tally
        self.subject = int(channel.split(":")[1]) if channel.startswith("subject:") else None
        self.teachers: dict[int, tuple[int, int, int]] = {}
        """good, bad, version: the highest version seen of each teacher."""
        self.subjects: dict[int, tuple[int, int]] = {}
        self.votes_total: int | None = None
        self.subscribed = False
        """The current socket has had its snapshot."""
        self.changed_at = 0.0
        """When what the page shows last changed."""
        self.closed_at: float | None = None
        """When its last socket closed, until a new one has its snapshot."""
        self.ready = asyncio.Event()
        self.client: WsClient | None = None
        self.failures = 0
        self.connects = 0
        self.stopping = False
        self._subscribe = orjson.dumps({"op": "subscribe", "channel": channel, "id": 1})

    def version_of(self, teacher: int) -> int:
        shown = self.teachers.get(teacher)
        return shown[2] if shown else 0

    async def run(self) -> None:
        tally = self.tally
        while not self.stopping:
            token = self.account.token
            try:
                client = await open_socket(self.port, token, self._new_client)
            except Exception as error:
                self.client = None
                tally.handshake_failures[_failure(error)] += 1
                if "401" in str(error):
                    await self.account.renew(token)
                await self.backoff()
                continue
            code = await client.closed
            client.close()
            self.client, self.subscribed, self.closed_at = None, False, now()
            tally.closes[str(code)] += 1
            if self.stopping:
                return
            await self.backoff()

    def stop(self) -> None:
        """No reconnection from now on; the socket, if open, is closed."""
        self.stopping = True
        if self.client is not None:
            self.client.close()

    def _new_client(self) -> WsClient:
        self.client = WsClient(self.on_text)
        return self.client

    async def backoff(self) -> None:
        self.failures += 1
        ceiling = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.failures - 1))
        await asyncio.sleep(ceiling / 2 + random.random() * ceiling / 2)

    def on_text(self, payload: bytes) -> None:
        message = orjson.loads(payload)
        kind = message.get("type")
        if kind in ("snapshot", "votes") and message.get("channel") == self.channel:
            at = now()
            if self.subject is None:
                for item in message["subjects"]:
                    shown = (item["good_count"], item["bad_count"])
                    if self.subjects.get(item["no"]) != shown:
                        self.subjects[item["no"]], self.changed_at = shown, at
                self.votes_total = message["votes_total"]
            else:
                for item in message.get("teachers") or message.get("updates") or ():
                    before = self.version_of(item["no"])
                    if item["version"] > before:
                        self.teachers[item["no"]] = (item["good_count"], item["bad_count"], item["version"])
                        self.changed_at = at
                        self.tally.staleness.shown(self.index, item["no"], before, item["version"], at)
            if kind == "snapshot":
                self.subscribed = True
                self.ready.set()
                if self.closed_at is not None:
                    self.tally.outages.append(at - self.closed_at)
                    self.closed_at = None
        elif kind == "welcome":
            self.failures = 0
            self.connects += 1
            if self.client is not None:
                self.client.send_text(self._subscribe)
        elif kind == "token":
            self.account.token = str(message["access_token"])
        elif kind == "error":
            self.tally.socket_errors[str(message.get("code"))] += 1
        elif kind == "revoked":
            self.tally.socket_errors["revoked"] += 1


def _failure(error: BaseException) -> str:
    text = str(error)
    for status in ("401", "403", "502", "503", "504"):
        if f" {status} " in f" {text} ":
            return status
    return type(error).__name__
