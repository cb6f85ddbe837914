"""Accounts: registration, password login with throttling, and users by id."""

from __future__ import annotations

from typing import Literal

from services.backends.store import Store
from services.errors import Unauthorized
from services.models import User
from services.passwords import Passwords
from services.schemas import Login, Registration, parse
from services.throttle import LoginThrottle

BAD_LOGIN = "Unknown username or wrong password."
KNOWN_USERS = 65536


class AccountService:
    def __init__(self, store: Store, passwords: Passwords, throttle: LoginThrottle) -> None:
        self._store = store
        self._passwords = passwords
        self._throttle = throttle
        self._users: dict[int, User] = {}

    async def register(self, body: object, role: Literal["user", "admin"] = "user") -> User:
        """Conflict when the username is taken (in any letter case)."""
        form = parse(Registration, body)
        return await self._store.create_user(form.username, await self._passwords.hash(form.password), role)

    async def login(self, body: object, client_ip: str) -> User:
        form = parse(Login, body)
        await self._throttle.check(form.username, client_ip)
        credentials = await self._store.find_credentials(form.username)
        password_hash = credentials.password_hash if credentials else None
        if credentials is None or not await self._passwords.verify(password_hash, form.password):
            await self._throttle.failed(form.username, client_ip)
            raise Unauthorized(BAD_LOGIN)
        await self._throttle.succeeded(form.username)
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
