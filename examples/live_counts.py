"""Print a subject's live vote counts as votes come in, until Ctrl-C.

usage: python examples/live_counts.py ws://127.0.0.1:8000/ws TOKEN SUBJECT

TOKEN is an access token (the README's quick start gets one), SUBJECT a subject's number.
Whatever goes wrong ends it with one line on stderr and exit code 1.
"""

import asyncio
import json
import os
import sys

import websockets


class Stop(Exception):
    """The server said why this watch ends."""


async def watch(url: str, token: str, subject: str) -> None:
    # The token rides in a second subprotocol, as in a browser (docs/protocol.md).
    async with websockets.connect(url, subprotocols=["livevote.v1", f"bearer.{token}"]) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channel": f"subject:{subject}"}))
        async for raw in ws:  # welcome, ack, a snapshot of the subject, then live changes
            message = json.loads(raw)
            if message["type"] == "error":
                raise Stop(message["message"])
            if message["type"] == "revoked":
                raise Stop(f"{message['reason']}: log in again for a new token")
            for teacher in message.get("teachers", []) + message.get("updates", []):
                print(f"teacher {teacher['no']}: {teacher['good_count']} good, {teacher['bad_count']} bad",
                      flush=True)


def main(argv: list[str]) -> str | None:
    """None when stopped by Ctrl-C, else the one line that says what ended it."""
    if len(argv) != 3:
        return __doc__.split("\n\n")[1]
    url, token, subject = argv
    try:
        asyncio.run(watch(url, token, subject))
    except KeyboardInterrupt:
        return None
    except Stop as exc:
        return f"live_counts: {exc}"
    except websockets.InvalidURI:
        return f"live_counts: {url!r} is not a WebSocket URL (ws://HOST:PORT/ws)"
    except websockets.InvalidStatus as exc:
        if exc.response.status_code == 401:
            return "live_counts: the server refused the token (expired, or its session ended): log in again"
        return f"live_counts: the server refused the connection ({exc.response.status_code}): is {url} its /ws?"
    except websockets.ConnectionClosed as exc:
        return f"live_counts: the server closed the connection ({exc})"
    except TimeoutError:
        return f"live_counts: no answer from {url}"
    except OSError as exc:  # a refused connection, an unknown host name
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
        return f"live_counts: cannot connect to {url}: {reason}"
    except websockets.WebSocketException as exc:
        return f"live_counts: {exc}"
    return "live_counts: the server ended the connection"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
