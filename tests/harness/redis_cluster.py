"""A real Redis Cluster for tests: 3 masters and 3 replicas on free ports, killed and restarted node by node.

`redis-server --cluster-enabled yes` nodes joined with `redis-cli --cluster create`:

    cluster = await ClusterServers(tmp_path / "cluster").start()   # ~2-2.5 s, see start()
    client = redis.asyncio.cluster.RedisCluster.from_url(cluster.url)
    port = await cluster.master_for_key("{subject:1}")
    await cluster.kill(port)
    new_port = await cluster.wait_failover(port, key_slot(b"{subject:1}"))
    await cluster.restart(port)                                    # back as a replica of new_port
    await cluster.stop()

Named ClusterServers so as not to clash with redis-py's RedisCluster client class.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as redis
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.crc import key_slot

from tests.harness.ports import free_port
from tests.harness.server import wait_for

SLOTS = 16384


@dataclass(frozen=True)
class NodeInfo:
    """One node as the cluster sees it (CLUSTER NODES of a running node), plus our process state."""

    port: int
    node_id: str
    role: str  # "master" or "replica"
    master_port: int | None  # a replica's master; None for a master
    slots: tuple[tuple[int, int], ...]  # a master's slot ranges, inclusive
    failed: bool  # flagged fail or fail? by the node we asked
    connected: bool  # the asked node's cluster-bus link to it is up (always True for itself)
    running: bool  # our process for it is alive


class ClusterServers:
    """Six redis-server processes in cluster mode, each in its own dir under `workdir`.

    Every node gets a free client port and a free cluster-bus port (`--cluster-port`; the
    default port+10000 can overflow 65535 for ephemeral ports). Besides the flags the tests
    asked for, `--repl-diskless-sync-delay 0` lets replicas sync at once instead of after 5 s:
    a replica that never synced would not be allowed to fail over.
    """

    def __init__(self, workdir: Path, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000) -> None:
        self.workdir = workdir
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.ports: list[int] = []
        self._bus_ports: dict[int, int] = {}
        self._processes: dict[int, asyncio.subprocess.Process] = {}

    # -- addresses -------------------------------------------------------------------------

    @property
    def running_ports(self) -> list[int]:
        return [port for port in self.ports if self.is_running(port)]

    def is_running(self, port: int) -> bool:
        process = self._processes.get(port)
        return process is not None and process.returncode is None

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:P/0` of the first running node, as `RedisCluster.from_url` takes;
        redis-py discovers the other nodes from it."""
        running = self.running_ports
        if not running:
            raise RuntimeError("no node of the cluster is running")
        return f"redis://127.0.0.1:{running[0]}/0"

    def node_dir(self, port: int) -> Path:
        return self.workdir / f"node-{port}"

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, timeout: float = 20.0) -> ClusterServers:
        """Start every node, join them with redis-cli, wait until the cluster is healthy.

        Takes ~2-2.5 s: `redis-cli --cluster create` sleeps 1 s while the nodes meet, and a
        master does not turn `cluster_state:ok` until 2 s after its start
        (CLUSTER_WRITABLE_DELAY in cluster.c).
        """
        for name in ("redis-server", "redis-cli"):
            if shutil.which(name) is None:
                raise RuntimeError(f"{name} is not installed (.ci/run installs redis-server, which brings redis-cli)")
        count = self.masters * (1 + self.replicas)
        taken: set[int] = set()
        while len(taken) < 2 * count:
            taken.add(free_port())
        chosen = sorted(taken)
        self.ports = chosen[:count]
        self._bus_ports = dict(zip(self.ports, chosen[count:], strict=True))
        try:
            await asyncio.gather(*(self._spawn(port, timeout) for port in self.ports))
            await self._create(timeout)
            await self.wait_ok(timeout)
        except BaseException:
            await self.stop()
            raise
        return self

    async def _spawn(self, port: int, timeout: float) -> None:
        executable = shutil.which("redis-server")
        assert executable is not None
        workdir = self.node_dir(port)
        workdir.mkdir(parents=True, exist_ok=True)
        self._processes[port] = await asyncio.create_subprocess_exec(
            executable,
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms), "--cluster-port", str(self._bus_ports[port]),
            "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--repl-diskless-sync-delay", "0",
            "--dir", str(workdir), "--logfile", str(workdir / "redis.log"),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        await wait_for(lambda: self._pings(port), timeout, what=f"redis-server on port {port} answers PING")

    async def _create(self, timeout: float) -> None:
        executable = shutil.which("redis-cli")
        assert executable is not None
        process = await asyncio.create_subprocess_exec(
            executable, "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports),
            "--cluster-replicas", str(self.replicas), "--cluster-yes",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        if process.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({process.returncode}):\n{output.decode(errors='replace')}"
            )

    async def kill(self, port: int) -> None:
        """SIGKILL: the node vanishes as in a crash; its dir (nodes.conf) stays for restart()."""
        process = self._processes.get(port)
        if process is not None and process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()

    async def restart(self, port: int, timeout: float = 15.0) -> None:
        """Start the node again on the same port and dir, and wait until the cluster is healthy.

        Its nodes.conf makes it rejoin; a master that was failed over comes back as a replica
        of its successor (the successor's config epoch is newer) and syncs from it.
        """
        await self.kill(port)
        await self._spawn(port, timeout)
        await self.wait_ok(timeout)

    async def stop(self) -> None:
        processes = [process for process in self._processes.values() if process.returncode is None]
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        self._processes.clear()

    def empty(self) -> None:
        """Drop every key and Lua script on every master (their replicas follow), as a new cluster
        would have: what lets the tests that never fault a cluster share one. Synchronous, so that a
        fixture can call it on any loop or none."""
        client = SyncRedisCluster.from_url(self.url)
        try:
            client.flushall()  # redis-py sends both to every primary
            client.script_flush()
        finally:
            client.close()

    # -- topology --------------------------------------------------------------------------

    async def nodes(self) -> list[NodeInfo]:
        """Every node, its role, master and slots, from CLUSTER NODES of a running node."""
        text = await self._command(self.running_ports[0], "CLUSTER", "NODES")
        return self._parse_nodes(text)

    async def cluster_info(self, port: int) -> dict[str, str]:
        """CLUSTER INFO of one node: cluster_state, cluster_slots_ok, cluster_current_epoch..."""
        info = await self._command(port, "CLUSTER", "INFO")
        assert isinstance(info, str)
        return dict(line.split(":", 1) for line in info.splitlines() if ":" in line)

    async def slot_map(self, port: int | None = None) -> list[tuple[int, int, int]]:
        """(first slot, last slot, master port) from CLUSTER SLOTS of `port` (default: a running node)."""
        reply = await self._command(port or self.running_ports[0], "CLUSTER", "SLOTS")
        assert isinstance(reply, list)
        return sorted((int(start), int(end), int(master[1])) for start, end, master, *_ in reply)

    async def master_for_slot(self, slot: int) -> int:
        for start, end, master in await self.slot_map():
            if start <= slot <= end:
                return master
        raise LookupError(f"slot {slot} is not covered")

    async def master_for_key(self, key: str | bytes) -> int:
        return await self.master_for_slot(key_slot(key.encode() if isinstance(key, str) else key))

    async def replicas_for_slot(self, slot: int) -> list[int]:
        master = await self.master_for_slot(slot)
        return [node.port for node in await self.nodes() if node.master_port == master and not node.failed]

    # -- waiting ---------------------------------------------------------------------------

    async def wait_ok(self, timeout: float = 15.0) -> None:
        """Until every running node says cluster_state:ok with all 16384 slots ok, they all
        agree on the slot map and on every running node's role, that map names only running
        masters, every running replica's replication link is up, and every running node sees
        every other running node connected on the cluster bus and not flagged fail / fail?
        (SPUBLISH reaches a replica over the bus: a replica just restarted misses messages
        until its master's link to it is back)."""
        await wait_for(self._healthy, timeout, what="the cluster is healthy")

    async def wait_failover(self, old_master_port: int, slot: int, timeout: float = 15.0) -> int:
        """Until another node is the master of `slot` on every running node and the cluster is
        healthy again (see wait_ok); returns the new master's port."""

        async def promoted() -> int | None:
            if not await self._healthy():
                return None
            masters = {await self._master_of(port, slot) for port in self.running_ports}
            if len(masters) == 1 and old_master_port not in masters:
                return masters.pop()
            return None

        new_master = await wait_for(promoted, timeout, what=f"slot {slot} fails over from port {old_master_port}")
        assert isinstance(new_master, int)
        return new_master

    async def _master_of(self, port: int, slot: int) -> int | None:
        for start, end, master in await self.slot_map(port):
            if start <= slot <= end:
                return master
        return None

    async def _healthy(self) -> bool:
        running = self.running_ports
        maps, views = [], []
        for port in running:
            try:
                fields = await self.cluster_info(port)
                if fields.get("cluster_state") != "ok" or fields.get("cluster_slots_ok") != str(SLOTS):
                    return False
                replication = await self._command(port, "INFO", "replication")
                assert isinstance(replication, dict)
                if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                    return False
                maps.append(await self.slot_map(port))
                views.append(self._parse_nodes(await self._command(port, "CLUSTER", "NODES")))
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                return False
        if not maps or any(other != maps[0] for other in maps):
            return False
        covered = sum(end - start + 1 for start, end, _ in maps[0])
        if covered != SLOTS or not all(self.is_running(master) for _, _, master in maps[0]):
            return False
        # Every running node sees every running node, connected and not failing, in the same role.
        roles = []
        for view in views:
            seen = {node.port: node for node in view if node.port in running}
            if len(seen) != len(running) or not all(node.connected and not node.failed for node in seen.values()):
                return False
            roles.append(sorted((node.port, node.role, node.master_port) for node in seen.values()))
        return all(other == roles[0] for other in roles)

    async def _pings(self, port: int) -> bool:
        try:
            return bool(await self._command(port, "PING"))
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    async def _command(self, port: int, *args: str) -> object:
        """One command on one node, on a connection of its own (CLUSTER subcommands come back
        unparsed, as their callbacks are keyed "CLUSTER NODES" and the like)."""
        client = redis.Redis(
            host="127.0.0.1", port=port, decode_responses=True, socket_timeout=2, socket_connect_timeout=1
        )
        try:
            return await client.execute_command(*args)
        finally:
            await client.aclose()

    def _parse_nodes(self, text: object) -> list[NodeInfo]:
        assert isinstance(text, str)
        lines = [line.split() for line in text.splitlines() if line.strip()]
        port_of = {fields[0]: int(fields[1].split("@")[0].rsplit(":", 1)[1]) for fields in lines}
        nodes = []
        for fields in lines:
            flags = fields[2].split(",")
            is_master = "master" in flags
            slots = []
            for item in fields[8:]:
                if item.startswith("["):  # a slot being migrated or imported
                    continue
                start, _, end = item.partition("-")
                slots.append((int(start), int(end or start)))
            port = port_of[fields[0]]
            nodes.append(NodeInfo(
                port=port,
                node_id=fields[0],
                role="master" if is_master else "replica",
                master_port=None if is_master or fields[3] == "-" else port_of.get(fields[3]),
                slots=tuple(slots),
                failed="fail" in flags or "fail?" in flags,
                connected="myself" in flags or (fields[7] == "connected" and "handshake" not in flags),
                running=self.is_running(port),
            ))
        return sorted(nodes, key=lambda node: node.port)
