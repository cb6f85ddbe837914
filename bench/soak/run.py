"""The soak as a command: the run in order (the deployment, users and pages, then votes and faults
for --duration seconds, then the checks); everything stopped at the end."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic as now
from typing import Any

from tornado.httpclient import AsyncHTTPClient

from bench.common import CpuMeter, machine, raise_open_files
from bench.soak.accounts import Account, Voter
from bench.soak.checks import CONVERGE, counted_sockets, lost_votes, stale_pages, store_counts
from bench.soak.faults import Faults
from bench.soak.options import Options, parse_options
from bench.soak.pages import Page
from bench.soak.probes import SpublishCalls, WorkerFeeds, sample_rss
from bench.soak.report import print_report, summarize
from bench.soak.stack import Stack
from bench.soak.tally import Tally

SETTLE_VOTES = 60.0
"""How long votes in flight at the end may take to be acknowledged."""
SOCKETS_PER_ACCOUNT = 100
CONNECT_CONCURRENCY = 100


@dataclass
class Soak:
    options: Options
    stack: Stack = field(init=False)
    faults: Faults = field(init=False)
    pages: list[Page] = field(default_factory=list)
    voters: list[Voter] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stack = Stack(Path(tempfile.mkdtemp(prefix="livevote-soak-")), self.options.store)
        self.faults = Faults(self.stack, self.options.fault_every, self.options.faults)

    def watchers(self) -> int:
        """The accounts the pages log in with: one per SOCKETS_PER_ACCOUNT pages."""
        return max(1, -(-self.options.sockets // SOCKETS_PER_ACCOUNT))

    # -- setting up --------------------------------------------------------------------------------

    async def catalog(self) -> list[int]:
        """The first --subjects subjects' teachers; fills the staleness tracker's map."""
        nginx = self.stack.nginx
        assert nginx is not None
        teachers = []
        for subject in range(1, self.options.subjects + 1):
            response = await nginx.get(f"/api/teachers/?sno={subject}")
            if response.status != 200:
                raise RuntimeError(f"subject {subject}: {response.status} (the seeded store has 5)")
            for teacher in response.json()["teachers"]:
                teachers.append(teacher["no"])
                self.tally.staleness.subject_of[teacher["no"]] = subject
        return teachers

    async def open_pages(self) -> None:
        nginx = self.stack.nginx
        assert nginx is not None
        options = self.options
        accounts = [Account(nginx, f"watcher-{i:03d}") for i in range(self.watchers())]
        for account in accounts:
            await account.register()
        channels = [f"subject:{no}" for no in range(1, options.subjects + 1)] + ["dashboard"]
        for index in range(options.sockets):
            page = Page(index, channels[index % len(channels)], accounts[index % len(accounts)], nginx.port, self.tally)
            self.pages.append(page)
            if page.subject is not None:
                self.tally.staleness.pages_by_subject[page.subject].append(page)
        started = now()
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def first_open(page: Page) -> None:
            async with limit:
                self._tasks.append(asyncio.create_task(page.run()))
                await page.ready.wait()

        await asyncio.wait_for(asyncio.gather(*(first_open(page) for page in self.pages)), 120)
        print(f"{options.sockets} pages subscribed in {now() - started:.1f} s", flush=True)

    # -- votes -------------------------------------------------------------------------------------

    async def drive_votes(self, teachers: list[int], end: float) -> int:
        """Turns at a steady rate until `end`; returns how many votes were still unacknowledged
        SETTLE_VOTES seconds later."""
        started, turn = now(), 0
        tasks: set[asyncio.Task[None]] = set()
        while (due := started + turn / self.options.rate) < end:
            if (delay := due - now()) > 0:
                await asyncio.sleep(delay)
            voter = self.voters[turn % len(self.voters)]
            turn += 1
            if voter.busy:
                self.tally.turns_skipped += 1
                continue
            voter.busy = True
            task = asyncio.create_task(voter.vote(self.tally, random.choice(teachers)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if not tasks:
            return 0
        _, unsettled = await asyncio.wait(set(tasks), timeout=SETTLE_VOTES)
        for task in unsettled:
            task.cancel()
        return len(unsettled)

    # -- the whole run ---------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        options = self.options
        stack = self.stack
        await stack.start(accounts=options.voters + self.watchers())
        assert stack.nginx is not None and stack.server is not None and stack.cluster is not None
        teachers = await self.catalog()
        self.voters = [Voter(stack.nginx, f"voter-{i:03d}") for i in range(options.voters)]
        for voter in self.voters:
            await voter.register()
        await self.open_pages()

        feeds, spublish = WorkerFeeds(stack.server.port), SpublishCalls(stack.cluster)
        await feeds.connect(stack.workers())
        await feeds.scrape()
        await spublish.scrape()
        feeds.counting = spublish.counting = True
        before = await store_counts(stack.nginx, teachers)
        client_cpu = CpuMeter(os.getpid())
        client_cpu.start()
        self._tasks.append(asyncio.create_task(sample_rss(stack.workers, self.tally.rss)))

        started = now()
        end = started + options.duration
        print(f"voting for {options.duration:.0f} s at {options.rate:g}/s by {options.voters} users, "
              f"a fault every {options.fault_every:g} s", flush=True)
        faults = asyncio.create_task(self.faults.run(started, end, feeds, spublish))
        self._tasks.append(faults)
        unsettled = await self.drive_votes(teachers, end)
        voting_ended = now()
        await faults
        last = max([self.tally.last_ack] + [fault.recovered or 0.0 for fault in self.faults.injected])
        cpu = client_cpu.stop()

        # Every page must show the store within CONVERGE s of the last vote (or recovery).
        after = await store_counts(stack.nginx, teachers)
        deadline = last + CONVERGE
        # Polled, not an Event: the condition compares every page with the store, too costly to test on
        # every message; the time reported is the pages' own changed_at, so the poll's period skews nothing.
        while (stale := stale_pages(self.pages, self.tally.staleness.subject_of, after)) and now() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        converged = None if stale else max(page.changed_at for page in self.pages)
        self.tally.staleness.finish(now())

        expected: dict[int, list[int]] = {no: [0, 0] for no in teachers}
        for voter in self.voters:
            for teacher, value in voter.votes.items():
                if value is not None:
                    expected[teacher][0 if value == "good" else 1] += 1
        mismatch = sum(abs(after[no][0] - good) + abs(after[no][1] - bad) for no, (good, bad) in expected.items())
        lost = await lost_votes(self.voters)
        stats_sockets = await counted_sockets(stack.nginx, self.pages)

        await feeds.connect(stack.workers())
        await feeds.scrape()
        await spublish.scrape()
        await feeds.close()
        changes = sum(after[no][2] - before[no][2] for no in teachers)
        return summarize(
            options, self.tally, self.faults.injected, self.pages,
            started=started, voting_ended=voting_ended, last=last, converged=converged, cpu=cpu,
            lost=lost, mismatch=mismatch, stale=stale, unsettled=unsettled, changes=changes,
            feeds=feeds, spublish=spublish, stats_sockets=stats_sockets,
        )

    async def stop(self) -> None:
        """Everything this run started, whatever state it is in (also after Ctrl-C)."""
        for page in self.pages:
            page.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.stack.stop()
        work, server = self.stack.work, self.stack.server
        if self.options.keep:
            if server is not None:
                (work / "server.log").write_text("\n".join(server.lines))
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


async def soak(options: Options) -> dict[str, Any]:
    if options.seed is not None:
        random.seed(options.seed)
    raise_open_files()
    AsyncHTTPClient.configure(None, max_clients=options.voters + 50)
    run = Soak(options)
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        result = await run.run()
    finally:
        await run.stop()
    # Reported, not judged: the run's verdict is about votes and pages (see the package docstring).
    result["server_exit"] = run.stack.server_exit
    result["server_errors"] = run.stack.server_problems()
    return result


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    try:
        result = asyncio.run(soak(options))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("soak: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    if options.results:
        path = Path(options.results)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"machine": machine(), **result}, indent=2))
    print_report(result)
    return 0 if result["ok"] else 1
