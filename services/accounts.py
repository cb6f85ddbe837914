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


class AccountService:
    def __init__(self, store: Store, passwords: Passwords, throttle: LoginThrottle) -> None:
        self._store = store
        self._passwords = passwords
        self._throttle = throttle

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
        return await self._store.get_user(user_id)
