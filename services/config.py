"""Configuration: config.yaml, then LIVEVOTE_<SECTION>__<KEY> env vars, then CLI flags.

A leaf module: it imports nothing of the app. Values are validated once at
start-up, so a typo fails loudly with the key's name instead of deep inside a
request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "LIVEVOTE_"
PLACEHOLDER_SECRET = "change-me-this-is-not-a-secret"
MIN_HMAC_SECRET_BYTES = 32


class ConfigError(Exception):
    """A configuration value is missing, malformed or unsafe."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    data_dir: Path = Path("data")
    allowed_origins: tuple[str, ...] = ()
    dev: bool = False
    seed: bool = True
    max_body_size: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    metrics: bool = True
    xheaders: bool = False


class StoreConfig(_Section):
    url: str | None = None


class RedisConfig(_Section):
    url: str | None = None
    cluster: bool = False
    """The URL names one node of a Redis Cluster (>= 7): counts go over sharded pub/sub."""


class AuthConfig(_Section):
    secret: str = PLACEHOLDER_SECRET
    algorithm: Literal["HS256", "HS384", "HS512", "RS256", "EdDSA"] = "HS256"
    private_key_file: Path | None = None
    public_key_file: Path | None = None
    issuer: str = "livevote"
    audience: str = "livevote"
    access_ttl: float = Field(900, gt=0)
    refresh_ttl: float = Field(7 * 86400, gt=0)
    session_max_age: float = Field(30 * 86400, gt=0)
    refresh_ahead: float = Field(60, ge=0)
    reuse_grace: float = Field(10, ge=0)
    leeway: float = Field(5, ge=0)
    push_tokens: bool = True
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_kib: int = Field(65536, ge=1024)
    argon2_parallelism: int = Field(4, ge=1)
    login_attempts: int = Field(10, ge=1)
    login_ip_attempts: int = Field(100, ge=1)
    login_window: float = Field(900, gt=0)
    register_attempts: int = Field(100, ge=1)
    register_window: float = Field(3600, gt=0)


class WsConfig(_Section):
    coalesce_ms: int = Field(50, ge=0)
    max_pending: int = Field(256 * 1024, ge=1024)
    stall_timeout: float = Field(30, gt=0)
    max_message_size: int = Field(16 * 1024, ge=256)
    ping_interval: float = Field(20, ge=0)
    rate_limit: float = Field(20, gt=0)
    rate_burst: int = Field(40, ge=1)
    max_subscriptions: int = Field(32, ge=1)


class Config(_Section):
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    redis: RedisConfig = RedisConfig()
    auth: AuthConfig = AuthConfig()
    ws: WsConfig = WsConfig()

    @model_validator(mode="after")
    def _check_keys(self) -> Config:
        auth = self.auth
        if auth.algorithm.startswith("HS"):
            shared = self.redis.url is not None
            if not self.server.dev and shared and auth.secret == PLACEHOLDER_SECRET:
                raise ValueError(
                    "auth.secret is the shipped placeholder; processes sharing Redis need one common secret:"
                    " set LIVEVOTE_AUTH__SECRET (or run with --dev)"
                )
            if not self.server.dev and auth.secret != PLACEHOLDER_SECRET and len(auth.secret.encode()) < MIN_HMAC_SECRET_BYTES:
                raise ValueError(f"auth.secret must be at least {MIN_HMAC_SECRET_BYTES} bytes")
        elif auth.private_key_file is None or auth.public_key_file is None:
            raise ValueError(f"auth.algorithm {auth.algorithm} needs auth.private_key_file and auth.public_key_file")
        if self.redis.cluster and not self.redis.url:
            raise ValueError("redis.cluster needs redis.url: any one node of the cluster")
        if self.server.workers > 1 and not self.redis.url:
            raise ValueError("server.workers > 1 needs redis.url: processes share state only through Redis")
        return self

    @property
    def uses_placeholder_secret(self) -> bool:
        return self.auth.algorithm.startswith("HS") and self.auth.secret == PLACEHOLDER_SECRET

    @property
    def store_url(self) -> str:
        """The store URL, defaulting to the SQLite file under data_dir."""
        return self.store.url or f"sqlite:///{self.server.data_dir / 'livevote.db'}"


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Merge file, environment and `overrides` ("section.key" -> value), then validate."""
    tree: dict[str, dict[str, Any]] = {}
    if path is not None:
        _merge(tree, _read_yaml(path), str(path))
    _merge(tree, _env_tree(os.environ if environ is None else environ), "environment")
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        tree.setdefault(section, {})[key] = value
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return data


def _env_tree(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """LIVEVOTE_SERVER__PORT=8001 -> {"server": {"port": 8001}}; values are parsed as YAML."""
    tree: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError:
            value = raw
        tree.setdefault(section, {})[key] = value
    return tree


def _merge(tree: dict[str, dict[str, Any]], layer: dict[str, Any], origin: str) -> None:
    for section, values in layer.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: section {section!r} must be a mapping")
        tree.setdefault(section, {}).update(values)


def _describe(exc: ValidationError) -> str:
    lines = [
        ".".join(str(part) for part in error["loc"]) + ": " + error["msg"]
        if error["loc"] else error["msg"].removeprefix("Value error, ")
        for error in exc.errors()
    ]
    return "invalid configuration:\n  " + "\n  ".join(lines)
