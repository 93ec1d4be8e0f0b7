"""The supervisor of one local lab: owns every process, serves the client, dies with its owner."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import struct
import sys
import traceback

from ..base import MeshlabError
from . import paths, procs, rpc
from .identity import ClusterIdentity
from .runtime import TICK, Runtime


def same_user(sock) -> bool:
    """True when the process at the other end of a Unix socket runs as this user (or as root)."""
    try:
        _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    except (OSError, AttributeError):
        return False
    return uid in (os.getuid(), 0)


class Supervisor:
    """Runs the lab's event loop: the runtime, the RPC server, DNS and the owner watch."""

    def __init__(self, lab: str, nodes: int, owner: int | None, identity: ClusterIdentity = ClusterIdentity()):
        self.lab, self.owner = lab, owner
        self.folder = paths.lab_dir(lab)
        self.state = paths.read_state(lab)
        self.runtime = Runtime(self.folder, self.state["octet"], nodes, self.state, identity)
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        self.claim = paths.claim_block(self.state["octet"])  # held until this process ends
        if self.claim is None:
            raise MeshlabError(f"address block 127.{self.state['octet']}.0.0/16: Address already in use",
                               "another lab claimed it first")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stopping.set)
        from .dns import DnsProtocol

        transport, _ = await loop.create_datagram_endpoint(lambda: DnsProtocol(self.runtime.resolve),
                                                           local_addr=self.runtime.dns)
        server = await asyncio.start_unix_server(self._serve, path=paths.socket_address(self.folder),
                                                 limit=rpc.MAX_REQUEST)
        self._watch_owner(loop)
        self.state.update(supervisor=[os.getpid(), procs.start_time(os.getpid())], owner=self.owner,
                          nodes=len(self.runtime.nodes))
        self.runtime.save_state()
        print(f"meshlab supervisor for lab {self.lab} ready", flush=True)
        try:
            while not self.stopping.is_set():
                try:
                    await self.runtime.tick()
                except Exception:  # keep serving; the log says what went wrong
                    traceback.print_exc()
                try:
                    await asyncio.wait_for(self.stopping.wait(), TICK)
                except asyncio.TimeoutError:
                    pass
        finally:
            server.close()
            transport.close()
            await self.runtime.shutdown()
            shutil.rmtree(self.folder, ignore_errors=True)

    def _watch_owner(self, loop) -> None:
        """When the kernel that started the lab dies (even by kill -9), the lab goes with it."""
        if not self.owner:
            return
        try:
            fd = os.pidfd_open(self.owner)
            loop.add_reader(fd, self.stopping.set)
        except (AttributeError, OSError):
            async def poll():
                while not self.stopping.is_set():
                    if not procs.is_same_process(self.owner, None):
                        self.stopping.set()
                    await asyncio.sleep(0.3)
            loop.create_task(poll())

    async def _serve(self, reader, writer) -> None:
        if not same_user(writer.get_extra_info("socket")):
            writer.close()  # an abstract socket has no file permissions: the kernel's peer credentials decide
            return
        try:
            request = json.loads(await reader.readline())
            result = await self.handle(request["method"], request.get("params") or {})
            writer.write(rpc.encode_answer(result))
        except MeshlabError as exc:
            writer.write(rpc.encode_answer(error=exc))
        except Exception as exc:  # an internal error still answers, in one line
            traceback.print_exc()
            writer.write(rpc.encode_answer(error=MeshlabError(f"internal error: {exc}", "see the supervisor log")))
        try:
            await writer.drain()
        finally:
            writer.close()

    async def handle(self, method: str, params: dict):
        rt = self.runtime
        if method == "ping":
            return "pong"
        if method == "apply":
            return await rt.apply(params["docs"], params.get("source", "<yaml>"))
        if method == "delete":
            return await rt.delete(params["docs"])
        if method == "status":
            await rt.settle()
            return {"lab": self.lab, "pods": rt.pod_infos(), "nodes": rt.node_infos(), "proxies": rt.proxy_infos(),
                    "services": rt.services(), "entrypoint": rt.entrypoint(), "owner": self.owner,
                    "facts": self.state.get("facts", {}), "revision": rt.revisions.revision,
                    "revision_time": rt.revisions.changed_at,
                    **rt.identity.to_dict(), "api": rt.api}
        if method == "watch":
            await rt.revisions.wait(int(params.get("since") or 0), float(params.get("timeout", 30.0)))
            await rt.settle()
            return rt.watch_payload()
        if method == "restart":
            return await rt.restart(params["ref"], float(params.get("timeout", 60.0)))
        if method == "remember":
            self.state.setdefault("facts", {}).update(params["facts"])
            rt.save_state()
            return None
        if method == "kill":
            result = rt.kill(**params)
            await rt.tick()
            return result
        if method == "restore":
            rt.restore()
            return None
        if method == "tokenreview":
            return rt.review(params.get("token", ""))
        if method == "objects":
            return rt.of_kind(params["kind"])
        if method == "down":
            self.stopping.set()
            return None
        raise MeshlabError(f"unknown request {method}", "client and supervisor versions differ")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="meshlab-supervisor")
    parser.add_argument("--lab", required=True)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--owner", type=int, default=0)
    parser.add_argument("--cluster", default="", help="this runtime's cluster in a multi-cluster lab")
    parser.add_argument("--network", default="", help="its network (Istio's topology.istio.io/network)")
    parser.add_argument("--region", default="", help="its region (nodes get topology.kubernetes.io/region and zone)")
    args = parser.parse_args(argv)
    identity = ClusterIdentity(args.cluster, args.network, args.region)
    try:
        asyncio.run(Supervisor(args.lab, args.nodes, args.owner or None, identity).run())
    except MeshlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
