"""`--workers N`: N worker processes on one listening socket, kept alive by the parent.

The parent forks the workers and then only supervises them, as
tornado.process.fork_processes does: a worker that dies (a signal such as
kill -9, or an exit code other than 0) is replaced by a new fork on the same
socket and with the same number (1..N, so that "worker 2/3" in the logs is one
slot across restarts), at most MAX_RESTARTS times within any RESTART_WINDOW
seconds. A worker that exits 0 was stopped on purpose (SIGTERM to that worker
alone) and is not replaced; the parent exits once the last worker is gone.
SIGINT or SIGTERM to the parent stops every worker gracefully, with no restarts
meanwhile.

This module knows nothing of livevote: server.py hands it the work a worker does.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import NoReturn

log = logging.getLogger("livevote")

MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
"""At most MAX_RESTARTS replacements within any RESTART_WINDOW seconds. The next death
means something beyond one process is wrong (a crash at start, a bad deploy), and
restarting faster helps nobody: the parent stops every worker and exits 1."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class RestartBudget:
    """Restarts allowed within a sliding window of time."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._taken: collections.deque[float] = collections.deque()

    def take(self, now: float) -> bool:
        """Spend one restart at `now` (monotonic seconds); False once `limit` were spent in the last `window`."""
        while self._taken and self._taken[0] <= now - self.window:
            self._taken.popleft()
        if len(self._taken) >= self.limit:
            return False
        self._taken.append(now)
        return True


class Supervisor:
    """The parent of the workers: fork them, replace the dead, stop them all on a stop signal."""

    def __init__(self, count: int, work: Callable[[int], None], stop_timeout: float) -> None:
        """`work(number)` runs in worker `number` (1..count) until it is told to stop; `stop_timeout`
        is how long a graceful stop may take before the workers still running get SIGKILL."""
        self.count = count
        self.work = work
        self.stop_timeout = stop_timeout
        self.budget = RestartBudget(MAX_RESTARTS, RESTART_WINDOW)
        self.workers: dict[int, int] = {}
        """Worker number by pid."""
        self.stop_signal: int | None = None
        self.failed = False

    def run(self) -> int:
        """Supervise until no worker is left; 0 after a clean stop, 1 when giving up or
        when a worker did not stop cleanly."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, lambda signum, _frame: self.stop(signum))
        signal.signal(signal.SIGALRM, lambda _signum, _frame: self.kill_stragglers())
        for number in range(1, self.count + 1):
            self.start_worker(number)
        while self.workers:
            pid, status = os.wait()  # a signal handler runs, then the wait goes on (PEP 475)
            if pid in self.workers:
                self.reap(pid, self.workers.pop(pid), os.waitstatus_to_exitcode(status))
        return 1 if self.failed else 0

    def reap(self, pid: int, number: int, code: int) -> None:
        """Worker `number` ended with `code` (negative: killed by that signal): replace it if it died."""
        if self.stop_signal is not None:
            if code not in (0, -self.stop_signal):
                log.warning("worker %d did not stop cleanly: %s", pid, describe(code))
                self.failed = True
        elif code == 0:
            log.info("worker %d exited 0 on its own; not replaced (%d left)", pid, len(self.workers))
        else:
            log.warning("worker %d died: %s", pid, describe(code))
            if not self.budget.take(time.monotonic()):
                log.error("giving up: a worker died after %d restarts within %.0f s; stopping all workers, exiting 1",
                          MAX_RESTARTS, RESTART_WINDOW)
                self.failed = True
                self.stop(signal.SIGTERM)
            elif (new := self.start_worker(number)) is not None:
                log.warning("worker %d started in place of %d, as worker %d/%d", new, pid, number, self.count)

    def start_worker(self, number: int) -> int | None:
        """Fork worker `number` on the inherited listening socket; its pid, or None once stopping."""
        parent = os.getpid()
        with signals_blocked(STOP_SIGNALS):  # a stop signal between fork and add must not miss the new worker
            if self.stop_signal is not None:
                return None
            pid = os.fork()
            if pid == 0:
                self.be_worker(parent, number)
            self.workers[pid] = number
        return pid

    def be_worker(self, parent: int, number: int) -> NoReturn:
        """In the child: drop the parent's signal handling, run the work, and never return into the parent's code."""
        code = 1
        try:
            for signum in (*STOP_SIGNALS, signal.SIGALRM):
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            die_with_parent(parent)
            self.work(number)
            code = 0
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            os._exit(code)

    def stop(self, signum: int) -> None:
        """Pass a stop signal on to every worker, and arm the alarm that kills the ones that do not stop in time."""
        if self.stop_signal is None:
            self.stop_signal = signum
            signal.alarm(math.ceil(self.stop_timeout))
            log.info("stopping %d worker(s) (%s)", len(self.workers), signal.Signals(signum).name)
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def kill_stragglers(self) -> None:
        log.warning("%d worker(s) still running %.0f s after the stop signal; killing them",
                    len(self.workers), self.stop_timeout)
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this worker when the parent dies, even by kill -9, so that no
    worker outlives it (Linux only; elsewhere the parent's own stop is all there is)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:
        raise RuntimeError("the parent died while this worker was starting")


@contextlib.contextmanager
def signals_blocked(signals: Iterable[int]) -> Iterator[None]:
    """Hold these signals back (their handlers run once unblocked)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


def describe(code: int) -> str:
    """An exit code as os.waitstatus_to_exitcode gives it, in words."""
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
