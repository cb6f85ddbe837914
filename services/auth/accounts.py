"""Accounts: registration, password login with throttling, users by id, and role changes.

A user can change after all: an administrator changes a role, an operator removes
a row. So no process keeps a user for long: `get` answers from what this process
read within FRESH_FOR (as a session is re-checked within a second), which is all a
request's authentication and a socket's welcome need; `current` reads the store,
and is what a new token's role and an administrator's check rest on.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.audit import Actor, AuditService
from services.auth.passwords import Passwords
from services.auth.throttle import LoginThrottle
from services.backends.store import Store
from services.errors import NotFound, Unauthorized, Unavailable
from services.models import User
from services.schemas import Login, Registration, Role, RoleChange, parse, username_key
from services.single_flight import SingleFlight

BAD_LOGIN = "Unknown username or wrong password."
KNOWN_USERS = 65536
FRESH_FOR = 1.0
"""Seconds a user read from the store stands for it in `get`: a connection storm of one user
reads the store once, and a change made elsewhere is seen within this."""


class AccountService:
    def __init__(
        self, store: Store, passwords: Passwords, throttle: LoginThrottle, audit: AuditService,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._audit = audit
        self._passwords = passwords
        self._throttle = throttle
        self._clock = clock
        self._users: dict[int, tuple[User, float]] = {}
        """id -> (the user, when this process read it), oldest first."""
        self._reads: SingleFlight[int, User] = SingleFlight()

    async def register(
        self, body: object, role: Role = "user", client_ip: str | None = None
    ) -> User:
        """Conflict when the username's key is taken (so a look-alike of an existing name is 409).

        A client's registrations are throttled per IP before any costly step; the operator's
        (create-user: no `client_ip`) are not."""
        form = parse(Registration, body)
        if client_ip is not None:
            await self._throttle.register(client_ip)
        await self._passwords.check(form.password, form.username)
        return await self._store.create_user(form.username, await self._passwords.hash(form.password), role)

    async def login(self, body: object, client_ip: str) -> User:
        """One argon2 check whether or not the user exists, so timing tells nothing; the attempt
        is reserved before the check, so concurrent guesses cannot overrun the throttle."""
        form = parse(Login, body)
        key = username_key(form.username)
        async with self._throttle.login(key, client_ip):
            credentials = await self._store.find_credentials(key) if key is not None else None
            password_hash = credentials.password_hash if credentials is not None else None
            if not await self._passwords.verify(password_hash, form.password) or credentials is None:
                raise Unauthorized(BAD_LOGIN)
        return credentials.user

    async def get(self, user_id: int) -> User:
        """The user as read within FRESH_FOR, else as `current`, sharing a read under way."""
        known = self._users.get(user_id)
        if known is not None and self._clock() - known[1] < FRESH_FOR:
            return known[0]
        return await self._reads.run(user_id, lambda: self.current(user_id))

    async def current(self, user_id: int) -> User:
        """The user as the store has it now; NotFound once it has no such user. While the store
        is unreachable, a user this process has read stands (nobody can change it meanwhile
        either), as a session it saw active does."""
        try:
            return self._remember(await self._store.get_user(user_id))
        except NotFound:
            self._users.pop(user_id, None)
            raise
        except Unavailable:
            known = self._users.get(user_id)
            if known is None:
                raise
            return known[0]

    async def find(self, username: str) -> User:
        """By name, as login compares names; NotFound if there is no such account."""
        key = username_key(username)
        credentials = await self._store.find_credentials(key) if key is not None else None
        if credentials is None:
            raise NotFound(f"There is no user {username!r}.")
        return credentials.user

    async def set_role(self, user_id: int, body: object, actor: Actor) -> User:
        """The user with the role of `body` (RoleChange); NotFound for an unknown user. The change is
        written to the audit log as `actor`'s."""
        role = parse(RoleChange, body).role
        before = await self._store.get_user(user_id)
        after = self._remember(await self._store.set_user_role(user_id, role))
        await self._audit.record(actor, "user.role", user_id, before, after)
        return after

    def _remember(self, user: User) -> User:
        self._users.pop(user.id, None)
        self._users[user.id] = (user, self._clock())
        if len(self._users) > KNOWN_USERS:
            del self._users[next(iter(self._users))]
        return user
