"""The ping wheel (services/live/heartbeat.py) under every interleaving of sockets arriving,
leaving, answering and time passing: nobody answering is kept, nobody answering is dropped,
nobody who left is touched, and nobody waits much longer than an interval for a ping."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from services.live.heartbeat import PingWheel

INTERVAL = 2.0


class Socket:
    def __init__(self, number: int) -> None:
        self.number = number

    def send_ping(self) -> None: ...

    def ping_timed_out(self) -> None: ...

    def __repr__(self) -> str:
        return f"Socket({self.number})"


class PingWheelMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.wheel = PingWheel(INTERVAL)
        self.now = 1000.0
        self.sockets: list[Socket] = []
        self.alive: set[Socket] = set()
        self.owing: dict[Socket, float] = {}
        """Sockets pinged and not answered since, with when they were pinged."""
        self.last_seen: dict[Socket, float] = {}
        """When each live socket arrived or was last pinged."""

    @rule()
    def arrive(self) -> None:
        socket = Socket(len(self.sockets))
        self.sockets.append(socket)
        self.alive.add(socket)
        self.last_seen[socket] = self.now
        self.wheel.add(socket, self.now)

    @precondition(lambda self: self.sockets)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        socket = data.draw(st.sampled_from(self.sockets))
        self.wheel.remove(socket)
        self.alive.discard(socket)
        self.owing.pop(socket, None)

    @precondition(lambda self: self.owing)
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        socket = data.draw(st.sampled_from(sorted(self.owing, key=lambda s: s.number)))
        self.wheel.answered(socket)
        del self.owing[socket]

    @rule(seconds=st.floats(min_value=0.0, max_value=3 * INTERVAL, allow_nan=False))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        to_ping, timed_out = self.wheel.due(self.now)
        assert not set(to_ping) & set(timed_out)
        for socket in timed_out:
            assert socket in self.alive, f"{socket} left but was timed out"
            assert socket in self.owing, f"{socket} answered its ping but was dropped"
            assert self.now - self.owing[socket] >= INTERVAL - self.wheel.tick, "dropped before its pong was due"
            self.alive.discard(socket)
            del self.owing[socket]
        for socket in to_ping:
            assert socket in self.alive, f"{socket} left but was pinged"
            assert socket not in self.owing, f"{socket} owed a pong but was pinged again"
            self.owing[socket] = self.now
            self.last_seen[socket] = self.now

    @invariant()
    def the_wheel_holds_exactly_the_live_sockets(self) -> None:
        assert len(self.wheel) == len(self.alive)
        assert all(socket in self.wheel for socket in self.alive)

    @invariant()
    def nobody_waits_past_an_interval_and_a_tick(self) -> None:
        """Checked right after time passed: every live socket was pinged (or arrived) lately."""
        latest = self.now - INTERVAL - self.wheel.tick
        late = [socket for socket in self.alive if self.last_seen[socket] < latest]
        assert not late, f"not pinged for over an interval: {late}"


TestPingWheel = PingWheelMachine.TestCase
