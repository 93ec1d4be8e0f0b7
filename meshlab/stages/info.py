"""The six stages of mesh adoption (plus stage 0, no proxies) as data, with a drawable schematic."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Part:
    """One pod of a schematic: an app pod (maybe with a sidecar) or a proxy pod with a role."""

    name: str
    node: str
    service: str = ""
    version: str = ""
    role: str = ""  # "" for an app pod; edge|router|node|gateway|control-plane for a proxy pod
    sidecar: bool = False
    cluster: str = "cluster"


@dataclass(frozen=True)
class Schematic:
    """A stage's typical topology: its pods and the calls between them ("client" is outside).

    A call names parts; "<pod>/sidecar" is the sidecar inside an app pod, "<cluster>/<pod>" a part of a name
    several clusters share. `failover` lists the calls made only once the usual ones fail, and `config` the
    control-plane pushes (both drawn dashed).
    """

    parts: tuple[Part, ...]
    calls: tuple[tuple[str, ...], ...]  # (src, dst) or (src, dst, label)
    config: tuple[tuple[str, str], ...] = ()
    failover: tuple[tuple[str, ...], ...] = ()  # as calls
    nodes: tuple[tuple[str, str], ...] = ()  # (cluster, node) in drawing order; else from parts


@dataclass(frozen=True)
class StageInfo:
    """One stage: what it is, where its proxies sit, what it costs, and what it looks like."""

    number: int
    key: str
    title: str
    seed_name: str
    summary: str
    proxies_where: str
    managed_by: str
    k8s_objects: list[str]
    tradeoffs: list[str]
    blast_radius: str
    schematic: Schematic = field(repr=False)

    @property
    def label(self) -> str:
        """'Stage 3 · Proxy per node (Proxy per Node)'."""
        return f"Stage {self.number} · {self.title} ({self.seed_name})"


def _app(name: str, node: str, sidecar: bool = False, cluster: str = "cluster", service: str = "") -> Part:
    """An app pod; 'reviews-v2' means service reviews, version v2."""
    base, _, version = name.rpartition("-v")
    svc = service or (base if version.isdigit() else name)
    return Part(name, node, svc, f"v{version}" if version.isdigit() else "v1", "", sidecar, cluster)


def _proxy(name: str, role: str, node: str, cluster: str = "cluster") -> Part:
    """A pod that is only a proxy (or the control plane)."""
    return Part(name, node, role=role, cluster=cluster)


# The shop as the local lab places it (least-loaded nodes, Deployments by name): seven app pods on three nodes.
_SHOP = ("frontend", "catalog", "reviews-v1", "reviews-v2", "reviews-v3", "ratings", "ratings-2")
_PLACE = {"frontend": "node-2", "catalog": "node-1", "reviews-v1": "node-2", "reviews-v2": "node-3",
          "reviews-v3": "node-1", "ratings": "node-3", "ratings-2": "node-1"}
_NODES = tuple(("cluster", f"node-{i}") for i in (1, 2, 3))
_APP_CALLS = (("frontend", "catalog"), ("frontend", "reviews-v1"), ("frontend", "reviews-v2"),
              ("frontend", "reviews-v3"), ("reviews-v2", "ratings"), ("reviews-v3", "ratings-2"))


def _shop(sidecar: bool = False) -> tuple[Part, ...]:
    """The sample shop on three nodes."""
    return tuple(_app(n, _PLACE[n], sidecar, service="ratings" if n.startswith("ratings") else "") for n in _SHOP)


def _via_sidecars(calls, label: str = "") -> tuple[tuple[str, ...], ...]:
    """Each app-to-app call as app -> own sidecar -> callee's sidecar -> callee."""
    out: list[tuple[str, ...]] = []
    for src, dst in calls:
        middle = (f"{src}/sidecar", f"{dst}/sidecar") + ((label,) if label else ())
        out += [(src, f"{src}/sidecar"), middle, (f"{dst}/sidecar", dst)]
    return tuple(dict.fromkeys(out))


