"""The real nginx from deploy/nginx.conf, unprivileged, in front of livevote processes.

The shipped config is rendered with the test's ports, a self-signed certificate and every path
inside one folder, run in the foreground (`nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'`)
and stopped by its pid.

`render_config` swaps only what must differ on a test machine (listen ports, upstream
servers, certificate, pid / log / temp paths, a file limit an unprivileged process cannot
raise) and checks that each of those lines is where it expects, so the shipped file is
what the tests run, and a change to its shape fails here loudly rather than silently.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import re
import resource
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tornado.httpclient import HTTPClientError

from tests.harness.ports import free_port
from tests.harness.server import ROOT, JsonClient, Response, wait_for

SHIPPED_CONFIG = ROOT / "deploy" / "nginx.conf"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def _substitute(text: str, pattern: str, replacement: str | Callable[[re.Match[str]], str], count: int = 1) -> str:
    """re.subn that insists on finding `pattern` exactly `count` times (0: at least once)."""
    result, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if (count and found != count) or not found:
        raise AssertionError(
            f"deploy/nginx.conf: expected {count or 'some'} line(s) matching {pattern!r}, found {found}"
        )
    return result


def render_config(
    template: str,
    *,
    prefix: Path,
    https_port: int,
    http_port: int,
    upstreams: Sequence[int],
    certificate: Path,
    key: Path,
) -> str:
    """deploy/nginx.conf for an unprivileged nginx on 127.0.0.1, in front of `upstreams`."""
    text = _substitute(template, r"^(\s*pid\s+)\S+;", rf"\g<1>{prefix}/nginx.pid;")
    text = _substitute(text, r"^(\s*error_log\s+)\S+", rf"\g<1>{prefix}/error.log")
    text = _substitute(text, r"^(\s*access_log\s+)\S+", rf"\g<1>{prefix}/access.log", count=2)  # http's and /sse's
    temp = "".join(f"\n    {name}_temp_path {prefix}/temp/{name};" for name in TEMP_PATHS)
    text = _substitute(text, r"^http \{$", "http {" + temp)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        text = _substitute(
            text, r"^(\s*worker_rlimit_nofile\s+)(\d+);", lambda m: f"{m[1]}{min(int(m[2]), hard)};"
        )

    # The upstream servers: the shipped example lines (loopback ones), replaced by ours with the same parameters.
    example = re.compile(r"^(\s*)server\s+127\.0\.0\.1:\d+(\s[^;]*)?;\n", re.MULTILINE)
    lines = list(example.finditer(text))
    if not lines:
        raise AssertionError("deploy/nginx.conf: no `server 127.0.0.1:PORT ...;` line in upstream livevote")
    indent, parameters = lines[0][1], lines[0][2] or ""
    ours = "".join(f"{indent}server 127.0.0.1:{port}{parameters};\n" for port in upstreams)
    text = text[: lines[0].start()] + ours + example.sub("", text[lines[0].start():])

    text = _substitute(text, r"^(\s*)listen 80;", rf"\g<1>listen 127.0.0.1:{http_port};")
    text = _substitute(text, r"^(\s*)listen 443 ssl;", rf"\g<1>listen 127.0.0.1:{https_port} ssl;")
    text = _substitute(text, r"^\s*listen \[::\]:\d+[^;]*;\n", "", count=0)
    text = _substitute(text, r"^(\s*ssl_certificate\s+)\S+;", rf"\g<1>{certificate};")
    return _substitute(text, r"^(\s*ssl_certificate_key\s+)\S+;", rf"\g<1>{key};")


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (IP SAN) and its key, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "livevote test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class Nginx(JsonClient):
    """nginx on https://127.0.0.1:<port> (and a redirecting http port), in front of `upstreams`."""

    def __init__(
        self,
        workdir: Path,
        upstreams: Sequence[int],
        port: int | None = None,
        adjust: Callable[[str], str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.upstreams = list(upstreams)
        self.adjust = adjust
        """Changes the rendered config: a variant of the shipped one for one test."""
        self.port = port or free_port()
        self.http_port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return self.base_url

    @property
    def config_path(self) -> Path:
        return self.workdir / "nginx.conf"

    def log(self, name: str = "error.log") -> str:
        path = self.workdir / name
        return path.read_text(errors="replace") if path.exists() else ""

    async def logged(self, done: Callable[[list[str]], bool], name: str = "access.log",
                     timeout: float = 5.0) -> list[str]:
        """The log's lines once `done(lines)` holds: nginx writes a request's access log line
        after it has sent the response, so a test that just got one may not find it yet."""

        async def lines_when_done() -> list[str] | None:
            lines = self.log(name).splitlines()
            return lines if done(lines) else None

        return await wait_for(lines_when_done, timeout, what=f"the lines awaited in nginx's {name}")

    async def start(self, timeout: float = 10.0) -> Nginx:
        executable = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if executable is None:
            raise RuntimeError("nginx is not installed (.ci/run installs it with apt-get)")
        for name in TEMP_PATHS:
            (self.workdir / "temp" / name).mkdir(parents=True, exist_ok=True)
        certificate, key = self_signed_certificate(self.workdir)
        config = render_config(
            SHIPPED_CONFIG.read_text(), prefix=self.workdir, https_port=self.port, http_port=self.http_port,
            upstreams=self.upstreams, certificate=certificate, key=key,
        )
        self.config_path.write_text(self.adjust(config) if self.adjust else config)
        with open(self.workdir / "stderr.log", "wb") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                executable, "-p", str(self.workdir), "-c", str(self.config_path), "-g", "daemon off;",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
            )

        async def serving() -> bool:
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"nginx exited with {self.process.returncode}:\n"
                                     f"{self.log('stderr.log')}{self.log()}")
            try:
                return (await self.request("GET", "/healthz", request_timeout=2)).status == 200
            except (OSError, HTTPClientError):
                return False

        try:
            await wait_for(serving, timeout)
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGQUIT (graceful: workers finish their requests), SIGKILL if that takes too long."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGQUIT)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    async def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        *,
        source_ip: str | None = None,
        **options: Any,
    ) -> Response:
        """Through nginx over TLS (the test certificate is not checked), optionally from another
        loopback address (`source_ip="127.0.0.2"`)."""
        return await super().request(
            method, path, json_body, body, headers, validate_cert=False, network_interface=source_ip, **options
        )


NginxFactory = Callable[..., Awaitable[Nginx]]


@pytest.fixture
async def start_nginx(tmp_path: Path) -> AsyncIterator[NginxFactory]:
    """Start nginx from deploy/nginx.conf: `await start_nginx(upstream_ports, port=..., adjust=...)`.
    Stopped after the test; its error log is printed when the test fails (pytest shows stdout)."""
    started: list[Nginx] = []

    async def start(
        upstreams: Sequence[int], port: int | None = None, adjust: Callable[[str], str] | None = None
    ) -> Nginx:
        nginx = Nginx(tmp_path / f"nginx{len(started)}", upstreams, port, adjust)
        nginx.workdir.mkdir(parents=True)
        started.append(nginx)
        return await nginx.start()

    yield start
    for nginx in reversed(started):
        await nginx.stop()
        print(f"--- nginx error log ({nginx.workdir}):\n{nginx.log()}")
