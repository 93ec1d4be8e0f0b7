"""The gRPC ADS server (state of the world): pushes each proxy its snapshot and SDS secrets."""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import json
import queue
import threading
from concurrent import futures
from pathlib import Path
from typing import Callable

import grpc
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory

# every message an Envoy resource or its typed_config may carry (translate/common.py's @types), imported before any
# stream encodes: an import on demand while several streams encode at once is a window for a half-built type
from envoy.config.cluster.v3 import cluster_pb2  # noqa: F401
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: F401
from envoy.config.listener.v3 import listener_pb2  # noqa: F401
from envoy.config.route.v3 import route_pb2  # noqa: F401
from envoy.extensions.filters.http.fault.v3 import fault_pb2  # noqa: F401
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2  # noqa: F401
from envoy.extensions.clusters.dns.v3 import dns_cluster_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2  # noqa: F401
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from . import tokenreview
from .cache import SECRET_TYPE, SnapshotCache, short_type

ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
PUSH_ORDER = (SECRET_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)  # make before break
NAMED_TYPES = {ENDPOINT_TYPE, ROUTE_TYPE, SECRET_TYPE}  # others are always sent whole
SecretSource = Callable[[str], "dict[str, dict] | None"]

_imported: set[str] = set()
_import_lock = threading.Lock()


def message_class(full_name: str):
    """The generated class of a proto message, importing its package's modules when needed."""
    pool = descriptor_pool.Default()
    try:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))
    except KeyError:
        _import_package_of(full_name)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


def _import_package_of(full_name: str) -> None:
    """Import every *_pb2 module of the proto package that defines full_name."""
    parts = full_name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        package = ".".join(parts[:cut])
        with _import_lock:
            if package in _imported:
                continue
            try:
                spec = importlib.util.find_spec(package)
            except (ImportError, ValueError):
                spec = None
            for folder in (spec.submodule_search_locations or []) if spec else []:
                for module in sorted(Path(folder).glob("*_pb2.py")):
                    importlib.import_module(f"{package}.{module.stem}")
            _imported.add(package)  # only once every module of it is in: a racing stream waits on the lock
        if spec:
            return


def _type_names(value) -> set[str]:
    """Every `@type` named anywhere inside a proto3 JSON value."""
    found = set()
    if isinstance(value, dict):
        if isinstance(value.get("@type"), str):
            found.add(value["@type"].rsplit("/", 1)[-1])
        for item in value.values():
            found |= _type_names(item)
    elif isinstance(value, list):
        for item in value:
            found |= _type_names(item)
    return found


def to_any(type_url: str, resource: dict) -> any_pb2.Any:
    """Parse one resource in proto3 JSON into its message for type_url, packed in an Any."""
    for name in _type_names(resource):
        message_class(name)
    # ParseDict deletes and puts back each Any's '@type' in the dict it reads: parse a private copy, since one
    # resource is shared by the snapshots of many sidecars and their streams encode at the same time
    message = json_format.ParseDict(copy.deepcopy(resource), message_class(type_url.rsplit("/", 1)[-1])())
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def content_version(resources: dict) -> str:
    """A short hash of resources, the version of content that has no version of its own."""
    return hashlib.sha256(json.dumps(resources, sort_keys=True).encode()).hexdigest()[:12]


class Subscription:
    """What a stream asked for of one type, and what it was last sent."""

    def __init__(self):
        self.names: frozenset[str] = frozenset()
        self.sent: tuple[str, frozenset[str]] | None = None
        self.nonce = ""


class AdsStream:
    """One proxy's ADS stream: reads its requests, answers them, pushes on change."""

    def __init__(self, service: "AdsService", node_id: str, events: queue.Queue):
        self.service, self.node_id, self.events = service, node_id, events
        self.subscriptions: dict[str, Subscription] = {}
        self.counter = 0

    def handle(self, request: discovery_pb2.DiscoveryRequest) -> None:
        """Record an ACK or a NACK, and what the proxy now wants."""
        type_url, cache, log = request.type_url, self.service.cache, self.service.log
        sub = self.subscriptions.setdefault(type_url, Subscription())
        if not request.response_nonce:
            sub.sent = None  # a new subscription: answer even if the proxy already has this version
        elif request.response_nonce != sub.nonce:
            return  # an answer to an older response; a newer one is on its way
        elif request.HasField("error_detail"):
            rejected = sub.sent[0] if sub.sent else ""
            cache.nacked(self.node_id, type_url, rejected, request.error_detail.message)
            log(f"NACK {short_type(type_url)} {self.node_id} version={rejected} "
                f"keeps={request.version_info or '-'}: {request.error_detail.message.splitlines()[0][:300]}")
        elif sub.sent and request.version_info == sub.sent[0]:
            cache.acked(self.node_id, type_url, request.version_info)
            log(f"ACK {short_type(type_url)} {self.node_id} version={request.version_info} nonce={sub.nonce}")
        names = frozenset(request.resource_names) - {"*"}
        sub.names = names if type_url in NAMED_TYPES else frozenset()

    def responses(self):
        """The responses the proxy is owed now, in make-before-break order."""
        for type_url in sorted(self.subscriptions, key=lambda u: (PUSH_ORDER + (u,)).index(u)):
            sub = self.subscriptions[type_url]
            current = self._current(type_url, sub.names)
            if current is None or (current[0], sub.names) == sub.sent:
                continue
            version, resources = current
            sub.sent = (version, sub.names)
            try:
                packed = [self.service.encode(type_url, version, name, resources[name]) for name in sorted(resources)]
            except (json_format.ParseError, KeyError, TypeError, ValueError) as exc:
                self.service.cache.nacked(self.node_id, type_url, version, f"not sent, cannot encode: {exc}")
                self.service.log(f"ERROR {short_type(type_url)} {self.node_id} version={version}: {exc}")
                continue
            self.counter += 1
            sub.nonce = str(self.counter)
            self.service.cache.pushed(self.node_id, type_url, version, sub.nonce)
            self.service.log(f"push {short_type(type_url)} {self.node_id} version={version} "
                             f"nonce={sub.nonce} resources={len(packed)}")
            yield discovery_pb2.DiscoveryResponse(version_info=version, resources=packed,
                                                  type_url=type_url, nonce=sub.nonce)

    def _current(self, type_url: str, names: frozenset[str]):
        """(version, {name: resource}) for what is wanted of type_url, or None if nothing yet."""
        if type_url == SECRET_TYPE:
            everything = self.service.secrets(self.node_id) if self.service.secrets else None
            if everything is None:
                return None
            version = content_version(everything)
        else:
            snapshot = self.service.cache.get(self.node_id)
            if snapshot is None:
                return None
            version, everything = snapshot.version, snapshot.resources.get(type_url, {})
        if names:
            return version, {name: everything[name] for name in names if name in everything}
        return version, dict(everything)


