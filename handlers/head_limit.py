"""A request head too large is answered before the close.

tornado closes the connection as soon as a request line or header block outgrows
max_header_size, so the client sees a reset it cannot tell from a crash. Here it
gets 414 (the request line alone is too long) or 431 (the header block), as
problem+json with `Connection: close`, and then the close.
"""

from __future__ import annotations

from typing import Any

from tornado.iostream import IOStream, UnsatisfiableReadError

from handlers.base import problem_json
from handlers.headers import PROBLEM_JSON

DRAIN_LIMIT = 1024 * 1024
"""What is left of an oversized head and already received is read and dropped, up to this much,
so that the close is a FIN the client reads after the answer, not a reset that discards it."""
URI_TOO_LONG = (414, "URI Too Long", "The request line is longer than the server reads.")
HEADERS_TOO_LARGE = (431, "Request Header Fields Too Large", "The request headers are larger than the server reads.")


def refusal(status: int, reason: str, detail: str, *headers: str) -> bytes:
    """A whole problem+json answer, written straight to a connection that is then closed."""
    body = problem_json(status, detail)
    head = "".join(
        f"{line}\r\n" for line in (
            f"HTTP/1.1 {status} {reason}", f"Content-Type: {PROBLEM_JSON}", *headers,
            f"Content-Length: {len(body)}", "Connection: close",
        )
    )
    return head.encode() + b"\r\n" + body


class HeadLimitStream(IOStream):
    """A connection's stream that answers a request head over the limit before it closes.

    Only tornado's read of a request head waits on a regex with a byte limit: a failure of that
    read is the oversized head, and nothing else (a chunk size line, a WebSocket frame) is."""

    def close(self, exc_info: Any = False) -> None:
        if isinstance(exc_info, UnsatisfiableReadError) and self._read_regex is not None and not self.closed():
            self._refuse_head()
        super().close(exc_info)

    def _refuse_head(self) -> None:
        limit = self._read_max_bytes or len(self._read_buffer)
        request_line_read = self._read_buffer.find(b"\n", 0, limit) >= 0
        written = self.write(refusal(*(HEADERS_TOO_LARGE if request_line_read else URI_TOO_LONG)))
        written.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._drain()

    def _drain(self) -> None:
        drained = 0
        try:
            while drained < DRAIN_LIMIT and (chunk := self.socket.recv(65536)):
                drained += len(chunk)
        except OSError:  # nothing more has arrived (BlockingIOError), or the peer is gone
            pass
