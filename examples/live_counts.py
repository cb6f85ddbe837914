"""Print a subject's live vote counts: python examples/live_counts.py ws://127.0.0.1:8000/ws TOKEN 1"""

import asyncio
import json
import sys

import websockets


async def main(url: str, token: str, subject: str) -> None:
    # The token rides in a second subprotocol, as in a browser (docs/protocol.md).
    async with websockets.connect(url, subprotocols=["livevote.v1", f"bearer.{token}"]) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channel": f"subject:{subject}"}))
        async for raw in ws:  # welcome, ack, a snapshot of the subject, then live changes
            message = json.loads(raw)
            if message["type"] == "error":
                sys.exit(f"error: {message['message']}")
            for teacher in message.get("teachers", []) + message.get("updates", []):
                print(f"teacher {teacher['no']}: {teacher['good_count']} good, {teacher['bad_count']} bad",
                      flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
