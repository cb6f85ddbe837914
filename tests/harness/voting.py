"""Votes as the scaled tests cast them: one vote, scripts of them, and voters voting without pause."""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Callable, Sequence
from typing import Any

from tests.harness.server import UserClient, log_in, wait_signalled
from tests.harness.ws_client import LiveClient

Value = str | None
"""A vote's value: "good", "bad", or None (withdrawn)."""
VALUES: tuple[Value, ...] = ("good", "bad", None)
Voter = UserClient | LiveClient
"""A REST voter (PUT / DELETE /api/teachers/N/vote) or a socket voter (the `vote` op)."""
Script = Sequence[tuple[int, Value]]
"""A voter's votes in order: (teacher, value)."""
RESEND_AFTER = 0.1
"""Seconds before an unacknowledged vote is sent again (VoteStream's `retry`)."""


async def cast(voter: Voter, teacher: int, value: Value) -> tuple[bool, Any]:
    """One vote; (acknowledged, the reply): a 2xx over REST (the Response), an `ack` over the socket."""
    if isinstance(voter, LiveClient):
        reply = await voter.request("vote", timeout=30, teacher=teacher, value=value)
        return reply["type"] == "ack", reply
    if value is None:
        response = await voter.request("DELETE", f"/api/teachers/{teacher}/vote")
    else:
        response = await voter.request("PUT", f"/api/teachers/{teacher}/vote", json_body={"value": value})
    return 200 <= response.status < 300, response


async def vote_all(voters: Sequence[Voter], scripts: Sequence[Script]) -> int:
    """Each voter runs its script in order, all voters at once; every vote must be acknowledged
    with the value sent. Returns how many votes were cast."""

    async def run(voter: Voter, script: Script) -> None:
        for teacher, value in script:
            acknowledged, reply = await cast(voter, teacher, value)
            assert acknowledged, getattr(reply, "body", reply)
            echoed = reply["value"] if isinstance(reply, dict) else reply.json()["value"]
            assert echoed == value, getattr(reply, "body", reply)

    await asyncio.gather(*(run(voter, script) for voter, script in zip(voters, scripts, strict=True)))
    return sum(len(script) for script in scripts)


class VoteStream:
    """Voters voting without pause, each on its own, on random teachers; every outcome filed
    under the phase it was sent in (the test sets `phase` as it goes); the ledger keeps, per
    (voter, teacher), the value of the last acknowledged vote."""

    def __init__(
        self, voters: Sequence[Voter], teachers: Sequence[int], phase: str = "before", *, pause: float = 0.0,
        tolerate: tuple[type[Exception], ...] = (Exception,), log_in_again: bool = False,
        retry: bool = False, on_reply: Callable[[str, Any], None] | None = None,
    ) -> None:
        """`tolerate`: errors that leave a vote unanswered (a request failed in transit), filed in
        `unknown` and the outcomes while the voter goes on; any other error ends the voter and
        stop() raises it. `log_in_again`: a REST voter refused with 401 logs in again (Redis came
        back empty, its sessions gone). `retry`: a vote not acknowledged is sent again, the same,
        until it is, as a client that must know its vote counted would; the ledger then holds
        what the store must hold even when a refused vote was in fact stored. `on_reply` sees
        each reply as it comes, with the phase its vote was sent in (an error it raises ends the
        voter, and stop() raises it)."""
        self.voters = list(voters)
        self.teachers = teachers
        self.phase = phase
        self.pause = pause
        self.tolerate = tolerate
        self.log_in_again = log_in_again
        self.retry = retry
        self.on_reply = on_reply
        self.outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        """Per phase: how many votes were "acknowledged", "refused" or got "no answer", and each
        reply by voter kind ("REST 200", "socket ack", "REST ConnectionRefusedError", ...)."""
        self.acked: dict[tuple[int, int], Value] = {}
        self.slowest: dict[str, float] = collections.defaultdict(float)
        """Per phase, the longest an acknowledged vote took, in seconds (rounded to 1 ms)."""
        self.unknown: list[tuple[int, int, Value, str]] = []
        """Votes with no answer at all: neither acknowledged nor not."""
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks = [asyncio.create_task(self._run(index)) for index in range(len(voters))]

    async def _run(self, index: int) -> None:
        rng = random.Random(index)
        loop = asyncio.get_running_loop()
        unacknowledged: tuple[int, Value] | None = None
        while not self._stop.is_set() or unacknowledged:  # a retried vote ends acknowledged
            phase = self.phase
            voter = self.voters[index]
            kind = "socket" if isinstance(voter, LiveClient) else "REST"
            teacher, value = unacknowledged or (rng.choice(self.teachers), rng.choice(VALUES))
            unacknowledged = (teacher, value) if self.retry else None
            started = loop.time()
            try:
                acknowledged, reply = await cast(voter, teacher, value)
            except self.tolerate as exc:
                if not self.retry:
                    self.unknown.append((index, teacher, value, repr(exc)))
                self.outcomes[phase][f"{kind} {type(exc).__name__}"] += 1
                self.outcomes[phase]["no answer"] += 1
            else:
                if self.on_reply is not None:
                    self.on_reply(phase, reply)
                if acknowledged:
                    unacknowledged = None
                    self.acked[index, teacher] = value
                    self.slowest[phase] = max(self.slowest[phase], round(loop.time() - started, 3))
                outcome = reply.get("code", reply["type"]) if isinstance(reply, dict) else reply.status
                self.outcomes[phase][f"{kind} {outcome}"] += 1
                self.outcomes[phase]["acknowledged" if acknowledged else "refused"] += 1
                if self.log_in_again and isinstance(voter, UserClient) and outcome == 401:
                    self.voters[index] = await log_in(voter.server, voter.username, voter.password)
            self._changed.set()
            await asyncio.sleep(RESEND_AFTER if unacknowledged else self.pause)

    def count(self, phase: str, acknowledged_only: bool = False) -> int:
        outcomes = self.outcomes[phase]
        if acknowledged_only:
            return outcomes["acknowledged"]
        return outcomes["acknowledged"] + outcomes["refused"] + outcomes["no answer"]

    def replies(self, phase: str) -> collections.Counter[str]:
        """What the votes sent in `phase` got, by voter kind ("REST 200", "socket ack", ...)."""
        outcomes = self.outcomes[phase]
        return collections.Counter({key: n for key, n in outcomes.items() if key.startswith(("REST ", "socket "))})

    async def wait_votes(self, phase: str, count: int, acknowledged_only: bool = False, timeout: float = 20.0) -> None:
        """Until `count` votes sent in `phase` were answered (or acknowledged)."""
        await wait_signalled(self._changed, lambda: self.count(phase, acknowledged_only) >= count, timeout)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def ledger_counts(self) -> dict[int, tuple[int, int]]:
        """good_count, bad_count per teacher, as the acknowledged votes imply."""
        assert not self.unknown, f"{len(self.unknown)} votes got no answer, first ones: {self.unknown[:3]}"
        counts = {teacher: [0, 0] for teacher in self.teachers}
        for (_, teacher), value in self.acked.items():
            if value is not None:
                counts[teacher][value == "bad"] += 1
        return {teacher: (good, bad) for teacher, (good, bad) in counts.items()}
