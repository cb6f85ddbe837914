"""Stopping a background task for good, on Python 3.11.

asyncio.wait_for, which redis-py uses to send each command within its socket timeout, returns
the command's result instead of raising CancelledError when the cancellation comes as the send
completes (CPython gh-86296, fixed in 3.12), and the cancelled task goes on. A loop cancelled
at shutdown while a command was in flight then ran on, and the shutdown waited for it until its
deadline: 98 of 100 such cancellations were lost (tests/ops/test_cancellation.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("livevote")

AT_ONCE = 10
"""Cancellations sent one turn of the loop apart: a loop of commands back to back lost 1-2 in a
row at most, each meeting the next command's send."""
CANCEL_AGAIN_AFTER = 0.05
"""Seconds between the cancellations after those: a task that takes longer to end is ending."""


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task`, again while it goes on, and return once it has ended. An error it ended
    with is logged, not raised: the caller is stopping it either way."""
    sent = 0
    while not task.done():
        task.cancel()
        sent += 1
        await asyncio.wait([task], timeout=0 if sent < AT_ONCE else CANCEL_AGAIN_AFTER)
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed before it was stopped", task.get_name(), exc_info=task.exception())
