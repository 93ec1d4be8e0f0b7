"""The lab's Envoy kube-proxy with real connections: a sync is in force when it returns (new endpoints reached,
removed ones not, a dead one skipped), open connections survive endpoint changes, a crashed Envoy comes back
on the next sync, and stop leaves nothing running."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import pytest

from meshlab.backends.local import kubeproxy, paths, procs

pytestmark = pytest.mark.integration


def claim_block():
    for octet in range(250, 10, -1):
        handle = paths.claim_block(octet)
        if handle is not None:
            return octet, handle
    pytest.skip("no free address block")


async def echo_server(ip: str):
    async def answer(reader, writer):
        while data := await reader.read(100):
            writer.write(ip.encode() + b":" + data)
            await writer.drain()
        writer.close()
    return await asyncio.start_server(answer, ip, 9080, reuse_address=True)


async def ask(stream, text: bytes = b"hi") -> bytes:
    reader, writer = stream
    writer.write(text)
    await writer.drain()
    return await asyncio.wait_for(reader.read(100), 5)


async def who(address) -> bytes:
    stream = await asyncio.open_connection(*address)
    try:
        return (await ask(stream)).split(b":")[0]
    finally:
        stream[1].close()


def test_a_sync_is_in_force_when_it_returns():
    octet, claim = claim_block()
    cip, pod_a, pod_b, dead = (f"127.{octet}.0.10", 9080), f"127.{octet}.1.10", f"127.{octet}.2.10", f"127.{octet}.3.10"
    folder = Path(os.environ["MESHLAB_HOME"]) / f"kube-proxy-test-{octet}"
    proxy = kubeproxy.KubeProxy(folder, f"127.{octet}.0.4")

    async def scenario():
        servers = [await echo_server(pod_a), await echo_server(pod_b)]
        try:
            await proxy.sync({cip: lambda: [(pod_a, 9080)]})
            assert await who(cip) == pod_a.encode()
            kept = await asyncio.open_connection(*cip)
            assert await ask(kept, b"1") == f"{pod_a}:1".encode()

            await proxy.sync({cip: lambda: [(pod_b, 9080)]})
            assert [await who(cip) for _ in range(3)] == [pod_b.encode()] * 3  # at once, every time
            assert await ask(kept, b"2") == f"{pod_a}:2".encode()  # an open connection stays where it was

            await proxy.sync({cip: lambda: [(dead, 9080), (pod_b, 9080)]})
            assert {await who(cip) for _ in range(4)} == {pod_b.encode()}  # the dead endpoint is skipped

            await proxy.sync({})
            with pytest.raises(OSError):
                await who(cip)

            os.killpg(proxy.proc.pid, signal.SIGKILL)
            proxy.proc.wait(5)
            assert not proxy.running()
            await proxy.sync({cip: lambda: [(pod_a, 9080)]})
            assert proxy.running() and await who(cip) == pod_a.encode()
            kept[1].close()
        finally:
            pid, started = proxy.proc.pid, proxy.started
            await proxy.stop()
            for server in servers:
                server.close()
        assert procs.wait_gone(pid, started, timeout=5)

    try:
        asyncio.run(scenario())
    finally:
        claim.close()
        shutil.rmtree(folder, ignore_errors=True)
