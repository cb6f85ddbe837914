"""TokenClock under churn: its heap stays bounded by the sockets still open, and every open
socket's deadlines still fire, whatever order sockets open, get new tokens and close in.

The holders are plain objects on a real event loop and the real clock: the clock needs nothing
of a socket but its token's expiry, a push and an expiry callback.
"""

from __future__ import annotations

import asyncio
import time

from hypothesis import given
from hypothesis import strategies as st

from services.live.token_clock import SLACK, TokenClock
from tests.harness.server import wait_for
from tests.harness.strategies import examples

AHEAD = 0.02
"""auth.refresh_ahead of these clocks: pushes land 10-20 ms before expiry."""
LIFETIME = 0.06
"""How far ahead every token expires: the deadlines of an example all fall within a blink."""


class Holder:
    def __init__(self, expires_at: float) -> None:
        self.closed = False
        self.expires_at = expires_at
        self.pushed = 0
        self.expired = 0

    async def push_token(self) -> None:
        self.pushed += 1

    def token_expired(self) -> None:
        self.expired += 1


def entries_bound(clock_pushes: bool, open_holders: int) -> int:
    """What the heap may hold: twice the open holders' own entries, plus the slack."""
    return 2 * (2 if clock_pushes else 1) * open_holders + SLACK


async def churn(cycles: int, size: int, push: bool) -> int:
    """With one holder open throughout, `cycles` times open `size` holders and close them all;
    the heap's size after."""
    clock = TokenClock(3600, push)
    survivor = Holder(time.time() + 3600)
    clock.track(survivor)
    for _ in range(cycles):
        holders = [Holder(time.time() + 3600) for _ in range(size)]
        for holder in holders:
            clock.track(holder)
        for holder in holders:
            holder.closed = True
            clock.forget(holder)
    size_after = len(clock)
    clock.close()
    return size_after


def test_the_heap_does_not_keep_closed_sockets_until_their_tokens_expire() -> None:
    for push in (True, False):
        size = asyncio.run(churn(cycles=20, size=1000, push=push))
        assert size <= entries_bound(push, 1), f"{size} entries for one open socket"


ops = st.lists(
    st.one_of(
        st.just(("open", 0)),
        st.tuples(st.just("retoken"), st.integers(0, 200)),
        st.tuples(st.just("close"), st.integers(0, 200)),
    ),
    min_size=100,
    max_size=400,
)
"""Long enough for churn: a hundred sockets come and go past the slack of a few dozen entries."""


@examples(1)
@given(ops=ops, push=st.booleans())
def test_open_sockets_keep_their_deadlines_through_any_churn(ops: list[tuple[str, int]], push: bool) -> None:
    async def run() -> None:
        clock = TokenClock(AHEAD, push)
        holders: list[Holder] = []
        for op, index in ops:
            open_now = [h for h in holders if not h.closed]
            if op == "open":
                holders.append(Holder(time.time() + LIFETIME))
                clock.track(holders[-1])
            elif open_now:
                holder = open_now[index % len(open_now)]
                if op == "retoken":
                    holder.expires_at = time.time() + LIFETIME
                    clock.track(holder)
                else:
                    holder.closed = True
                    clock.forget(holder)
            open_count = len([h for h in holders if not h.closed])
            assert len(clock) <= entries_bound(push, open_count), f"{len(clock)} entries, {open_count} open"
        open_holders = [h for h in holders if not h.closed]

        async def all_fired() -> bool:
            """Expired, and pushed first when the clock pushes: a push is a task of its own, which a
            loaded loop may run a turn after the expiry it came due before."""
            return all(h.expired and h.pushed >= push for h in open_holders)

        await wait_for(all_fired, timeout=5, interval=LIFETIME / 4, what="every open socket's push and expiry")
        clock.close()
        for holder in holders:
            if holder.closed:
                continue
            assert holder.expired == 1, "an open socket's expiry never fired"
            assert holder.pushed == (1 if push else 0), "an open socket's push was lost or doubled"

    asyncio.run(run())
