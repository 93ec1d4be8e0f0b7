"""A stand-in supervisor for control-plane tests: answers `watch` (long poll) and `ping` over an
abstract Unix socket in rpc.py's JSON-lines protocol, from an asyncio loop in its own thread."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

from meshlab.backends.local import rpc


def abstract_name(tag: str) -> str:
    """A fresh `@name` abstract socket address (as MESHLAB_API carries it)."""
    return f"@meshlab-test-{tag}-{os.getpid()}-{time.monotonic_ns()}"


class FakeSupervisor:
    """Serves a state with a revision; set_state() bumps the revision and wakes long polls."""

    def __init__(self, address: str, state: dict | None = None):
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.revision = 1
        self.state = state or {"cluster": "", "objects": [], "pods": []}
        self.requests: list[dict] = []
        self.tokens: dict[str, dict] = {}  # token -> the pod it was issued to (what `tokenreview` answers)
        self.loop = asyncio.new_event_loop()
        self.changed: asyncio.Condition | None = None
        self.server = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        if not ready.wait(5):
            raise RuntimeError("the fake supervisor did not start")

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def start():
            self.changed = asyncio.Condition()
            self.server = await asyncio.start_unix_server(self._serve, path=self.address)
            ready.set()
        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _serve(self, reader, writer) -> None:
        request = json.loads(await reader.readline())
        self.requests.append(request)
        params = request["params"]
        if request["method"] == "ping":
            writer.write(rpc.encode_answer("pong"))
        elif request["method"] == "tokenreview":
            writer.write(rpc.encode_answer(self.tokens.get(params.get("token", ""))))
        elif request["method"] == "watch":
            async with self.changed:
                try:
                    await asyncio.wait_for(self.changed.wait_for(lambda: self.revision != params["since"]),
                                           params["timeout"])
                except asyncio.TimeoutError:
                    pass
                answer = {"revision": self.revision, **self.state}
            writer.write(rpc.encode_answer(answer))
        else:
            writer.write(rpc.encode_answer(error=ValueError(f"unknown method {request['method']}")))
        await writer.drain()
        writer.close()

    def set_state(self, state: dict | None = None) -> None:
        """A new revision (with a new state when given), as after an apply."""
        async def bump():
            async with self.changed:
                if state is not None:
                    self.state = state
                self.revision += 1
                self.changed.notify_all()
        asyncio.run_coroutine_threadsafe(bump(), self.loop).result(5)

    def close(self) -> None:
        """Stop serving and end the thread."""
        async def close():
            self.server.close()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def ads_bootstrap(node_id: str, cluster: str, xds_port: int, admin_port: int, token: str = "") -> dict:
    """An Envoy bootstrap that takes everything over ADS from a control plane on 127.0.0.1:xds_port (showing its
    pod token when given)."""
    source = {"ads": {}, "resource_api_version": "V3"}
    grpc_service = {"envoy_grpc": {"cluster_name": "xds"}}
    if token:
        grpc_service["initial_metadata"] = [{"key": "authorization", "value": f"Bearer {token}"}]
    return {
        "node": {"id": node_id, "cluster": cluster},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "dynamic_resources": {"ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                                             "grpc_services": [grpc_service]},
                              "cds_config": source, "lds_config": source},
        "static_resources": {"clusters": [{
            "name": "xds", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": xds_port}}}}]}]}}]},
    }
