"""What /proc says about processes, cores and loopback TCP connections (Linux), for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
"""/proc counts CPU time in these ticks per second (100 on Linux: 10 ms each)."""


# -- processes -----------------------------------------------------------------------------


def stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses):
    [0] the state, [1] the parent's pid, [11] and [12] user and system time in clock ticks."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """Running, as /proc sees it (a zombie waiting for a reaper that is not ours does not count)."""
    try:
        return stat_fields(pid)[0] != "Z"
    except FileNotFoundError:
        return False


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process (all its threads) since it started, in 10 ms steps."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def main_thread_seconds(pid: int) -> float:
    """CPU seconds of a process's main thread to the nanosecond (/proc/<pid>/schedstat): for
    windows of tens of ms, which cpu_seconds' 10 ms ticks cannot time."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise ProcessLookupError(f"no {field} for {pid}: a zombie?")


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB (VmRSS)."""
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """The most the process has had resident since it started or reset_peak_rss, in KiB (VmHWM)."""
    return _status_kib(pid, "VmHWM")


def reset_peak_rss(pid: int) -> int:
    """Start a new peak (`5` to clear_refs resets VmHWM); the resident size now, in KiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return rss_kib(pid)


def child_pids(pid: int) -> list[int]:
    """The process's children, sorted (every thread's list: a child belongs to the thread that forked it)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            children.extend(int(child) for child in (task / "children").read_text().split())
    return sorted(children)


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (say gunicorn's master and its worker); those that exit
    meanwhile are left out."""
    tree = [pid]
    for parent in tree:
        with contextlib.suppress(FileNotFoundError):
            tree += child_pids(parent)
    return tree


# -- cores ---------------------------------------------------------------------------------


def core_ticks(core: str) -> tuple[int, int]:
    """(busy, all) clock ticks of one core since boot, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            ticks = [int(tick) for tick in line.split()[1:9]]  # guest time is already in user time
            return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # less idle and iowait
    raise RuntimeError(f"no cpu{core} in /proc/stat")


def core_seconds(core: str) -> float:
    """Busy seconds of one core since boot (sampled at each tick)."""
    return core_ticks(core)[0] / CLOCK_TICKS


def softirq_seconds(core: str) -> float:
    """Loopback delivery the kernel defers to ksoftirqd/N, charged to that thread, not to the
    sender. Not /proc/stat's softirq column: without CONFIG_IRQ_TIME_ACCOUNTING (the usual
    build) the softirq a send() runs on its way out is in the sender's system time already,
    and that column counts it again (measured: sender 4.26 s + column 1.57 s on a core busy
    4.33 s)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == f"ksoftirqd/{core}":
                return cpu_seconds(int(comm.parent.name))
        except OSError:
            continue
    return 0.0


# -- loopback TCP connections --------------------------------------------------------------------


def _tcp_row(server_port: int, client_port: int) -> list[str] | None:
    """The /proc/net/tcp row of the server side of 127.0.0.1:client_port -> 127.0.0.1:server_port."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    found = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            found = fields
    return found


def accept_queue(port: int) -> int:
    """Connections waiting for accept() on the listening socket 127.0.0.1:port (or 0.0.0.0:port)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] in (f"0100007F:{port:04X}", f"00000000:{port:04X}") and fields[3] == "0A":  # LISTEN
            return int(fields[4].split(":")[1], 16)
    raise LookupError(f"nothing listens on port {port}")


def socket_owner(pids: Iterable[int], server_port: int, client_port: int) -> int | None:
    """Which of `pids` holds the server side of the TCP connection 127.0.0.1:client_port -> server_port."""
    row = _tcp_row(server_port, client_port)
    if row is None:
        return None
    wanted = f"socket:[{row[9]}]"
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == wanted:
                    return pid
    return None


def send_queue(server_port: int, client_port: int) -> int | None:
    """Bytes the kernel holds unsent (or unacknowledged) on the server side of that connection."""
    row = _tcp_row(server_port, client_port)
    return None if row is None else int(row[4].split(":")[0], 16)


def kernel_send_buffer_max() -> int:
    """What the kernel may hold of one socket's unsent output (tcp_wmem's maximum) before a
    server's own buffer grows."""
    return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
