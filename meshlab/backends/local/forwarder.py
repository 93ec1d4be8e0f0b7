"""TCP forwarding for Service ClusterIPs and hostPorts in Python (kube-proxy's old userspace mode).

Kept as MESHLAB_CLUSTERIP=python and for benchmarks/clusterip.py; the default is the Envoy of kubeproxy.py
(docs/internals.md says why).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Callable

from ..base import MeshlabError

Backends = Callable[[], list[tuple[str, int]]]


class Forwarders:
    """One Forwarder per address, in the supervisor's event loop; backends are looked up per connection."""

    def __init__(self):
        self.forwarders: dict[tuple[str, int], Forwarder] = {}

    def pids(self) -> list:
        """None: the forwarders live in the supervisor."""
        return []

    def running(self) -> bool:
        """Always: the forwarders live and die with the supervisor."""
        return True

    async def sync(self, wanted: dict[tuple[str, int], Backends]) -> None:
        """Listen on exactly these addresses."""
        for key in list(self.forwarders):
            if key not in wanted:
                await self.forwarders.pop(key).stop()
        for key, backends in wanted.items():
            if key in self.forwarders:
                self.forwarders[key].backends = backends
                continue
            forwarder = Forwarder(key[0], key[1], backends)
            try:
                await forwarder.start()
            except OSError as exc:
                raise MeshlabError(f"cannot listen on {key[0]}:{key[1]}: {exc.strerror}",
                                   "another process holds that address; run 'meshlab down --all'") from None
            self.forwarders[key] = forwarder

    async def stop(self) -> None:
        """Close every listener."""
        for forwarder in self.forwarders.values():
            await forwarder.stop()
        self.forwarders.clear()


class Forwarder:
    """Listens on one address and passes each connection to a ready backend, round robin."""

    def __init__(self, address: str, port: int, backends: Backends):
        self.address, self.port, self.backends = address, port, backends
        self._turn = itertools.count()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.address, self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()

    async def _connect(self):
        targets = self.backends()
        if not targets:
            return None
        start = next(self._turn)
        for offset in range(len(targets)):  # a dead backend is skipped, as kube-proxy did
            host, port = targets[(start + offset) % len(targets)]
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
            except (OSError, asyncio.TimeoutError):
                continue
        return None

    async def _handle(self, reader, writer) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            upstream = await self._connect()
            if upstream is None:
                return
            up_reader, up_writer = upstream
            try:
                await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer), return_exceptions=True)
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pump(reader, writer) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.CancelledError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            writer.close()
