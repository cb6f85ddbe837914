"""Peer: a bare Tornado RequestHandler answering GET /healthz with livevote's body.

What livevote's trivial endpoint is compared with (bench/ingest.py): the same
framework and the same bytes, with none of livevote's per-request work. Its
access log is tornado's default, as is livevote's.
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
from tornado.web import Application, RequestHandler

BODY = orjson.dumps({"status": "ok"})


class HealthHandler(RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(BODY)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    Application([(r"/healthz", HealthHandler)]).listen(options.port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