class AdsService(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """StreamAggregatedResources over a SnapshotCache, plus SDS secrets from a SecretSource."""

    def __init__(self, cache: SnapshotCache, secrets: SecretSource | None = None,
                 log: Callable[[str], None] = print, secret_check_interval: float = 5.0,
                 review: Callable[[str], dict | None] | None = None):
        self.cache, self.secrets, self.log = cache, secrets, log
        self.review = review  # None: every stream is served (a test's server); else each must show its pod token
        self.secret_check_interval = secret_check_interval
        self._encoded: dict[tuple, any_pb2.Any] = {}
        self._encoded_lock = threading.Lock()
        self.stopping = threading.Event()

    def encode(self, type_url: str, version: str, name: str, resource: dict) -> any_pb2.Any:
        """to_any, remembered by the resource's own content: a cluster or route that every sidecar shares is
        parsed into protobuf once, not once per sidecar (the parse is most of a push's CPU)."""
        key = (type_url, hashlib.sha1(json.dumps(resource, sort_keys=True).encode()).digest())
        with self._encoded_lock:
            if key in self._encoded:
                return self._encoded[key]
        packed = to_any(type_url, resource)
        with self._encoded_lock:
            if len(self._encoded) > 20000:
                self._encoded.clear()
            self._encoded[key] = packed
        return packed

    def StreamAggregatedResources(self, request_iterator, context):
        """Serve one proxy for as long as its stream lasts."""
        events: queue.Queue = queue.Queue()
        threading.Thread(target=_read_requests, args=(request_iterator, events), daemon=True).start()
        first = events.get()
        if first is None:
            return
        node_id = first.node.id
        if not node_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first request must carry node.id")
        if self.review is not None:
            why = tokenreview.refusal(self.review(tokenreview.bearer(context.invocation_metadata())), node_id)
            if why:
                self.log(f"refused {node_id} peer={context.peer()}: {why}")
                context.abort(grpc.StatusCode.UNAUTHENTICATED, why)
        stream = AdsStream(self, node_id, events)
        self.cache.connected(node_id)
        unwatch = self.cache.watch(node_id, lambda: events.put("changed"))
        self.log(f"connect {node_id} peer={context.peer()}")
        try:
            stream.handle(first)
            yield from stream.responses()
            while not self.stopping.is_set():
                try:
                    item = events.get(timeout=self.secret_check_interval)
                except queue.Empty:
                    item = "tick"  # time to see whether a certificate is due for rotation
                if item is None or not context.is_active():
                    break
                if isinstance(item, discovery_pb2.DiscoveryRequest):
                    stream.handle(item)
                yield from stream.responses()
        finally:
            unwatch()
            self.cache.disconnected(node_id)
            self.log(f"disconnect {node_id}")


def _read_requests(request_iterator, events: queue.Queue) -> None:
    """Move a stream's requests onto its event queue; None marks its end."""
    try:
        for request in request_iterator:
            events.put(request)
    except Exception:  # a cancelled or broken stream ends like a closed one
        pass
    finally:
        events.put(None)


class AdsServer:
    """A gRPC server hosting AdsService on one address."""

    def __init__(self, service: AdsService, address: str, port: int, max_streams: int = 256):
        self.service = service
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_streams + 8, thread_name_prefix="ads"),
                                  options=[("grpc.so_reuseport", 0)])  # a second server must not share the port
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(service, self.server)
        host = f"[{address}]" if ":" in address else address
        try:
            self.port = self.server.add_insecure_port(f"{host}:{port}")
        except RuntimeError:
            self.port = 0
        if not self.port:
            raise OSError(f"xDS: cannot listen on {host}:{port} (in use, or not an address of this host)")

    def start(self) -> "AdsServer":
        """Start serving; returns self."""
        self.server.start()
        return self

    def stop(self, grace: float = 1.0) -> None:
        """End every stream and stop listening."""
        self.service.stopping.set()
        self.server.stop(grace).wait()
