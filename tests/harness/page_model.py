"""What an open page shows, by the rules of docs/protocol.md, and what it should show.

`shown` folds a socket's messages of one channel as the pages do (static/js:
teachers.js, index.js, dashboard.js): a snapshot is the whole channel, `votes`
move counts by version, `catalog` adds, changes and removes records. `expected`
reads the same picture from the store over REST (the dashboard from /api/stats).
Both give, per channel kind:
- subject:N and teacher:N: {"name": subject name or None, "teachers": {no: (name, subject, good, bad, version)}};
- dashboard: {"subjects": {no: (name, good, bad)}, "votes_total": n}.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from tests.harness.server import JsonClient
from tests.harness.ws_client import LiveClient

Picture = dict[str, Any]


def shown(messages: Iterable[dict[str, Any]], channel: str) -> Picture:
    kind, _, digits = channel.partition(":")
    if kind == "dashboard":
        return _dashboard_shown(messages)
    number = int(digits)
    name: str | None = None
    records: dict[int, dict[str, Any]] = {}
    counts: dict[int, tuple[int, int, int]] = {}
    """Counts by version, kept for teachers without a card too (as VersionedCounts: at an equal
    version, counts withheld or shown again follow the later message)."""

    def count(item: dict[str, Any]) -> None:
        known = counts.get(item["no"])
        sight_changed = known is not None and known[2] == item["version"] and (
            (known[0] is None) != (item["good_count"] is None))
        if known is None or known[2] < item["version"] or sight_changed:
            counts[item["no"]] = (item["good_count"], item["bad_count"], item["version"])

    def show(record: dict[str, Any]) -> None:
        known = records.get(record["no"])
        if known is None or known["version"] < record["version"]:
            records[record["no"]] = record
        count(record)

    def mine(record: dict[str, Any]) -> bool:
        return record["subject"] == number if kind == "subject" else record["no"] == number

    for message in messages:
        if message.get("channel") != channel:
            continue
        if message.get("type") == "snapshot":
            name = message["subject"]["name"] if "subject" in message else name
            listed = {item["no"] for item in message["teachers"]}
            records = {no: record for no, record in records.items() if no in listed}
            for item in message["teachers"]:
                show(item)
        elif message.get("type") == "votes":
            for item in message["updates"]:
                count(item)
        elif message.get("type") == "catalog":
            record, removed = message.get("record"), message.get("removed")
            if message["kind"] == "subject":
                if record is not None and kind == "subject" and record["no"] == number:
                    name = record["name"]
                if removed is not None and kind == "subject" and removed == number:
                    name, records = None, {}
            elif record is not None and mine(record):
                show(record)
            else:
                records.pop(record["no"] if record is not None else removed, None)
    teachers = {no: (record["name"], record["subject"], *counts[no]) for no, record in records.items()}
    return {"name": name if kind == "subject" else None, "teachers": teachers}


def _dashboard_shown(messages: Iterable[dict[str, Any]]) -> Picture:
    subjects: dict[int, tuple[str, int, int]] = {}
    total = None
    for message in messages:
        if message.get("channel") != "dashboard":
            continue
        if message.get("type") == "snapshot":
            subjects = {}
        if message.get("type") in ("snapshot", "votes"):
            subjects.update({s["no"]: (s["name"], s["good_count"], s["bad_count"]) for s in message["subjects"]})
            total = message["votes_total"]
        elif message.get("type") == "catalog" and message["kind"] == "subject":
            if message.get("record") is not None:
                _, good, bad = subjects.get(message["record"]["no"], ("", 0, 0))
                subjects[message["record"]["no"]] = (message["record"]["name"], good, bad)
            else:
                subjects.pop(message["removed"], None)
    return {"subjects": subjects, "votes_total": total}


async def expected(server: JsonClient, channel: str) -> Picture:
    """What a page of `channel` should show: the store's records and counts."""
    kind, _, digits = channel.partition(":")
    if kind == "dashboard":
        stats = (await server.get("/api/stats")).json()
        subjects = {s["no"]: (s["name"], s["good_count"], s["bad_count"]) for s in stats["subjects"]}
        return {"subjects": subjects, "votes_total": stats["votes_total"]}
    if kind == "subject":
        found = await server.get(f"/api/subjects/{digits}/")
        if found.status == 404:
            return {"name": None, "teachers": {}}
        rows = (await server.get(f"/api/subjects/{digits}/teachers/")).json()
        name = found.json()["name"]
    else:
        found = await server.get(f"/api/teachers/{digits}/")
        rows, name = ([] if found.status == 404 else [found.json()]), None
    teachers = {t["no"]: (t["name"], t["subject"], t["good_count"], t["bad_count"], t["version"]) for t in rows}
    return {"name": name, "teachers": teachers}


async def wait_showing_the_store(client: LiveClient, channel: str, server: JsonClient, timeout: float = 10.0) -> None:
    """Until the socket's page of `channel` shows what the store holds; fails with both."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (want := await expected(server, channel)) != (have := shown(client.messages, channel)):
        if loop.time() > deadline:
            raise AssertionError(f"{channel} does not show the store within {timeout} s: {have} != {want}")
        await asyncio.sleep(0.02)