# Stage 6 as the local fleet places it (each cluster a runtime of three nodes that gets its control plane and
# east-west gateway first, then its share of the shop): names for the derived pods, and where the calls go.
_PLACE6 = {"cluster-1": {"frontend": "node-1", "reviews-v1": "node-1", "reviews-v2": "node-2", "ratings": "node-2",
                         "catalog": "node-3", "reviews-v3": "node-3", "ratings-2": "node-3"},
           "cluster-2": {"reviews-v3": "node-1", "ratings-2": "node-1", "reviews-v1": "node-2", "reviews-v2": "node-3",
                         "ratings": "node-3"}}
_REVIEWS_CALL_RATINGS = tuple(c for c in _APP_CALLS if c[0] != "frontend")  # each ratings on its caller's node


def _in(cluster: str, calls) -> tuple[tuple[str, ...], ...]:
    """Calls between the parts of one cluster, their names qualified (stage 6 has most names in both)."""
    return tuple((f"{cluster}/{src}", f"{cluster}/{dst}", *label) for src, dst, *label in calls)


def _stage6() -> Schematic:
    """Two clusters (docs/multicluster.md): frontend and catalog in cluster-1 only, reviews and ratings in both, the
    legacy payments service outside both. Calls stay in cluster-1; once its reviews fail, frontend's calls fail over
    through cluster-2's east-west gateway to cluster-2's reviews, the one path between the clusters. Each control
    plane configures its own cluster's proxies."""
    one, two = "cluster-1", "cluster-2"
    apps = [_app(name, node, True, cluster, "ratings" if name.startswith("ratings") else "")
            for cluster, where in _PLACE6.items() for name, node in where.items()]
    infra = [_proxy("edge", "edge", "node-1", one), _proxy("eastwest-gateway-1", "gateway", "node-1", one),
             _proxy("istiod-1", "control-plane", "node-2", one),
             _proxy("eastwest-gateway-2", "gateway", "node-1", two), _proxy("istiod-2", "control-plane", "node-2", two)]
    legacy = _app("payments", "legacy-host", False, "")
    calls = (("client", "edge"),) + _in(one, _SIDECAR_IN + _via_sidecars(_APP_CALLS, "mTLS")) + \
        ((f"{one}/frontend/sidecar", "payments", "ServiceEntry"),)
    reviews = [f"reviews-v{v}" for v in (1, 2, 3)]
    failover = ((f"{one}/frontend/sidecar", "eastwest-gateway-2", "mTLS, SNI passthrough"),) + \
        tuple(("eastwest-gateway-2", f"{two}/{r}/sidecar") for r in reviews) + \
        _in(two, [(f"{r}/sidecar", r) for r in reviews] + list(_via_sidecars(_REVIEWS_CALL_RATINGS, "mTLS")))
    config = (("istiod-1", "eastwest-gateway-1"), ("istiod-2", "eastwest-gateway-2"))
    return Schematic(tuple(infra + apps + [legacy]), tuple(dict.fromkeys(calls)), config,
                     failover=tuple(dict.fromkeys(failover)))


_EDGE = _proxy("edge", "edge", "node-1")
_INGRESS = (("client", "edge"), ("edge", "frontend"))
_SIDECAR_IN = (("edge", "frontend/sidecar"), ("frontend/sidecar", "frontend"))

