"""`python server.py` as an operator meets it: its sub-commands and their flags, and the one-line
messages that stop a start (a port in use, an unreachable Redis, a bad config value and where it
was set, no terminal for a password, no database to reconcile), the start-up log, and /readyz
naming what failed. Real processes, a real redis-server, real sockets."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from services.config import ServerConfig, load_config
from tests.conftest import ServerFactory
from tests.harness.cli import Finished, run_server_py
from tests.harness.environment import server_env
from tests.harness.ports import free_port
from tests.harness.redis_server import RedisServer
from tests.harness.server import ROOT, assert_problem
from tests.harness.server_process import ServerProcess

SERVE_FLAGS = {"--config", "--host", "--port", "--workers", "--dev", "--no-seed", "--data-dir", "--store",
               "--redis-url", "--redis-cluster"}
CREATE_USER_FLAGS = {"--config", "--data-dir", "--store", "--redis-url", "--redis-cluster", "--no-seed",
                     "--admin", "--password-stdin"}
RECONCILE_FLAGS = {"--config", "--data-dir", "--store"}
MIGRATE_FLAGS = {*RECONCILE_FLAGS, "--no-seed"}


def one_line(finished: Finished) -> str:
    """The single stderr line of a refused start (no traceback, no log around it)."""
    assert len(finished.lines) == 1, finished.stderr
    return finished.lines[0]


@pytest.fixture
def occupied_port() -> Iterator[int]:
    """A port some other program is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


# -- sub-commands and their flags ------------------------------------------------------------


async def test_help_lists_the_sub_commands() -> None:
    finished = await run_server_py("--help")
    assert finished.code == 0, finished.stderr
    for command in ("serve", "create-user", "reconcile", "migrate"):
        assert re.search(rf"^\s+{command}\s", finished.stdout, re.MULTILINE), finished.stdout


@pytest.mark.parametrize("command, flags", [
    ("serve", SERVE_FLAGS), ("create-user", CREATE_USER_FLAGS), ("reconcile", RECONCILE_FLAGS),
    ("migrate", MIGRATE_FLAGS),
])
async def test_each_sub_command_shows_only_its_own_flags(command: str, flags: set[str]) -> None:
    finished = await run_server_py(command, "--help")
    assert finished.code == 0, finished.stderr
    listed = re.findall(r"^ +(?:-h, )?(--[a-z][a-z-]*)", finished.stdout, re.MULTILINE)
    assert set(listed) == flags | {"--help"}, finished.stdout


async def test_reconcile_refuses_the_flags_of_serve(tmp_path: Path) -> None:
    finished = await run_server_py("reconcile", "--data-dir", str(tmp_path), "--workers", "2")
    assert finished.code == 2 and "unrecognized arguments: --workers 2" in finished.stderr


async def test_no_sub_command_serves(tmp_path: Path) -> None:
    """Plain `python server.py` serves (here on the port and data dir its environment names)."""
    env = server_env(**{"server.port": 0, "server.data_dir": tmp_path})
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "server.py"), cwd=ROOT, env=env, start_new_session=True,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    seen = []
    while not any("livevote listening on http://127.0.0.1:" in line for line in seen):
        line = await asyncio.wait_for(process.stderr.readline(), 30)
        assert line, f"exited without listening: {seen}"
        seen.append(line.decode())
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert (tmp_path / "livevote.db").is_file()


async def test_flags_without_a_sub_command_are_serve_flags(tmp_path: Path) -> None:
    server = await ServerProcess("--data-dir", str(tmp_path), "--no-seed", env=server_env()).start()
    try:
        assert (await server.get("/api/subjects/")).json() == []
    finally:
        await server.stop()


