"""Configuration: config.yaml, then LIVEVOTE_<SECTION>__<KEY> env vars, then CLI flags.

A leaf module: it imports nothing of the app. Values are validated once at
start-up, so a typo fails loudly with the key's name, and where that value was
set, instead of deep inside a request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "LIVEVOTE_"
PLACEHOLDER_SECRET = "change-me-this-is-not-a-secret"
MIN_HMAC_SECRET_BYTES = 32
DEFAULT_REDIS_PORT = 6379


class ConfigError(Exception):
    """A configuration value is missing, malformed or unsafe.

    `key` ("section.key") names the one key at fault when the message does not say yet
    where its value came from; ConfigSources.explain adds that."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class KeyProblem(ValueError):
    """Raised by a check across keys, naming the key to change, so that the message can say
    where that key's value came from."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class ConfigSources:
    """Where each "section.key" got its value: the config file's path, an environment
    variable's name, or a command-line flag. Keys set by nobody have their default."""

    by_key: Mapping[str, str] = field(default_factory=dict)

    def of(self, key: str) -> str | None:
        """The source of `key`; for a bare section, the source of any key set in it."""
        section, _, name = key.partition(".")
        if name:
            return self.by_key.get(f"{section}.{name.partition('.')[0]}")
        return next((source for dotted, source in self.by_key.items() if dotted.startswith(section + ".")), None)

    def name(self, key: str) -> str:
        """`server.port (from LIVEVOTE_SERVER__PORT)`, or `server.port (default)`."""
        source = self.of(key)
        return f"{key} (from {source})" if source else f"{key} (default)"

    def explain(self, error: ConfigError) -> str:
        """The error's message, led by its key and that key's source when it names one."""
        return f"{self.name(error.key)}: {error}" if error.key else str(error)


WEB_ORIGIN = re.compile(r"https?://(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")
"""An origin as a browser sends it: scheme, host, and port when not the default; no path."""


def _web_origin(value: str) -> str:
    """`value` when it is one origin (https://school.example:8443), else a ValueError that says why;
    it goes into a header as is, so nothing else may pass."""
    if not WEB_ORIGIN.fullmatch(value):
        raise ValueError(f"{value!r} is not an origin: scheme://host[:port] in lowercase, http or https, no path")
    return value