STAGES: list[StageInfo] = [
    StageInfo(
        0, "app", "App, no proxies", "通过客户端库来治理服务",
        "The sample shop as plain Deployments and Services: pods call each other directly through "
        "kube-proxy. Retries, timeouts and metrics live in each app's client library, if anywhere.",
        "nowhere", "each service's own code and client libraries",
        ["Deployment", "Service"],
        ["No proxy to pay for: zero extra hops, zero extra memory.",
         "Every service re-implements retries, timeouts, load balancing and metrics in its own language.",
         "Changing a traffic policy means changing and redeploying code.",
         "North-south traffic reaches the frontend through a NodePort or port-forward, with no L7 rules."],
        "one pod: its callers see errors, with no retry or failover unless their code does it",
        Schematic(_shop(), (("client", "frontend"), *_APP_CALLS), nodes=_NODES)),
    StageInfo(
        1, "edge", "Ingress / edge proxy", "Ingress或边缘代理",
        "An ingress controller (meshlab's own, driving an Envoy, on every backend) proxies traffic entering the "
        "cluster by host and path. It uses only what Kubernetes already has, but it never sees the "
        "calls between services.",
        "one edge proxy at the cluster's border; north-south traffic only",
        "Ingress resources, read by an ingress controller",
        ["Ingress", "IngressClass", "Service", "Deployment"],
        ["Simple: Kubernetes' own Ingress, no change to the apps (seed: 这种改造十分简单).",
         "L7 routing by host and path for traffic entering the cluster.",
         "Cannot manage service-to-service traffic: no retries, metrics or control east-west "
         "(seed: 无法管理服务间流量).",
         "Resources: one proxy (or a few replicas) for the whole cluster."],
        "the edge proxy: every external request fails; east-west calls carry on unaffected",
        Schematic((_EDGE,) + _shop(), _INGRESS + _APP_CALLS, nodes=_NODES)),
    StageInfo(
        2, "router", "Router mesh", "路由器网格",
        "A central layer of Envoy routers: every east-west call goes through it, so calls between "
        "services become visible and controllable (retries, timeouts) with no change to the apps.",
        "a central router Deployment; every east-west call goes through it",
        "router config in a ConfigMap",
        ["Deployment (Envoy routers)", "Service", "ConfigMap", "headless Service per version"],
        ["No change to monoliths or new microservices; easy to move services in "
         "(seed: 无需对原有的单体应用和新的微服务应用做什么改造).",
         "East-west traffic is visible and controlled in one place.",
         "Every call pays an extra hop through the router.",
         "A single point of failure, and one shared config that gets hard to manage as services grow "
         "(seed: 当服务多了管理起来就很麻烦)."],
        "the router layer: every east-west call fails",
        Schematic((_EDGE, _proxy("router", "router", "node-3")) + _shop(),
                  _INGRESS + (("frontend", "router"), ("router", "catalog"), ("router", "reviews-v1"),
                              ("router", "reviews-v2"), ("router", "reviews-v3"), ("reviews-v2", "router"),
                              ("reviews-v3", "router"), ("router", "ratings"), ("router", "ratings-2")),
                  nodes=_NODES)),
    StageInfo(
        3, "per-node", "Proxy per node", "Proxy per Node",
        "One proxy per node as a DaemonSet (how Linkerd 1 was deployed): pods find their node's proxy "
        "through the downward API (status.hostIP). A call leaves through the caller's node proxy and "
        "enters through the callee's, so each node proxy carries every call from and to its node's pods.",
        "one proxy on every node; a call passes the caller's node proxy and the callee's",
        "per-node proxy config (one ConfigMap for the DaemonSet)",
        ["DaemonSet (hostPort)", "ConfigMap", "headless Service per version", "downward API (status.hostIP)"],
        ["Fewer proxies than pods: cheaper than a sidecar in every pod (seed: 更节省资源).",
         "Suits large monoliths on physical machines or VMs.",
         "Coarse control: policy applies per node, not per service (seed: 粒度还是不够细).",
         "If a node's proxy fails, every service on that node is cut off: its pods can no longer call "
         "anything, nor be called (seed: 该节点上的所有服务就都会无法访问).",
         "Not fully transparent: apps must know to call their node's proxy.",
         "A heavy proxy per node adds up (seed: Linkerd 1 on the JVM; Linkerd 2 moved to Go)."],
        "one node: every pod on that node is cut off, in both directions",
        Schematic((_EDGE,) + tuple(_proxy(f"node-proxy-{i}", "node", f"node-{i}") for i in (1, 2, 3)) + _shop(),
                  _INGRESS + (("frontend", "node-proxy-2", "out"), ("node-proxy-2", "reviews-v1", "in"),
                              ("node-proxy-2", "node-proxy-1"), ("node-proxy-1", "catalog", "in"),
                              ("node-proxy-1", "reviews-v3", "in"), ("node-proxy-2", "node-proxy-3"),
                              ("node-proxy-3", "reviews-v2", "in"), ("reviews-v2", "node-proxy-3", "out"),
                              ("node-proxy-3", "ratings", "in"), ("reviews-v3", "node-proxy-1", "out"),
                              ("node-proxy-1", "ratings-2", "in")),
                  nodes=_NODES)),
    StageInfo(
        4, "sidecar", "Sidecar proxy / fabric", "Sidecar代理/Fabric模型",
        "A proxy container inside every pod, each with its own static config that it hot-reloads. "
        "The closest form to a full mesh; only the control plane is missing.",
        "a sidecar proxy inside every pod",
        "a static config per sidecar (ConfigMaps), hot reload, no control plane",
        ["Deployment with two containers", "ConfigMap per service version", "headless Service per version"],
        ["App and proxy in one deployment unit: fine-grained control per pod (seed: 更细粒度的控制).",
         "Every sidecar hot-reloads, so config changes show in traffic quickly (seed: 都支持热加载).",
         "N configs to keep consistent by hand: operating this many sidecars needs a control plane "
         "(seed: 如何操作这么多sidecar就需要一个统一的控制平面).",
         "A short-lived stage in practice: teams soon add a control plane.",
         "Resources: one proxy per pod."],
        "one pod: only that pod's calls are affected",
        Schematic((_EDGE,) + _shop(True), _INGRESS[:1] + _SIDECAR_IN + _via_sidecars(_APP_CALLS),
                  nodes=_NODES)),
    StageInfo(
        5, "control-plane", "Sidecar proxy + control plane", "Sidecar代理/控制平面",
        "The shape of most service meshes today: sidecars are injected automatically and a control "
        "plane pushes their config over xDS, so one policy object (VirtualService, DestinationRule, "
        "PeerAuthentication, AuthorizationPolicy) changes every proxy at once.",
        "a sidecar proxy inside every pod",
        "a control plane pushing xDS; policy as CRDs",
        ["VirtualService", "DestinationRule", "PeerAuthentication", "AuthorizationPolicy",
         "Deployment (injected sidecars)"],
        ["Sidecar injection lightens the burden of deploying proxies (seed: 减轻了部署的负担).",
         "Fine-grained, per-service traffic control and authorization, mTLS between every pod.",
         "One object changes every sidecar in under a second; services can move in one at a time "
         "(brownfield, 渐进式采纳).",
         "A proxy for every service costs a lot of resources, so each proxy must be kept lean "
         "(seed: 为每个服务都注入一个代理会占用很多资源).",
         "The control plane is new infrastructure to run; if it fails, proxies keep their last config."],
        "one pod; a control-plane outage freezes config but traffic keeps flowing",
        Schematic((_proxy("ingress-gateway", "edge", "node-1"), _proxy("istiod", "control-plane", "node-3"))
                  + _shop(True),
                  (("client", "ingress-gateway"), ("ingress-gateway", "frontend/sidecar", "mTLS"),
                   _SIDECAR_IN[1]) + _via_sidecars(_APP_CALLS, "mTLS"),
                  (("istiod", "ingress-gateway"),) + tuple(("istiod", f"{n}/sidecar") for n in _SHOP),
                  nodes=_NODES)),
    StageInfo(
        6, "multicluster", "Multi-cluster", "多集群部署和扩展",
        "Sidecars in two clusters, joined by east-west gateways; control planes that see both "
        "clusters' endpoints, so calls cross clusters transparently and fail over by locality.",
        "sidecars in every pod of two clusters, plus east-west gateways",
        "control planes that see both clusters",
        ["two clusters", "Gateway (east-west)", "ServiceEntry / cross-cluster endpoints",
         "DestinationRule (locality failover)"],
        ["Manages several clusters and services outside the mesh (seed: 网格扩展和多集群配置).",
         "Survives the loss of a whole cluster's copy of a service by failing over to the other.",
         "Cross-cluster calls pay a gateway hop and network latency.",
         "More to run and trust: gateways, shared root of trust, control planes reading both clusters."],
        "one cluster's copy of a service: traffic fails over to the other cluster",
        _stage6()),
]

_BY_KEY = {s.key: s for s in STAGES}


def get(stage: int | str | StageInfo) -> StageInfo:
    """A stage by number (3), numeric string ("3") or key ("per-node")."""
    if isinstance(stage, StageInfo):
        return stage
    text = str(stage).strip().lower()
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(STAGES):
        return STAGES[int(text)]
    if text in _BY_KEY:
        return _BY_KEY[text]
    keys = ", ".join(f"{s.number} {s.key}" for s in STAGES)
    raise KeyError(f"no stage {stage!r}; stages are: {keys}")


def keys() -> list[str]:
    """The stage keys in order."""
    return [s.key for s in STAGES]