# -- a port in use ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["flag", "environment", "config file", "default", "flag, --workers 2"])
async def test_a_port_in_use_is_one_line_naming_where_the_port_came_from(
    occupied_port: int, tmp_path: Path, how: str
) -> None:
    """Nothing created, and the blame on whoever chose the port: the default one is held busy
    by the suite (tests/conftest.py), and the shipped config.yaml, which lists it, is not blamed."""
    data = tmp_path / "fresh"
    env = server_env()
    args = ["--data-dir", str(data)]
    port = occupied_port
    if how == "environment":
        env["LIVEVOTE_SERVER__PORT"] = str(port)
        source = "from LIVEVOTE_SERVER__PORT"
    elif how == "config file":
        config = tmp_path / "livevote.yaml"
        config.write_text(f"server:\n  port: {port}\n", encoding="utf-8")
        args += ["--config", str(config)]
        source = f"from {config}"
    elif how == "default":
        port, source = ServerConfig().port, "default"
    else:
        args += ["--port", str(port)]
        source = "from --port"
    if "--workers" in how:  # the parent binds before it prepares the store (Redis is never asked)
        args += ["--workers", "2", "--redis-url", f"redis://127.0.0.1:{free_port()}/0"]
    finished = await run_server_py(*args, env=env)
    assert finished.code == 2
    assert one_line(finished) == f"livevote: server.port ({source}): 127.0.0.1:{port} is already in use"
    assert not data.exists()


