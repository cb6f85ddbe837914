"""A keep-alive HTTP/1.1 client just big enough for the benchmarks: one request at a time per
connection; and a benchmark user signed in with it."""

from __future__ import annotations

import asyncio
import json

PASSWORD = "load test passphrase"
"""Every benchmark user's (bench/peers/drf/bootstrap.py gives its users this one too)."""
JSON = {"Content-Type": "application/json"}


class HttpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
        self._reader, self._writer, self._port = reader, writer, port

    @classmethod
    async def open(cls, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, port)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self._port}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length) if length else b""

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


async def sign_in(port: int, username: str = "bench", *, register: bool = True,
                  token_field: str = "access_token") -> str:
    """An access token for `username` (registered first unless the server has it already; a
    second registration is refused, which is fine)."""
    connection = await HttpConnection.open(port)
    body = json.dumps({"username": username, "password": PASSWORD}).encode()
    try:
        if register:
            await connection.request("POST", "/api/auth/register", body, JSON)
        status, reply = await connection.request("POST", "/api/auth/login", body, JSON)
    finally:
        await connection.close()
    if status != 200:
        raise RuntimeError(f"login of {username} on port {port} answered {status}: {reply!r}")
    return str(json.loads(reply)[token_field])
