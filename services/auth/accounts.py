"""Accounts: registration, password login with throttling, and users by id."""

from __future__ import annotations

from typing import Literal

from services.auth.passwords import Passwords
from services.auth.throttle import LoginThrottle
from services.backends.store import Store
from services.errors import Unauthorized
from services.models import User
from services.schemas import Login, Registration, parse, username_key

BAD_LOGIN = "Unknown username or wrong password."
KNOWN_USERS = 65536


class AccountService:
    def __init__(self, store: Store, passwords: Passwords, throttle: LoginThrottle) -> None:
        self._store = store
        self._passwords = passwords
        self._throttle = throttle
        self._users: dict[int, User] = {}

    async def register(
        self, body: object, role: Literal["user", "admin"] = "user", client_ip: str | None = None
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
        """Users never change once made, so each process keeps the ones it has met."""
        user = self._users.get(user_id)
        if user is None:
            user = await self._store.get_user(user_id)
            if len(self._users) >= KNOWN_USERS:
                del self._users[next(iter(self._users))]
            self._users[user_id] = user
        return user