# -- an unreachable Redis ----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["--redis-url", "LIVEVOTE_REDIS__URL", "config file", "--redis-cluster"])
async def test_an_unreachable_redis_names_its_address_and_where_the_url_came_from(
    tmp_path: Path, source: str
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    env = server_env()
    args = ["--data-dir", str(tmp_path / "data"), "--port", "0"]
    if source == "LIVEVOTE_REDIS__URL":
        env[source] = url
    elif source == "config file":
        config = tmp_path / "livevote.yaml"
        config.write_text(f"redis:\n  url: {url}\n", encoding="utf-8")
        args += ["--config", str(config)]
        source = str(config)
    else:
        args += ["--redis-url", url]
    redis_kind = "Redis"
    if source == "--redis-cluster":
        args.append("--redis-cluster")
        source, redis_kind = "--redis-url", "the Redis Cluster"
    finished = await run_server_py(*args, env=env)
    assert finished.code == 1
    assert one_line(finished) == (
        f"livevote: redis.url (from {source}): {redis_kind} at 127.0.0.1:{port} is unreachable: Connection refused"
    )


# -- configuration errors name the key and its source ----------------------------------------


PORT_TOO_HIGH = "Input should be less than or equal to 65535"


@pytest.mark.parametrize("env, args, file, expected", [
    ({"LIVEVOTE_SERVER__PORT": "70000"}, [], None, f"server.port (from LIVEVOTE_SERVER__PORT): {PORT_TOO_HIGH}"),
    ({}, ["--port", "70000"], None, f"server.port (from --port): {PORT_TOO_HIGH}"),
    ({}, [], "server:\n  port: 70000\n", f"server.port (from {{file}}): {PORT_TOO_HIGH}"),
    ({}, ["--workers", "2"], None,
     "server.workers (from --workers): more than 1 needs redis.url: processes share state only through Redis"),
    ({"LIVEVOTE_SERVER__COLOUR": "red"}, [], None, "server.colour (from LIVEVOTE_SERVER__COLOUR): no such key"),
    ({"LIVEVOTE_AUTH__SECRET": "thirty-one-bytes-is-one-too-few"}, [], None,
     "auth.secret (from LIVEVOTE_AUTH__SECRET): must be at least 32 bytes"),
])
async def test_a_bad_value_is_one_line_naming_its_key_and_source(
    tmp_path: Path, env: dict[str, str], args: list[str], file: str | None, expected: str
) -> None:
    config = tmp_path / "livevote.yaml"
    if file is not None:
        config.write_text(file, encoding="utf-8")
        args = [*args, "--config", str(config)]
    finished = await run_server_py("--data-dir", str(tmp_path / "data"), *args, env={**server_env(), **env})
    assert finished.code == 2
    assert one_line(finished) == "livevote: " + expected.format(file=config)
    assert not (tmp_path / "data").exists()


# -- create-user and reconcile ---------------------------------------------------------------


async def test_create_user_without_a_terminal_asks_for_password_stdin(tmp_path: Path) -> None:
    finished = await run_server_py("create-user", "boss", "--admin", "--data-dir", str(tmp_path / "data"))
    assert finished.code == 2
    assert one_line(finished) == "livevote: no terminal to ask the password on; use --password-stdin"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("state", ["missing", "empty"])
async def test_reconcile_refuses_a_data_dir_without_a_database(tmp_path: Path, state: str) -> None:
    data = tmp_path / "data"
    if state == "empty":
        data.mkdir()
    finished = await run_server_py("reconcile", "--data-dir", str(data))
    assert finished.code == 2
    assert one_line(finished) == (
        f"livevote: server.data_dir (from --data-dir): no database at {data / 'livevote.db'}; nothing to reconcile"
    )
    assert (list(data.iterdir()) == []) if state == "empty" else not data.exists()


HTTP_WORDS = re.compile(r"\b(HTTP|request|body|JSON|status|field)\b", re.IGNORECASE)
TAKEN = "boss"


@pytest.fixture(scope="module")
def store_with_an_account(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose store exists and holds the account TAKEN."""
    data = tmp_path_factory.mktemp("accounts") / "data"
    created = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "create-user", TAKEN, "--password-stdin", "--data-dir", str(data)],
        input=b"a long admin password\n", capture_output=True, env=server_env(), timeout=60, check=False,
    )
    assert created.returncode == 0, created.stderr
    return data


@pytest.mark.parametrize("args, password, store, code, expected", [
    (["create-user", "Bo"], "a long admin password", "fresh", 2, "livevote: NAME: must be 3 to 32 letters, "),
    (["create-user", "no spaces"], "a long admin password", "fresh", 2, "livevote: NAME: must be 3 to 32 letters, "),
    (["create-user", "x" * 33], "a long admin password", "fresh", 2, "livevote: NAME: must be 3 to 32 letters, "),
    (["create-user", "newbie"], "short", "fresh", 2, "livevote: password: string should have at least 8 characters"),
    (["create-user", "Bo"], "", "fresh", 2, "livevote: NAME: must be 3 to 32 letters, "),
    (["create-user", "newbie"], "password", "existing", 2, "livevote: password: is too easy to guess"),
    (["create-user", "newbie"], "newbie-and-more-words", "existing", 2,
     "livevote: password: must not contain the username"),
    (["create-user", TAKEN.upper()], "a long admin password", "existing", 1,
     f"livevote: The username '{TAKEN.upper()}' is taken."),
    (["--host", "999.1.1.1", "--port", "0"], None, "fresh", 2,
     "livevote: server.host (from --host): cannot listen on 999.1.1.1:0: not an address of this host"),
    (["--host", "192.0.2.1", "--port", "0"], None, "fresh", 2,
     "livevote: server.host (from --host): cannot listen on 192.0.2.1:0: not an address of this host"),
    (["--host", "no-such-host.invalid", "--port", "0"], None, "fresh", 2,
     "livevote: server.host (from --host): cannot listen on no-such-host.invalid:0: not an address of this host"),
], ids=["short name", "name with a space", "long name", "short password", "empty password", "guessable password",
        "password holds the name", "taken name", "not an IP", "address of no interface", "unknown host name"])
async def test_bad_command_line_input_is_one_line_in_command_line_words(
    tmp_path: Path, store_with_an_account: Path, args: list[str], password: str | None, store: str, code: int,
    expected: str,
) -> None:
    """Whatever is wrong with what an operator typed: one line naming it as the command line
    does (NAME, password, --host), without traceback or the API's HTTP words, and a fresh data
    dir left uncreated."""
    data = tmp_path / "fresh" if store == "fresh" else store_with_an_account
    if password is not None:
        args = [*args, "--password-stdin"]
    stdin = None if password is None else password.encode() + b"\n"
    finished = await run_server_py(*args, "--data-dir", str(data), stdin=stdin)
    assert finished.code == code, finished.stderr
    line = one_line(finished)
    assert line.startswith(expected), line
    assert not HTTP_WORDS.search(line), line
    assert store == "existing" or not data.exists()


async def test_reconcile_recounts_an_existing_database(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    created = await run_server_py("create-user", "boss", "--password-stdin", "--data-dir", data,
                                  stdin=b"a long admin password\n")
    assert created.code == 0, created.stderr
    finished = await run_server_py("reconcile", "--data-dir", data)
    assert finished.code == 0, finished.stderr
    assert "nothing to fix" in finished.stdout


# -- the start-up log ------------------------------------------------------------------------


async def test_start_up_log_names_the_data_dir_and_backends_without_credentials(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    await client.config_set("requirepass", "s3cret-redis-password")
    await client.aclose()
    data = tmp_path / "data"
    url = f"redis://:s3cret-redis-password@127.0.0.1:{redis_server.port}/0"
    server = await ServerProcess("--data-dir", str(data), "--redis-url", url, env=server_env()).start()
    try:
        line = await server.wait_for_line("data directory")
        assert f"data directory {data.resolve()}; " in line
        assert f"store: SQLite at {data.resolve() / 'livevote.db'}; " in line
        assert line.endswith(f"Redis at 127.0.0.1:{redis_server.port}")
        assert not [logged for logged in server.lines if "s3cret" in logged]
    finally:
        await server.stop()


async def test_migrate_creates_and_seeds_once_then_finds_the_schema_up_to_date(postgres_url: str) -> None:
    described = f"PostgreSQL at {postgres_url.partition('@')[2]}"
    first, again = [await run_server_py("migrate", "--store", postgres_url) for _ in range(2)]
    assert (first.code, first.stdout.strip()) == (0, f"migrate: created the schema of {described}"
                                                     " and seeded it with demo data"), first.stderr
    assert (again.code, again.stdout.strip()) == (0, f"migrate: the schema of {described} is up to date")


async def test_migrate_against_an_unreachable_postgresql_is_one_line() -> None:
    url = f"postgresql://livevote:s3cret@127.0.0.1:{free_port()}/livevote"
    finished = await run_server_py("migrate", "--store", url)
    assert finished.code == 1
    assert one_line(finished) == (f"livevote: store.url (from --store): PostgreSQL at {url.partition('@')[2]}"
                                  " is unreachable: Connection refused")
    serving = await run_server_py("--port", "0", "--store", url)
    assert serving.code == 2 and one_line(serving) == (
        "livevote: store.url (from --store): a PostgreSQL store needs redis.url too"
        " (sessions and pub/sub live in Redis)"
    )


def test_a_mongodb_store_is_named_without_user_password_or_options() -> None:
    url = "mongodb://admin:s3cret@db1:27017,db2/livevote?authSource=admin&tlsCertificateKeyFilePassword=s3cret"
    config = load_config(None, environ={}, overrides={"store.url": url})
    assert config.store_description == "MongoDB at db1:27017,db2/livevote"


WORKER_LISTENING = re.compile(r"worker (\d)/3 \(pid (\d+)\) listening on http://127\.0\.0\.1:\d+$")


async def test_each_worker_logs_its_number_also_after_a_restart(tmp_path: Path, redis_server: RedisServer) -> None:
    server = await ServerProcess(
        "--workers", "3", "--data-dir", str(tmp_path), "--redis-url", redis_server.url, env=server_env()
    ).start()
    try:
        for number in (1, 2, 3):
            await server.wait_for_line(f"worker {number}/3 (pid ", timeout=30)
        pids = {int(m[1]): int(m[2]) for line in server.lines if (m := WORKER_LISTENING.search(line))}
        assert sorted(pids) == [1, 2, 3], server.lines
        assert sum("data directory" in line for line in server.lines) == 1, "the parent says it once"

        os.kill(pids[2], signal.SIGKILL)
        line = await server.wait_for_line(f"started in place of {pids[2]}, as worker 2/3", timeout=10)
        new = int(line.split("worker ")[1].split()[0])
        await server.wait_for_line(f"worker 2/3 (pid {new}) listening on http://", timeout=30)
    finally:
        server.signal(signal.SIGTERM)
        assert await server.wait_exit(30) == 0


# -- /readyz ---------------------------------------------------------------------------------


async def test_readyz_names_redis_when_it_is_gone(tmp_path: Path, redis_server: RedisServer) -> None:
    server = await ServerProcess(
        "--data-dir", str(tmp_path), "--redis-url", redis_server.url, env=server_env()
    ).start()
    try:
        assert (await server.get("/readyz")).status == 200
        await redis_server.kill()
        problem = assert_problem(await server.get("/readyz"), 503)
        assert problem["detail"] == f"The session store (Redis at 127.0.0.1:{redis_server.port}) is unreachable."
    finally:
        await server.stop()


async def test_readyz_names_the_store_when_it_is_gone(start_server: ServerFactory, tmp_path: Path) -> None:
    server = await start_server(tmp_path / "data")
    assert server.services is not None
    await server.services.backends.store.close()
    problem = assert_problem(await server.get("/readyz"), 503)
    assert problem["detail"] == f"The store (SQLite at {(tmp_path / 'data' / 'livevote.db').resolve()}) is unreachable."