WebOrigin = Annotated[str, AfterValidator(_web_origin)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    data_dir: Path = Path("data")
    allowed_origins: tuple[str, ...] = ()
    embed_origins: tuple[WebOrigin, ...] = ()
    """The sites that may show the embed pages (/embed/...) in a frame: their CSP frame-ancestors."""
    dev: bool = False
    seed: bool = True
    max_body_size: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    metrics: bool = True
    xheaders: bool = False
    access_log: bool = True
    idle_timeout: float = Field(60, gt=0)
    max_connections: int | None = Field(None, ge=1)
    """None: the open-file limit less a reserve for the store, Redis and logs (handlers/listener.py)."""


class StoreConfig(_Section):
    url: str | None = None
    connect_timeout: float = Field(3.0, gt=0, le=300)
    statement_timeout: float = Field(5.0, gt=0, le=3600)
    acquire_timeout: float = Field(3.0, gt=0, le=300)
    pool_size: int = Field(10, ge=1, le=1000)
    """The four waits and the pool of a PostgreSQL store (seconds; connections per process)."""


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
    viewer_ttl: float = Field(300, gt=0)
    viewer_attempts: int = Field(600, ge=1)
    viewer_window: float = Field(60, gt=0)


class WsConfig(_Section):
    coalesce_ms: int = Field(50, ge=0)
    max_pending: int = Field(256 * 1024, ge=1024)
    stall_timeout: float = Field(30, gt=0)
    max_message_size: int = Field(16 * 1024, ge=256)
    ping_interval: float = Field(20, ge=0)
    rate_limit: float = Field(20, gt=0)
    rate_burst: int = Field(40, ge=1)
    max_subscriptions: int = Field(32, ge=1)
    watching_interval: float = Field(2, gt=0)
    max_sockets_per_address: int = Field(200, ge=1)
    max_sockets_per_token: int = Field(50, ge=1)
    max_handshakes: int = Field(16, ge=1)


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
                raise KeyProblem(
                    "auth.secret", "is the shipped placeholder; processes sharing Redis need one common secret:"
                    " set LIVEVOTE_AUTH__SECRET (or run with --dev)"
                )
            short = len(auth.secret.encode()) < MIN_HMAC_SECRET_BYTES
            if not self.server.dev and auth.secret != PLACEHOLDER_SECRET and short:
                raise KeyProblem("auth.secret", f"must be at least {MIN_HMAC_SECRET_BYTES} bytes")
        elif auth.private_key_file is None or auth.public_key_file is None:
            raise KeyProblem("auth.algorithm", f"{auth.algorithm} needs auth.private_key_file and auth.public_key_file")
        if self.redis.cluster and not self.redis.url:
            raise KeyProblem("redis.cluster", "needs redis.url: any one node of the cluster")
        if self.server.workers > 1 and not self.redis.url:
            raise KeyProblem("server.workers", "more than 1 needs redis.url: processes share state only through Redis")
        return self

    @property
    def uses_placeholder_secret(self) -> bool:
        return self.auth.algorithm.startswith("HS") and self.auth.secret == PLACEHOLDER_SECRET

    @property
    def store_url(self) -> str:
        """The store URL, defaulting to the SQLite file under data_dir."""
        return self.store.url or f"sqlite:///{self.server.data_dir / 'livevote.db'}"

    @property
    def store_description(self) -> str:
        """The store in words, safe to log: "SQLite at /abs/path.db", "PostgreSQL at HOSTS/DATABASE"."""
        return describe_store(self.store_url)

    @property
    def redis_description(self) -> str | None:
        """"Redis at HOST:PORT" or "the Redis Cluster at HOST:PORT", safe to log; None in embedded mode."""
        if self.redis.url is None:
            return None
        kind = "the Redis Cluster" if self.redis.cluster else "Redis"
        return f"{kind} at {redis_address(self.redis.url)}"


def describe_store(url: str) -> str:
    """A store URL without user, password or options (which may hold secrets)."""
    if url.startswith("sqlite:///"):
        return f"SQLite at {Path(url.removeprefix('sqlite:///')).resolve()}"
    parts = urlsplit(url)
    kind = {"mongodb": "MongoDB", "mongodb+srv": "MongoDB", "postgresql": "PostgreSQL", "postgres": "PostgreSQL"}.get(
        parts.scheme, parts.scheme)
    return f"{kind} at {_without_credentials(parts.netloc)}{parts.path}"


def redis_address(url: str) -> str:
    """HOST:PORT of a Redis URL (the socket's path for unix://), without user or password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    address = _without_credentials(parts.netloc) or "localhost"
    return address if re.search(r":[0-9]+$", address) else f"{address}:{DEFAULT_REDIS_PORT}"


def _without_credentials(netloc: str) -> str:
    return netloc.rpartition("@")[2]


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Merge file, environment and `overrides` ("section.key" -> value), then validate."""
    return load_config_and_sources(path, environ, overrides)[0]


def load_config_and_sources(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    flags: Mapping[str, str] | None = None,
) -> tuple[Config, ConfigSources]:
    """As load_config, and where each key was set; `flags` names the command-line flag that
    gave each override ("server.port" -> "--port"), for messages."""
    tree: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    if path is not None:
        sources.update(dict.fromkeys(_merge(tree, _read_yaml(path), str(path)), str(path)))
    env_tree, env_names = _env_tree(os.environ if environ is None else environ)
    _merge(tree, env_tree, "environment")
    sources.update(env_names)
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        tree.setdefault(section, {})[key] = value
        sources[dotted] = (flags or {}).get(dotted, "an override")
    found = ConfigSources(sources)
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, found)) from None
    return config, ConfigSources({
        key: source for key, source in sources.items() if source != str(path) or not _is_default(config, key)
    })


def _is_default(config: Config, dotted: str) -> bool:
    """Whether `dotted` holds its default: the shipped config.yaml lists every default, and a
    message must not blame that file for a value nobody chose ("server.port (default)")."""
    section_name, _, key = dotted.partition(".")
    section = getattr(config, section_name)
    return bool(getattr(section, key) == getattr(type(section)(), key))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_one_line(str(exc))}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return data


def _env_tree(environ: Mapping[str, str]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """LIVEVOTE_SERVER__PORT=8001 -> {"server": {"port": 8001}}, and {"server.port": "LIVEVOTE_SERVER__PORT"};
    values are parsed as YAML."""
    tree: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError:
            value = raw
        tree.setdefault(section, {})[key] = value
        names[f"{section}.{key}"] = name
    return tree, names


def _merge(tree: dict[str, dict[str, Any]], layer: dict[str, Any], origin: str) -> list[str]:
    """Lay `layer` over `tree`; the "section.key"s it set."""
    merged: list[str] = []
    for section, values in layer.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: section {section!r} must be a mapping")
        tree.setdefault(section, {}).update(values)
        merged.extend(f"{section}.{key}" for key in values)
    return merged


def _describe(exc: ValidationError, sources: ConfigSources) -> str:
    """Every problem on one line: "server.port (from LIVEVOTE_SERVER__PORT): Input should be ..."."""
    problems = []
    for error in exc.errors():
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, KeyProblem):
            key, message = cause.key, str(cause)
        else:
            key = ".".join(str(part) for part in error["loc"])
            message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "no such key" if "." in key else "no such section"
        problems.append(f"{sources.name(key)}: {message}" if key else message.removeprefix("Value error, "))
    return "; ".join(problems)


def _one_line(text: str) -> str:
    return " ".join(text.split())
