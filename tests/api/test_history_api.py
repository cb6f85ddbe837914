"""Vote history over REST, and a subject's exports: spans, steps, bounds, errors, formats, streaming."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application

from handlers.base import InFlight
from handlers.history import RESULT_COLUMNS, ExportHandler
from services.backends.store_sqlite import SqliteStore
from services.errors import Unavailable
from tests.harness.server import LiveServer, UserClient, assert_problem, sign_up

SUBJECT = 2
TEACHER = 4  # 赵一鸣, the first teacher of subject 2 in the demo data
OTHER = 5  # 钱多多, subject 2 too
ELSEWHERE = 1  # subject 1


def sqlite(api: LiveServer) -> SqliteStore:
    assert api.services is not None
    store = api.services.backends.store
    assert isinstance(store, SqliteStore)
    return store


async def age_history(api: LiveServer, minutes: int) -> None:
    """Every change so far as if made `minutes` ago."""
    await sqlite(api).database.write(
        lambda conn: conn.execute("UPDATE vote_history SET minute = minute - ?", (minutes,)))


async def vote(client: UserClient, teacher: int, value: str | None) -> None:
    if value is None:
        response = await client.request("DELETE", f"/api/teachers/{teacher}/vote")
    else:
        response = await client.request("PUT", f"/api/teachers/{teacher}/vote", json_body={"value": value})
    assert response.status == 200, response.body


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_teachers_history_is_the_last_hour_by_minute(api: LiveServer, user: UserClient) -> None:
    other = await sign_up(api, "bob")
    for client, value in ((user, "good"), (other, "good"), (user, "bad"), (other, None)):
        await vote(client, TEACHER, value)
    response = await api.get(f"/api/teachers/{TEACHER}/history")
    assert response.status == 200 and response.content_type == "application/json", response.body
    history = response.json()
    buckets = history["buckets"]
    assert (history["step"], history["teacher"], history["subject"], len(buckets)) == ("minute", TEACHER, SUBJECT, 60)
    start = datetime.fromisoformat(history["from"])
    assert [bucket["at"] for bucket in buckets] == [iso(start + timedelta(minutes=i)) for i in range(60)]
    assert history["to"] == iso(start + timedelta(minutes=60)) and history["to"].endswith("Z")
    assert datetime.fromisoformat(history["to"]) > datetime.now(UTC) - timedelta(seconds=1)
    assert (buckets[-1]["good_count"], buckets[-1]["bad_count"]) == (0, 1)
    assert sum(bucket["votes"] for bucket in buckets) == 4
    assert (buckets[0]["good_count"], buckets[0]["bad_count"], buckets[0]["votes"]) == (0, 0, 0)


async def test_a_subjects_history_sums_its_teachers_only(api: LiveServer, user: UserClient) -> None:
    await vote(user, TEACHER, "good")
    await vote(user, OTHER, "bad")
    await vote(user, ELSEWHERE, "good")
    buckets = (await api.get(f"/api/subjects/{SUBJECT}/history/?step=hour")).json()["buckets"]
    assert (buckets[-1]["good_count"], buckets[-1]["bad_count"], buckets[-1]["votes"]) == (1, 1, 2)
    assert len(buckets) == 24
    history = (await api.get(f"/api/subjects/{ELSEWHERE}/history")).json()
    assert (history["subject"], history["teacher"], history["buckets"][-1]["good_count"]) == (ELSEWHERE, None, 1)


async def test_hours_and_days_hold_the_counts_at_their_end(api: LiveServer, user: UserClient) -> None:
    other = await sign_up(api, "bob")
    await vote(user, TEACHER, "good")
    await vote(other, TEACHER, "good")
    await age_history(api, 3 * 24 * 60)  # three days ago
    await vote(other, TEACHER, "bad")
    days = (await api.get(f"/api/teachers/{TEACHER}/history?step=day")).json()
    assert len(days["buckets"]) == 30 and days["from"].endswith("T00:00:00Z")
    assert [(b["good_count"], b["bad_count"], b["votes"]) for b in days["buckets"][-4:]] == [
        (2, 0, 2), (2, 0, 0), (2, 0, 0), (1, 1, 1)]
    now = datetime.now(UTC)
    since = now - timedelta(days=3, hours=2)
    hours = (await api.get(f"/api/teachers/{TEACHER}/history?step=hour&from={iso(since)}&to={iso(now)}")).json()
    assert hours["from"] == iso(since.replace(minute=0, second=0))
    counted = [(b["good_count"], b["bad_count"]) for b in hours["buckets"]]
    assert counted[0] == (0, 0) and counted[-1] == (1, 1) and (2, 0) in counted
    assert sum(b["votes"] for b in hours["buckets"]) == 3


async def test_a_span_to_now_holds_the_vote_just_cast(api: LiveServer, user: UserClient) -> None:
    """`to` is rounded up to the next minute: a vote cast earlier in its minute is inside the span."""
    await vote(user, TEACHER, "good")
    now = datetime.now(UTC)
    query = f"from={iso(now - timedelta(minutes=5))}&to={now.isoformat().replace('+00:00', 'Z')}"
    last = (await api.get(f"/api/teachers/{TEACHER}/history?{query}")).json()["buckets"][-1]
    assert (last["good_count"], last["votes"]) == (1, 1)


async def test_bad_spans_are_422_naming_the_field(api: LiveServer) -> None:
    cases = {
        "step=week": "step",
        "from=yesterday": "from",
        "to=2026-13-01T00:00:00Z": "to",
        "from=2026-05-02T00:00:00Z&to=2026-05-01T00:00:00Z": "to",
        "from=2026-05-01T00:00:00Z&to=2026-05-03T00:00:00Z": "from",  # 2,880 minutes
        "step=hour&from=2026-01-01T00:00:00Z&to=2026-05-01T00:00:00Z": "from",
    }
    for query, field in cases.items():
        for path in (f"/api/teachers/{TEACHER}/history", f"/api/subjects/{SUBJECT}/history"):
            problem = assert_problem(await api.get(f"{path}?{query}"), 422)
            assert [error["field"] for error in problem["errors"]] == [field], (query, problem)
    allowed = await api.get(f"/api/teachers/{TEACHER}/history?step=day&from=2022-05-01T00:00:00%2B08:00&to=2026-04-09")
    assert allowed.status == 200 and len(allowed.json()["buckets"]) == 1440, allowed.body
    assert allowed.json()["from"] == "2022-04-30T00:00:00Z", "an offset is read, then the day is UTC's"
    assert_problem(await api.get("/api/teachers/999/history"), 404)
    assert_problem(await api.get("/api/subjects/999/history"), 404)
    assert_problem(await api.get(f"/api/teachers/{TEACHER}/history?step=day&step=hour"), 400)


# -- exports ---------------------------------------------------------------------


async def test_exports_are_for_administrators(api: LiveServer, user: UserClient) -> None:
    for path in (f"/api/subjects/{SUBJECT}/results.csv", f"/api/subjects/{SUBJECT}/history.csv"):
        assert_problem(await api.get(path), 401)
        assert_problem(await user.get(path), 403)


async def test_results_export_is_csv_with_a_bom_or_json(api: LiveServer, admin: UserClient, user: UserClient) -> None:
    await vote(user, TEACHER, "good")
    await vote(user, OTHER, "bad")
    renamed = await admin.request("PATCH", f"/api/teachers/{OTHER}", json_body={"name": "=HYPERLINK(\"x\")"})
    assert renamed.status == 200, renamed.body
    response = await admin.get(f"/api/subjects/{SUBJECT}/results.csv")
    assert response.status == 200, response.body
    assert response.content_type == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == f'attachment; filename="subject-{SUBJECT}-results.csv"'
    assert response.body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.body.decode("utf-8-sig"))))
    assert rows == [["no", "name", "good", "bad", "version"], ["4", "赵一鸣", "1", "0", "1"],
                    ["5", "'=HYPERLINK(\"x\")", "0", "1", "2"], ["6", "孙悦", "0", "0", "0"]]
    as_json = await admin.get(f"/api/subjects/{SUBJECT}/results.csv", headers={"Accept": "application/json"})
    assert as_json.content_type == "application/json"
    assert as_json.json()[0] == {"no": 4, "name": "赵一鸣", "good": 1, "bad": 0, "version": 1}
    assert as_json.json()[1]["name"] == "=HYPERLINK(\"x\")", "JSON is no spreadsheet: names as they are"
    refused = await admin.get(f"/api/subjects/{SUBJECT}/results.csv", headers={"Accept": "text/html"})
    problem = assert_problem(refused, 406)
    assert "text/csv" in problem["detail"]
    assert_problem(await admin.get("/api/subjects/999/results.csv"), 404)


async def test_history_export_lists_each_teachers_changes(api: LiveServer, admin: UserClient, user: UserClient) -> None:
    await vote(user, TEACHER, "good")
    await age_history(api, 5)
    await vote(user, TEACHER, "bad")
    await vote(user, OTHER, "good")
    response = await admin.get(f"/api/subjects/{SUBJECT}/history.csv")
    assert response.status == 200 and response.body.startswith("\ufeff".encode()), response.body
    rows = list(csv.DictReader(io.StringIO(response.body.decode("utf-8-sig"))))
    assert [(r["teacher"], r["name"], r["good"], r["bad"], r["votes"]) for r in rows] == [
        ("4", "赵一鸣", "1", "0", "1"), ("4", "赵一鸣", "0", "1", "1"), ("5", "钱多多", "1", "0", "1")]
    assert rows[0]["at"] < rows[1]["at"] and rows[0]["at"].endswith(":00Z")
    hourly = await admin.get(f"/api/subjects/{SUBJECT}/history.csv?step=hour", headers={"Accept": "application/json"})
    assert [(r["teacher"], r["good"], r["bad"]) for r in hourly.json()] in (
        [(4, 0, 1), (5, 1, 0)], [(4, 1, 0), (4, 0, 1), (5, 1, 0)])  # two rows when an hour began in between
    problem = assert_problem(await admin.get(f"/api/subjects/{SUBJECT}/history.csv?step=year"), 422)
    assert problem["errors"][0]["field"] == "step"


async def test_a_long_history_export_streams_in_chunks(api: LiveServer, admin: UserClient) -> None:
    """3,000 minutes of changes, more than one page of the store: the answer comes chunked, in
    pieces, and adds up."""
    now = int(time.time() // 60)
    rows = [(TEACHER, now - 3000 + i, 1, 0, 1) for i in range(3000)]
    await sqlite(api).database.write(lambda conn: (
        conn.executemany("INSERT INTO vote_history (teacher, minute, good, bad, votes) VALUES (?, ?, ?, ?, ?)", rows),
        conn.execute("UPDATE teachers SET good_count = 3000 WHERE no = ?", (TEACHER,)),
        conn.execute("DELETE FROM vote_history WHERE minute >= ?", (now - 1,)),  # the trigger's own row, and the last
    ))
    chunks: list[bytes] = []
    since = iso(datetime.fromtimestamp((now - 3000) * 60, UTC))
    response = await admin.get(f"/api/subjects/{SUBJECT}/history.csv?from={since}", streaming_callback=chunks.append)
    assert response.status == 200 and response.headers.get("Transfer-Encoding") == "chunked"
    assert len(chunks) >= 3, len(chunks)
    lines = list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8-sig"))))
    assert len(lines) == 1 + 2999 and lines[-1][3] == "3000"
    assert [int(line[3]) for line in lines[1:4]] == [2, 3, 4], "counts run on from before the span's first minute"
    hourly = await admin.get(f"/api/subjects/{SUBJECT}/history.csv?from={since}&step=hour")
    hours = list(csv.DictReader(io.StringIO(hourly.body.decode("utf-8-sig"))))
    assert len(hours) in (50, 51) and sum(int(hour["votes"]) for hour in hours) == 2999, "split hours"
    assert len({hour["at"] for hour in hours}) == len(hours) and hours[-1]["good"] == "3000"


class ExportThatFails(ExportHandler):
    """An export whose rows stop coming after the first page (as when the store goes away), once
    the client has that page."""

    def initialize(self, page_seen: asyncio.Event, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(**kwargs)
        self.page_seen = page_seen

    async def get(self) -> None:
        async def pages() -> AsyncIterator[list[Sequence[Any]]]:
            yield [(1, "赵一鸣", 1, 0, 1)]
            await asyncio.wait_for(self.page_seen.wait(), 10)
            raise Unavailable("The store went away.")

        await self.stream("broken", RESULT_COLUMNS, pages())


async def test_an_export_cut_short_does_not_end_as_if_whole(api: LiveServer) -> None:
    """The client must not take a cut file for a whole one: the response never ends properly."""
    assert api.services is not None
    page_seen = asyncio.Event()
    handler_args = {"services": api.services, "in_flight": InFlight(), "page_seen": page_seen}
    sock, port = bind_unused_port()
    server = HTTPServer(Application([("/export", ExportThatFails, handler_args)]))
    server.add_sockets([sock])
    chunks: list[bytes] = []

    def received(chunk: bytes) -> None:
        chunks.append(chunk)
        if "赵一鸣".encode() in b"".join(chunks):
            page_seen.set()

    try:
        request = HTTPRequest(f"http://127.0.0.1:{port}/export", streaming_callback=received, request_timeout=10)
        with pytest.raises(HTTPClientError) as failed:
            await AsyncHTTPClient().fetch(request)
        assert failed.value.code == 599, failed.value
        assert b"".join(chunks).decode("utf-8-sig") == "no,name,good,bad,version\r\n1,赵一鸣,1,0,1\r\n"
    finally:
        server.stop()
