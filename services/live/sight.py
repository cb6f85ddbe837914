"""Sight: which counts each socket may see, by its subjects' visibility (services/visibility.py).

The hub asks `withheld(peer, subjects)` for the subjects a channel shows that are not public
now, and sends one frame per answer (encode once per visibility class, never per socket);
while every subject is public there is nothing to ask. For `after_vote` subjects Sight keeps
who has a vote now: read from the store when the subject is first shown or turns after_vote,
then kept by the votes themselves (the feed's messages name their voter). A withdrawal may
have been a user's last vote in the subject: the store says, unless a newer vote of theirs
came meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from services.backends.store import Store
from services.live.peer import Peer
from services.models import is_public

NOTHING: frozenset[int] = frozenset()


class Sight:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._private: dict[int, str] = {}
        """Subjects whose counts not everyone may see now, and their visibility."""
        self._voters: dict[int, set[int]] = {}
        """Per after_vote subject, once read: the users with a vote in it."""
        self._stamps: dict[tuple[int, int], int] = {}
        """Per (subject, user) with a store check under way: the vote events since it began."""
        self._reading: dict[int, list[tuple[int, bool]]] = {}
        """Per after_vote subject whose voters are being read: the vote events meanwhile."""

    @property
    def private(self) -> Mapping[int, str]:
        return self._private

    def update(self, subjects: Iterable[Mapping[str, Any]]) -> set[int]:
        """The subjects as known now (their records); returns those whose sight changed."""
        before = self._private
        self._private = {
            record["no"]: record["visibility"] for record in subjects if not is_public(record)
        }
        for no in set(self._voters) - {no for no, seen in self._private.items() if seen == "after_vote"}:
            del self._voters[no]
        return {no for no in before.keys() | self._private.keys() if before.get(no) != self._private.get(no)}

    def unread_voters(self, among: Iterable[int] | None = None) -> list[int]:
        """after_vote subjects (of `among`) whose voters are not read yet."""
        subjects = self._private if among is None else among
        return [no for no in subjects if self._private.get(no) == "after_vote" and no not in self._voters]

    def after_vote(self, among: Iterable[int]) -> list[int]:
        return [no for no in among if self._private.get(no) == "after_vote"]

    async def read_voters(
        self, subjects: Iterable[int], again: bool = False
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """Read the voters of these subjects (unless another read filled them meanwhile, or
        `again`: a channel that shows them opens, and they were kept only while their votes were
        heard); the votes that came during the read are applied after it. Returns the subjects
        read, and the (subject, user) withdrawals among those votes that need a `recheck`."""
        read, rechecks = [], []
        for no in subjects:
            events = self._reading.setdefault(no, [])
            try:
                voters = await self._store.voters(no)
            finally:
                if self._reading.get(no) is events:
                    del self._reading[no]
            if self._private.get(no) == "after_vote" and (again or no not in self._voters):
                self._voters[no] = voters
                read.append(no)
                rechecks += [(no, user) for user, cast in events if self.voted(no, user, cast) is None]
        return read, rechecks

    def withheld(self, peer: Peer, subjects: Iterable[int]) -> frozenset[int]:
        """Of these private subjects, those the socket's person may not see."""
        if peer.admin:
            return NOTHING
        return frozenset(no for no in subjects if peer.person not in self._voters.get(no, ()))

    def shown(self, subjects: Iterable[int]) -> set[int]:
        """Of the subjects a channel shows, those not public now."""
        return {no for no in subjects if no in self._private}

    def voted(self, subject: int, user: int, cast: bool) -> bool | None:
        """A vote of `user` in `subject`: True when it gave them sight, False when nothing changed,
        None when a withdrawal needs the store's word (then `recheck`)."""
        if subject in self._reading:
            self._reading[subject].append((user, cast))
        voters = self._voters.get(subject)
        if voters is None:
            return False
        key = (subject, user)
        if key in self._stamps:
            self._stamps[key] += 1
        if cast:
            if user in voters:
                return False
            voters.add(user)
            return True
        if user not in voters:
            return False
        self._stamps.setdefault(key, 0)
        return None

    async def recheck(self, subject: int, user: int) -> bool:
        """After a withdrawal: does the user still have a vote in the subject? True when they
        lost sight (and no newer vote of theirs came while the store was asked)."""
        key = (subject, user)
        stamp = self._stamps.get(key, 0)
        try:
            still = subject in await self._store.voted_subjects(user)
        finally:
            current = self._stamps.pop(key, 0)
        voters = self._voters.get(subject)
        if current != stamp or voters is None or still or user not in voters:
            return False
        voters.discard(user)
        return True
