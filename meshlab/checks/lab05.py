"""Checks of lab 05 (sidecar proxy + control plane): move the shop into the mesh one service at a
time under load (brownfield), turn on STRICT mTLS with the edge still let in, allow only the callers
each service needs, a 90/10 canary with a header route, and a control plane that goes away.

As in labs 01-04, each check is a probe (talks to the lab: pods, `lab.call`, real traffic, the
control plane's proxy status) and a pure `judge_*` function that the unit tests feed with fakes.
Traffic splits are judged with an exact binomial test (`checks.stats.split_matches`) on
`required_samples` requests, so a correct answer fails less than once in a million runs.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from typing import Any, Iterable, Mapping

from ..controlplane.names import ROOT_NAMESPACE
from ..stages import shop
from .base import CheckResult, exercise
from .quiz import after as quiz_after
from .stats import required_samples, split_matches

LAB = "05-control-plane-lab"
SIDECAR = "istio-proxy"  # the injected container's name, as Istio names it
SYNC_S = 10.0  # how long a check waits for every sidecar to ACK what was applied a moment ago
MIN_LOAD = 50  # requests the background load must carry across a change
EDGE_REQUESTS = 100
NAMESPACE = "default"
TRUST_DOMAIN = "cluster.local"
REFUSED = (0, 503)  # what a client without a certificate gets from a STRICT sidecar: no answer, or 503
CORE = "frontend"  # the shop's core service: every customer request passes it


def services() -> list[str]:
    """The shop's services, callers first: frontend, catalog, reviews, ratings."""
    return list(dict.fromkeys(s[0] for s in shop.SHOP))


def callees() -> dict[str, set[str]]:
    """service -> the services it calls (from the shop's shape)."""
    out: dict[str, set[str]] = {s: set() for s in services()}
    for name, _, _, upstreams in shop.SHOP:
        out[name].update(upstreams)
    return out


def deployments(service: str) -> list[str]:
    """The Deployments of one service: `reviews` -> reviews-v1, reviews-v2, reviews-v3."""
    return [f"{name}-{version}" for name, version, _, _ in shop.SHOP if name == service]


def principal(service: str, namespace: str = NAMESPACE) -> str:
    """A service's identity as AuthorizationPolicy principals write it: cluster.local/ns/default/sa/shop-reviews."""
    return f"{TRUST_DOMAIN}/ns/{namespace}/sa/shop-{service}"


def injected(pod) -> bool:
    """True when a pod runs an injected sidecar (an `istio-proxy` container)."""
    return any(getattr(c, "name", "") == SIDECAR for c in getattr(pod, "containers", None) or [])


def app_pods(pods) -> list:
    """The shop's pods (not the edge's, not the control plane's), but those on their way out (Terminating,
    as `kubectl get pods` shows an old pod of a rollout for a moment)."""
    known = set(services())
    return [p for p in pods or [] if (getattr(p, "labels", None) or {}).get("app") in known
            and getattr(p, "phase", "Running") != "Terminating"]


def shop_namespace(pods) -> str:
    """Where the shop's pods run (default when there are none)."""
    found = sorted({str(getattr(p, "namespace", "") or "") for p in pods or []} - {""})
    return found[0] if len(found) == 1 else NAMESPACE


def wait_synced(lab, seconds: float | None = None):
    """Wait until every sidecar ACKed its current config (SYNCED); returns the last proxy-status table
    (None when the control plane does not answer)."""
    deadline = time.monotonic() + (SYNC_S if seconds is None else seconds)
    while True:
        try:
            table = lab.proxy_status()
        except Exception:
            table = None
        if table is not None and all(getattr(p, "state", "") == "SYNCED" for p in table):
            return table
        if time.monotonic() >= deadline:
            return table
        time.sleep(0.1)


def not_synced(table) -> list[str]:
    """'pod (STATE: error)' for every sidecar of a proxy-status table that is not SYNCED."""
    return [f"{p.pod} ({p.state}{': ' + p.error if getattr(p, 'error', '') else ''})"
            for p in table or [] if getattr(p, "state", "") != "SYNCED"]


# ---- reading the traces -------------------------------------------------------------------------------

def chain(hops: list[dict]) -> list[tuple[dict, bool, str]]:
    """(app hop, in the mesh?, verified caller identity) for each app of one traced path, in order.
    An app is in the mesh when its own sidecar stamped the path (a sidecar hop named after its pod);
    the identity is the `peer` its sidecar saw on the way in ('' for plaintext or no sidecar)."""
    out = []
    for i, hop in enumerate(hops):
        if hop.get("kind") != "app":
            continue
        pod = hop.get("pod") or hop.get("name")
        mine = [h for h in hops if h.get("kind") == "proxy" and h.get("role") == "sidecar" and h.get("name") == pod]
        inbound = [h for h in hops[:i] if h in mine and h.get("dir") == "in"]
        out.append((hop, bool(mine), str(inbound[-1].get("peer") or "") if inbound else ""))
    return out


def mesh_states(result) -> tuple[Counter, int, set[tuple[str, str, bool]]]:
    """(service -> requests' paths that passed it outside the mesh, paths with every app in the mesh,
    (caller, callee, caller in the mesh?) for each call seen with one side in the mesh and the other not yet)
    in a traffic result's traces."""
    outside: Counter = Counter()
    every = 0
    mixed: set[tuple[str, str, bool]] = set()
    for path in getattr(result, "paths", None) or []:
        apps = chain(path.get("hops") or [])
        if not apps:
            continue
        count = int(path.get("count") or 1)
        for hop, meshed, _ in apps:
            if not meshed:
                outside[hop.get("service", "?")] += count
        every += count if all(m for _, m, _ in apps) else 0
        for (caller, c_in, _), (callee, e_in, _) in zip(apps, apps[1:]):
            if c_in != e_in:
                mixed.add((caller.get("service", "?"), callee.get("service", "?"), c_in))
    return outside, every, mixed


def plaintext_calls(result) -> set[str]:
    """'caller->callee' of east-west calls whose callee's sidecar saw no verified caller identity."""
    found = set()
    for path in getattr(result, "paths", None) or []:
        apps = chain(path.get("hops") or [])
        for (caller, _, _), (callee, e_in, peer) in zip(apps, apps[1:]):
            if e_in and not peer.startswith("spiffe://"):
                found.add(f"{caller.get('service', '?')}->{callee.get('service', '?')}")
    return found


# ---- what the learner stored ----------------------------------------------------------------------------

def stored(lab, kind: str) -> list[dict] | None:
    """The objects of one kind the lab stores, as applied (None when the backend cannot list them)."""
    try:
        return [dict(d) for d in lab.backend.objects(kind) if isinstance(d, Mapping)]
    except Exception:
        return None


def _name(doc: Mapping) -> str:
    return str((doc.get("metadata") or {}).get("name") or "?")


def _namespace(doc: Mapping, default: str = NAMESPACE) -> str:
    """Where an object lives (no namespace: where the lab runs the shop)."""
    return str((doc.get("metadata") or {}).get("namespace") or default)


def _match_labels(doc: Mapping) -> dict:
    spec = doc.get("spec") if isinstance(doc.get("spec"), Mapping) else {}
    selector = spec.get("selector") if isinstance(spec.get("selector"), Mapping) else {}
    labels = selector.get("matchLabels")
    return dict(labels) if isinstance(labels, Mapping) else {}


def selects(doc: Mapping, service: str, namespace: str = NAMESPACE) -> bool:
    """Does a PeerAuthentication or AuthorizationPolicy apply to pods of `service` (in `namespace`), as Istio
    scopes it: a policy of the pods' namespace, with no selector or one that matches a Deployment's labels
    (app, version); from the root namespace (mesh-system), every namespace's: an AuthorizationPolicy always, a
    PeerAuthentication only with no selector."""
    where, labels = _namespace(doc, namespace), _match_labels(doc)
    mesh_wide = where == ROOT_NAMESPACE and (doc.get("kind") == "AuthorizationPolicy" or not labels)
    if where != namespace and not mesh_wide:
        return False
    pods = [{"app": name, "version": version} for name, version, _, _ in shop.SHOP if name == service]
    return any(all(str(pod.get(k)) == str(v) for k, v in labels.items()) for pod in pods)


def _described(doc: Mapping, what: str = "", namespace: str = NAMESPACE) -> str:
    """'default in namespace meshlab-system (STRICT, no selector)', 'frontend in namespace default (PERMISSIVE,
    app: frontend)'."""
    labels = ", ".join(f"{k}: {v}" for k, v in _match_labels(doc).items()) or "no selector"
    return f"{_name(doc)} in namespace {_namespace(doc, namespace)} ({', '.join(x for x in (what, labels) if x)})"


# ---- exercise 1: brownfield, one service at a time, under load ----------------------------------------

MIGRATION_EXPECTED = (f"every service moved into the mesh one at a time, the non-core ones first and {CORE} (the "
                      "core: every customer request passes it) last, under load with no failed request; every app "
                      f"pod then runs an {SIDECAR} sidecar that the control plane keeps SYNCED")


def _words(text: str) -> list[str]:
    """The names in one string: 'ratings, reviews catalog' -> ['ratings', 'reviews', 'catalog']."""
    return re.findall(r"[A-Za-z0-9_.-]+", text)


def read_order(order: Any) -> tuple[list[str], list[str]]:
    """(service names, items that name no service) from the learner's `order`."""
    if order is None or isinstance(order, (str, bytes, Mapping)) or not isinstance(order, Iterable):
        order = [order] if isinstance(order, str) and order.strip() else []
    known, names, unknown = set(services()), [], []
    for item in order:
        text = str(item).strip().lower()
        (names.append(text) if text in known else unknown.append(str(item)))
    return names, unknown


def not_a_list(order: Any) -> str | None:
    """Why `order` is not a list of names (one string holding several, or an item that does), or None."""
    if isinstance(order, str) and len(_words(order)) > 1:
        return (f"order must be a list of names, one string per service, not one string: order = "
                f"{[w.lower() for w in _words(order)]!r}, not order = {order!r}")
    if isinstance(order, (list, tuple)):
        joined = [item for item in order if isinstance(item, str) and len(_words(item)) > 1]
        if joined:
            flat = [w.lower() for item in order for w in (_words(item) if isinstance(item, str) else [str(item)])]
            return (f"each service is its own item of the list: order = {flat!r}, not one string holding several "
                    f"names ({', '.join(repr(j) for j in joined)})")
    return None


def order_problem(order: Any) -> str | None:
    """Why an order is not one service at a time with the core service, frontend, last (None when it is).
    Which of catalog, reviews and ratings goes first is free: a sidecar never needs its peers in the mesh."""
    shape = not_a_list(order)
    if shape:
        return shape
    names, unknown = read_order(order)
    if unknown:
        return f"these name no service of the shop: {', '.join(unknown)} (the shop: {', '.join(services())})"
    if not names:
        return "nothing in `order` yet: list the services in the order you move them into the mesh"
    repeated = sorted({n for n in names if names.count(n) > 1})
    missing = [s for s in services() if s not in names]
    if repeated or missing:
        return (f"order = {names}: name each service once" + (f"; twice: {', '.join(repeated)}" if repeated else "")
                + (f"; missing: {', '.join(missing)}" if missing else ""))
    if names[-1] != CORE:
        later = names[names.index(CORE) + 1:]
        others = [s for s in services() if s != CORE]
        return (f"order = {names}: {CORE} moves before {', '.join(later)}. {CORE} is the shop's core service: every "
                "customer request passes it, so a mistake while it moves (a pod that does not start, a sidecar "
                "without config) fails every request, while one in " + ", ".join(others[:-1]) + f" or {others[-1]} "
                f"costs only the calls that reach that service. Start with what is not core (渐进式采纳, "
                f"从非核心系统开始改造) and move {CORE} last, once the others work in the mesh. It is a matter of "
                "risk, not of a dependency: a sidecar never needs its peers in the mesh (PERMISSIVE takes mTLS and "
                "plaintext alike), so the others may go in any order")
    return None


def against_order(mixed: Iterable[tuple[str, str, bool]], names: list[str]) -> list[str]:
    """Calls of the traces that contradict `order`: a service in the mesh next to one that `order` moves first but
    that was not in it yet."""
    rank = {name: i for i, name in enumerate(names)}
    out = []
    for caller, callee, caller_in in sorted(mixed):
        inside, outside = (caller, callee) if caller_in else (callee, caller)
        if inside in rank and outside in rank and rank[inside] > rank[outside]:
            out.append(f"{caller} ({'in the mesh' if caller_in else 'not yet'}) -> {callee} "
                       f"({'not yet' if caller_in else 'in the mesh'})")
    return out


def judge_migration(order: Any, pods, during, table=()) -> CheckResult:
    """Pass when `order` moves frontend last, every app pod is injected and SYNCED, and the load that ran
    across the whole migration had no failed request and saw both ends of it in its traces.
    `table`: the proxy-status table (None: the control plane did not answer)."""
    problem = order_problem(order)
    if problem:
        return CheckResult(False, MIGRATION_EXPECTED, problem)
    if during is None or not hasattr(during, "requests"):
        return CheckResult(False, MIGRATION_EXPECTED, "no load result: run the migration cell (it sets `during`)")
    shop_pods = app_pods(pods)
    if not shop_pods:
        return CheckResult(False, MIGRATION_EXPECTED, "no pod of the shop runs: is the lab up at stage 5?")
    outside = sorted(p.name for p in shop_pods if not injected(p))
    if outside:
        return CheckResult(False, MIGRATION_EXPECTED, f"still outside the mesh (no {SIDECAR} container): "
                           f"{', '.join(outside)}")
    if table is None:
        return CheckResult(False, MIGRATION_EXPECTED, "the control plane does not answer (lab.proxy_status()): "
                           "is it running? (lab.restore() brings back what was killed)")
    stale = not_synced(table)
    if stale:
        return CheckResult(False, MIGRATION_EXPECTED, f"sidecars the control plane has not synced: {', '.join(stale)}")
    if during.requests < MIN_LOAD:
        return CheckResult(False, MIGRATION_EXPECTED, f"only {during.requests} requests ran under load: keep the load "
                           f"running across the whole migration (at least {MIN_LOAD})")
    if during.failed:
        first = f": {during.errors[0]}" if getattr(during, "errors", None) else ""
        return CheckResult(False, MIGRATION_EXPECTED, f"{during.failed} of {during.requests} requests failed during "
                           f"the migration{first}",
                           hints=["Move a service by rolling its Deployments (lab.restart), which starts the new, "
                                  "injected pods before the old ones go; do not delete pods or Deployments."])
    outside, every, mixed = mesh_states(during)
    names, _ = read_order(order)
    line = f"{during.requests} requests under load, 0 failed"
    if not outside.get(names[0]):
        return CheckResult(False, MIGRATION_EXPECTED, f"{line}, but no request was traced through {names[0]} before "
                           "it joined the mesh: the load started after the migration did. Start over with "
                           "lab.up(stage='control-plane', injection=False) and run the migration cell once.")
    if not every:
        return CheckResult(False, MIGRATION_EXPECTED, f"{line}, but no request was traced with every service in the "
                           "mesh: the load stopped before the last service joined")
    against = against_order(mixed, names)
    if against:
        return CheckResult(False, MIGRATION_EXPECTED, f"{line}, but the traces show services in the mesh before one "
                           f"that `order` ({' -> '.join(names)}) moves first: {', '.join(against)}. Did the cell move "
                           "them in the order of `order`?")
    return CheckResult(True, MIGRATION_EXPECTED, f"{line}; moved {' -> '.join(names)}; traced: {outside[names[0]]} "
                       f"calls to {names[0]} before it joined, {every} requests with every service in the mesh; "
                       f"{len(shop_pods)} pods injected and SYNCED")


@exercise(LAB, "brownfield-migration", hints=[
    "A service is in the mesh when its pods were created with a sidecar: injection happens when a pod is "
    "created, so ask for it (the pod label sidecar.istio.io/inject: 'true') and roll the Deployments. `order` "
    "lists the services; the seed says to start from what is not core (从非核心系统开始改造).",
    "The core service is frontend: every customer request passes it, so it moves last; catalog, reviews and "
    "ratings may go in any order (a sidecar does not need its peers in the mesh). In join_mesh, take each "
    "Deployment of the service (its name is in deployments(service)) from `brownfield`, add the "
    "label to spec.template.metadata.labels and lab.apply it: a changed pod template rolls the Deployment.",
    "order = ['ratings', 'reviews', 'catalog', 'frontend'] (or any order with frontend last); "
    "join_mesh(service): for doc in brownfield: if doc['kind'] == 'Deployment' and doc['metadata']['name'] in "
    "deployments(service): "
    "doc['spec']['template']['metadata']['labels']['sidecar.istio.io/inject'] = 'true'; "
    "lab.apply(manifests.dump([doc])). (Or label the namespace istio-injection=enabled once and "
    "lab.restart(f'deployment/{name}') each one.) Start over by running the set-up cell again.",
])
def brownfield_migration(lab, order, during) -> CheckResult:
    """The learner's order, the lab's pods and proxy status now, and the load that ran across the migration."""
    problem = order_problem(order)
    if problem or during is None:
        return judge_migration(order, [], during)
    return judge_migration(order, lab.pods(), during, wait_synced(lab))


# ---- exercise 2: STRICT mTLS, the edge still let in -----------------------------------------------------

STRICT_EXPECTED = ("STRICT mTLS for the shop: a client outside the mesh gets no answer from catalog, reviews and "
                   "ratings; frontend still takes plaintext from the edge (PERMISSIVE), so every request through "
                   "the edge succeeds; every east-west call carries a verified SPIFFE identity")


def _mode(doc: Mapping) -> str:
    spec = doc.get("spec") if isinstance(doc.get("spec"), Mapping) else {}
    mtls = spec.get("mtls") if isinstance(spec.get("mtls"), Mapping) else {}
    return str(mtls.get("mode") or "UNSET")


def peer_auth_note(docs: Iterable[Mapping] | None, namespace: str = NAMESPACE) -> str:
    """What the stored PeerAuthentications say about the shop: none; or each with its namespace, and why those
    of another namespace do not apply to the shop ('' when the backend cannot list them)."""
    if docs is None:
        return ""
    docs = list(docs)
    if not docs:
        return "no PeerAuthentication is stored: apply one with mtls: {mode: STRICT}"
    listed = "; ".join(_described(d, _mode(d), namespace) for d in docs)
    elsewhere = [d for d in docs if not any(selects(d, s, namespace) for s in services())]
    if not elsewhere:
        return f"stored PeerAuthentications: {listed}"
    where = sorted({_namespace(d, namespace) for d in elsewhere})
    return (f"stored PeerAuthentications: {listed}. The shop runs in the namespace {namespace}, but "
            f"{', '.join(_name(d) for d in elsewhere)} {'is' if len(elsewhere) == 1 else 'are'} in "
            f"{' and '.join(where)}: a PeerAuthentication applies only to the workloads of its own namespace (to the "
            f"whole mesh only from the root namespace, {ROOT_NAMESPACE}, with no selector). Leave `namespace` out "
            f"(or write namespace: {namespace}) and apply it again")


def judge_strict(outside: Mapping[str, Any], edge, plaintext: Iterable[str] = (), meshed: Iterable[str] = (),
                 peer_auths: Iterable[Mapping] | None = None, namespace: str = NAMESPACE) -> CheckResult:
    """`outside`: service -> status of a call from outside the mesh (0 = no answer); `edge`: traffic
    through the edge; `plaintext`: east-west calls seen without a peer identity; `meshed`: services
    whose pods all run a sidecar; `peer_auths`: the stored PeerAuthentications (None: not known), for the
    messages only; `namespace`: where the shop runs."""
    meshed = set(meshed)
    if edge is None or not getattr(edge, "requests", 0):
        return CheckResult(False, STRICT_EXPECTED, "no traffic could be sent through the edge")
    statuses = ", ".join(f"{s}: {_status(c)}" for s, c in outside.items())
    if edge.failed:
        first = f" ({edge.errors[0]})" if getattr(edge, "errors", None) else ""
        return CheckResult(False, STRICT_EXPECTED, f"{edge.failed} of {edge.requests} requests through the edge "
                           f"failed{first}; from outside the mesh: {statuses}. The edge (Ingress) is not in the mesh "
                           "and has no certificate: STRICT on frontend shuts it out too.",
                           hints=["Add a second PeerAuthentication with `selector: {matchLabels: {app: frontend}}` "
                                  "and `mtls: {mode: PERMISSIVE}`: a workload's policy wins over the namespace's."])
    answered = [s for s in services() if s != "frontend" and s in outside and _status(outside[s]) not in REFUSED]
    if answered:
        loose = [s for s in answered if s not in meshed]
        why = (f" ({', '.join(loose)} {'has' if len(loose) == 1 else 'have'} pods without a sidecar: nothing there "
               "can refuse plaintext; finish exercise 1 first)" if loose else "")
        denied = [s for s in answered if _status(outside[s]) == 403]
        if denied and not loose:
            why = (" (403 is an AuthorizationPolicy's answer, after the connection was accepted; STRICT refuses the "
                   "plaintext connection itself)")
        if not loose:
            note = peer_auth_note(peer_auths, namespace)
            why += f"\n{note}" if note else ""
        return CheckResult(False, STRICT_EXPECTED, f"from outside the mesh: {statuses}: {', '.join(answered)} still "
                           f"answered a client with no certificate{why}")
    if "frontend" in outside and _status(outside["frontend"]) in REFUSED:
        return CheckResult(False, STRICT_EXPECTED, f"from outside the mesh: {statuses}: frontend refused plaintext, "
                           "so the edge cannot reach it")
    plain = sorted(set(plaintext))
    if plain:
        return CheckResult(False, STRICT_EXPECTED, f"east-west calls without a verified identity: {', '.join(plain)}")
    return CheckResult(True, STRICT_EXPECTED, f"from outside the mesh: {statuses}; {edge.requests} requests through "
                       "the edge, 0 failed; every east-west call mutually authenticated")


def _status(call: Any) -> int:
    return int(getattr(call, "status", call) or 0)


@exercise(LAB, "strict-mtls", hints=[
    "A PeerAuthentication sets the mTLS mode of the sidecars it selects: with no selector, for every workload of "
    "its namespace; with `selector.matchLabels`, for those pods only, and a workload's policy wins.",
    "Two objects: one PeerAuthentication named `default` with `mtls: {mode: STRICT}` and no selector, one for "
    "`app: frontend` with mode PERMISSIVE, because the edge calls frontend without a certificate.",
    "kind: PeerAuthentication, apiVersion: security.istio.io/v1, metadata: {name: default}, spec: {mtls: {mode: "
    "STRICT}}; then a second one, metadata: {name: frontend}, spec: {selector: {matchLabels: {app: frontend}}, "
    "mtls: {mode: PERMISSIVE}}. Separate the two documents with ---.",
])
def strict_mtls(lab) -> CheckResult:
    """Calls from outside the mesh to every service, traffic through the edge, and its traces."""
    wait_synced(lab)
    outside = {s: lab.call(None, f"http://{s}:{shop.APP_PORT}/") for s in services()}
    edge = lab.traffic(n=EDGE_REQUESTS, concurrency=4, progress=False)
    shop_pods = app_pods(lab.pods())
    meshed = {s for s in services() if all(injected(p) for p in shop_pods if p.service == s)}
    return judge_strict(outside, edge, plaintext_calls(edge), meshed, stored(lab, "PeerAuthentication"),
                        shop_namespace(shop_pods))


# ---- exercise 3: only the callers each service needs ---------------------------------------------------------

ALLOWED = (("frontend", "reviews"), ("reviews", "ratings"))
DENIED = (("catalog", "reviews"), ("ratings", "reviews"), ("frontend", "ratings"), ("catalog", "ratings"),
          (None, "reviews"), (None, "ratings"))
CALLERS_EXPECTED = ("only frontend may call reviews and only reviews may call ratings: those calls answer 200, "
                    "every other caller gets 403 (from outside the mesh: no answer), and every request through "
                    "the edge still succeeds")


def _who(source: str | None) -> str:
    return source or "outside"


def _allows(doc: Mapping) -> bool:
    """An ALLOW AuthorizationPolicy (no action: ALLOW)."""
    spec = doc.get("spec") if isinstance(doc.get("spec"), Mapping) else {}
    return str(spec.get("action") or "ALLOW").upper() == "ALLOW"


def _wide(doc: Mapping, namespace: str) -> str:
    """Where a policy with no selector applies ('' when it has a selector or lives elsewhere)."""
    if _match_labels(doc):
        return ""
    where = _namespace(doc, namespace)
    return ("every workload in the namespace" if where == namespace else
            f"every workload of the mesh (it is in the root namespace, {ROOT_NAMESPACE})" if where == ROOT_NAMESPACE
            else "")


def let_in_note(let_in: list[tuple], calls: Mapping[tuple, Any], policies: Iterable[Mapping] | None,
                namespace: str = NAMESPACE) -> str:
    """Why callers got in: a policy with no selector, a workload no ALLOW policy selects (it lets every caller in),
    or rules that match too much. From the stored policies when known, else from the calls themselves."""
    order = services()
    targets = sorted({t for _, t in let_in}, key=order.index)
    got_in = {t: [_who(s) for s, tt in let_in if tt == t] for t in targets}
    notes = []
    if policies is not None:
        allow = [d for d in policies if _allows(d)]
        for doc in allow:
            wide = _wide(doc, namespace)
            if wide:
                notes.append(f"{_name(doc)} has no selector: it applies to {wide}, reviews and ratings alike (and "
                             "frontend and catalog too), so each of them lets in every caller it allows. Give each "
                             "policy a selector: selector: {matchLabels: {app: ...}}")
        for t in targets:
            if not any(selects(d, t, namespace) for d in allow):
                notes.append(f"{t} has no ALLOW policy, so every caller is let in: add one that selects app: {t}")
        if not notes:
            notes = [f"an ALLOW policy selects {t}, yet {', '.join(got_in[t])} got in: its rules match "
                     f"{'them' if len(got_in[t]) > 1 else 'it'} (a rule with source.namespaces, or a second "
                     f"principal, lets in more); name only the one caller allowed to call {t}" for t in targets]
    else:
        for t in targets:
            everyone = [k for k in ALLOWED + DENIED if k[1] == t and k[0] is not None]
            if all(200 <= _status(calls[k]) < 300 for k in everyone):
                notes.append(f"{t} let every caller in, as a workload that no ALLOW policy selects does: is there "
                             f"one with selector: {{matchLabels: {{app: {t}}}}}?")
            else:
                notes.append(f"{t} let in {', '.join(got_in[t])}: the rules of the ALLOW policy that selects it match "
                             f"{'them' if len(got_in[t]) > 1 else 'it'}; name only the one caller allowed to call {t}")
    return "\n" + "\n".join(notes)


def judge_callers(calls: Mapping[tuple, Any], edge, meshed: Iterable[str] = (),
                  policies: Iterable[Mapping] | None = None, namespace: str = NAMESPACE) -> CheckResult:
    """`calls`: (source or None, target) -> status of a call (as lab.call answered); `edge`: traffic
    through the edge afterwards; `meshed`: services whose pods all run a sidecar; `policies`: the stored
    AuthorizationPolicies (None: not known), for the messages only; `namespace`: where the shop runs."""
    meshed = set(meshed)
    policies = None if policies is None else list(policies)
    table = "\n".join(f"{_who(s)} -> {t}: {_status(c) or 'no answer'} (want "
                      f"{'200' if (s, t) in ALLOWED else '403' if s else 'no answer or 403'})"
                      for (s, t), c in calls.items())
    missing = [k for k in ALLOWED + DENIED if k not in calls]
    if missing:
        return CheckResult(False, CALLERS_EXPECTED, f"calls not made: {', '.join(f'{_who(s)} -> {t}' for s, t in missing)}")
    loose = sorted(set(services()) - meshed)
    let_in = [(s, t) for s, t in DENIED if 200 <= _status(calls[(s, t)]) < 300]
    if let_in:
        why = (f"\n{', '.join(loose)}: not every pod runs a sidecar, and only a sidecar enforces a policy "
               "(exercise 1)" if loose else let_in_note(let_in, calls, policies, namespace))
        return CheckResult(False, CALLERS_EXPECTED, f"{table}\nlet in: "
                           f"{', '.join(f'{_who(s)} -> {t}' for s, t in let_in)}{why}")
    shut = [(s, t) for s, t in ALLOWED if not 200 <= _status(calls[(s, t)]) < 300]
    if shut:
        denied = [k for k in shut if _status(calls[k]) == 403]
        why = ("\nthe policy denied a caller it should allow: principals are written without spiffe:// "
               f"({principal('frontend')}), with the ServiceAccount the caller runs as (shop-frontend, not frontend)"
               if denied else "\nno answer: is every pod ready and in the mesh? (lab.pods(), lab.proxy_status())")
        return CheckResult(False, CALLERS_EXPECTED, f"{table}\nshut out: "
                           f"{', '.join(f'{_who(s)} -> {t}' for s, t in shut)}{why}")
    odd = [(s, t) for s, t in DENIED if s is not None and _status(calls[(s, t)]) != 403]
    if odd:
        return CheckResult(False, CALLERS_EXPECTED, f"{table}\nnot a 403 from a policy: "
                           f"{', '.join(f'{s} -> {t}' for s, t in odd)}: the call failed for another reason "
                           "(see lab.proxy_status() and the call's error)")
    if edge is None or not getattr(edge, "requests", 0):
        return CheckResult(False, CALLERS_EXPECTED, f"{table}\nno traffic could be sent through the edge")
    if edge.failed:
        first = f" ({edge.errors[0]})" if getattr(edge, "errors", None) else ""
        beyond = [d for d in policies or [] if _allows(d)
                  and any(selects(d, s, namespace) for s in ("frontend", "catalog"))]
        reach = {id(d): _wide(d, namespace) or ("frontend" if selects(d, "frontend", namespace) else "catalog")
                 for d in beyond}
        which = ("; ".join(f"{_described(d, '', namespace)} applies to {reach[id(d)]}" for d in beyond) if beyond
                 else "a policy selects more than reviews and ratings (one with no selector applies to every "
                 "workload of the namespace, frontend and catalog too)")
        return CheckResult(False, CALLERS_EXPECTED, f"{table}\n{edge.failed} of {edge.requests} requests through the "
                           f"edge failed{first}: {which}. The edge calls frontend with no identity, and frontend calls "
                           "catalog: an ALLOW policy on either shuts out the calls it does not name")
    return CheckResult(True, CALLERS_EXPECTED, f"{table}\n{edge.requests} requests through the edge, 0 failed")


@exercise(LAB, "who-may-call", hints=[
    "An AuthorizationPolicy with `action: ALLOW` on a workload (selector.matchLabels) lets in only the requests "
    "its rules match; the sidecar checks the caller's identity, proven by its mTLS certificate.",
    "Two policies: one selects app: reviews and allows the principal of frontend's ServiceAccount, one selects "
    "app: ratings and allows the principal of reviews'. Identities are per ServiceAccount: shop-frontend, "
    "shop-reviews.",
    f"kind: AuthorizationPolicy, apiVersion: security.istio.io/v1, metadata: {{name: reviews-callers}}, spec: "
    f"{{selector: {{matchLabels: {{app: reviews}}}}, action: ALLOW, rules: [{{from: [{{source: {{principals: "
    f"['{principal('frontend')}']}}}}]}}]}}; the same for ratings with {principal('reviews')}.",
])
def who_may_call(lab) -> CheckResult:
    """Calls made from inside pods of each app (and from outside the mesh), then traffic through the edge."""
    wait_synced(lab)
    calls = {(s, t): lab.call(s, f"http://{t}:{shop.APP_PORT}/") for s, t in ALLOWED + DENIED}
    edge = lab.traffic(n=EDGE_REQUESTS, concurrency=4, progress=False)
    shop_pods = app_pods(lab.pods())
    meshed = {s for s in services() if all(injected(p) for p in shop_pods if p.service == s)}
    return judge_callers(calls, edge, meshed, stored(lab, "AuthorizationPolicy"), shop_namespace(shop_pods))


# ---- exercise 4: a canary, and a header route ------------------------------------------------------------

CANARY = {"v1": 90, "v2": 0, "v3": 10}
JASON = {"v3": 1}
JASON_HEADERS = {"end-user": "jason"}
JASON_REQUESTS = max(100, required_samples(JASON))
CANARY_EXPECTED = ("requests with end-user: jason all reach reviews v3; the others split v1/v2/v3 90/0/10 "
                   "(exact binomial test on enough requests to tell a split 10 points off); no request fails")


def _versions(result) -> Counter:
    return Counter(dict((getattr(result, "versions", None) or {}).get("reviews") or {}))


def _split(counts: Mapping[str, int]) -> str:
    total = sum(counts.values()) or 1
    return ", ".join(f"{v} {n} ({100 * n / total:.0f}%)" for v, n in sorted(counts.items())) or "none"


def judge_canary(jason, everyone) -> CheckResult:
    """`jason`: traffic with the header; `everyone`: traffic without it (None when not sent)."""
    if jason is None or not getattr(jason, "requests", 0):
        return CheckResult(False, CANARY_EXPECTED, "no traffic could be sent through the edge")
    if jason.failed:
        first = f" ({jason.errors[0]})" if getattr(jason, "errors", None) else ""
        return CheckResult(False, CANARY_EXPECTED, f"{jason.failed} of {jason.requests} requests with end-user: jason "
                           f"failed{first}: does a DestinationRule define every subset the VirtualService names?")
    counts = _versions(jason)
    other = {v: n for v, n in counts.items() if v != "v3"}
    if other or not counts:
        return CheckResult(False, CANARY_EXPECTED, f"requests with end-user: jason reached reviews {_split(counts)}",
                           hints=["Rules are tried in order and the first that matches wins: the rule with the "
                                  "header `match` must come before the weighted rule that has no match."]
                           if counts.get("v1") and counts.get("v3") and not counts.get("v2") else [])
    if everyone is None or not getattr(everyone, "requests", 0):
        return CheckResult(False, CANARY_EXPECTED, f"jason: {_split(counts)}; no traffic without the header yet")
    if everyone.failed:
        first = f" ({everyone.errors[0]})" if getattr(everyone, "errors", None) else ""
        return CheckResult(False, CANARY_EXPECTED, f"{everyone.failed} of {everyone.requests} requests without the "
                           f"header failed{first}")
    ok, _, why = split_matches(_versions(everyone), CANARY)
    return CheckResult(ok, CANARY_EXPECTED, f"jason: {_split(counts)}\neveryone else: {why}")


@exercise(LAB, "canary-v3", hints=[
    "Two objects: a DestinationRule for host reviews that names the subsets (by the pods' `version` label), and a "
    "VirtualService for reviews with two http rules: first the one with a header match, then the weighted one.",
    "The first rule: `match: [{headers: {end-user: {exact: jason}}}]` with one destination, subset v3. The second "
    "rule has no match (so it takes everything else) and two destinations: subset v1 weight 90, subset v3 weight 10.",
    "DestinationRule reviews: host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: "
    "{version: v2}}, {name: v3, labels: {version: v3}}]. VirtualService reviews: hosts: [reviews], http: [{match: "
    "[{headers: {end-user: {exact: jason}}}], route: [{destination: {host: reviews, subset: v3}}]}, {route: "
    "[{destination: {host: reviews, subset: v1}, weight: 90}, {destination: {host: reviews, subset: v3}, "
    "weight: 10}]}].",
])
def canary_v3(lab) -> CheckResult:
    """Traffic with end-user: jason (all must be v3), then enough traffic without it to test 90/0/10."""
    wait_synced(lab)
    jason = lab.traffic(n=JASON_REQUESTS, concurrency=8, headers=JASON_HEADERS, progress=False)
    first = judge_canary(jason, None)
    if "no traffic without the header yet" not in first.received:
        return first
    everyone = lab.traffic(n=required_samples(CANARY), concurrency=8, progress=False)
    return judge_canary(jason, everyone)


# ---- exercise 5: the control plane goes away ---------------------------------------------------------------

QUIZ = {  # question -> (right letter, {letter: why it is wrong})
    "q1": ("b", {"a": "a sidecar does not ask the control plane per request: it routes with the config it holds",
                 "c": "the certificates the sidecars already hold stay valid until they expire; mTLS goes on",
                 "d": "nothing bypasses the sidecars: they are still the only way in and out of each pod"}),
    "q2": ("c", {"a": "the API server (here, the runtime) stores it: lab.apply does not need the control plane",
                 "b": "sidecars only talk to the control plane (xDS), never to the Kubernetes API",
                 "d": "nothing is lost: the control plane reads every stored object when it starts"}),
    "q3": ("b", {"a": "an injected sidecar has no config of its own: everything comes over xDS",
                 "c": "sidecars do not talk to each other; each gets its config from the control plane",
                 "d": "injection happens when the pod is created; the sidecar is there, waiting"}),
    "q4": ("a", {"b": "Envoy keeps the config it ACKed for as long as it runs: nothing times it out",
                 "c": "a sidecar never downgrades on its own: STRICT stays STRICT with or without the control plane",
                 "d": "the edge is not configured by the mesh's control plane here"}),
}
OUTAGE_EXPECTED = ("with the control plane down: every request still succeeds, and a VirtualService applied then "
                   "is not served (reviews v2 answers no more often than before it); once it is back, the change "
                   "reaches the sidecars (reviews all v2); and the quiz right")
OUTAGE_KEYS = ("while_down", "after_change", "after_restore")
MIN_OUTAGE_REQUESTS = 100
SERVED_ALPHA = 1e-6  # a change that was not served is called served less than once in a million runs


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def more_v2_p(before: Mapping[str, int], after: Mapping[str, int]) -> float:
    """How likely `after` has as many v2 answers as it has, or more, had reviews been routed as in `before`: the
    one-sided Fisher exact test on the two samples. 0 when `before` had no v2 at all and `after` has some: the
    routing in force gave v2 nothing (the canary of exercise 4 has no v2 destination), so a v2 answer was routed
    by something new."""
    b2, a2 = int(before.get("v2", 0)), int(after.get("v2", 0))
    nb, na = sum(before.values()), sum(after.values())
    if a2 == 0:
        return 1.0
    if b2 == 0:
        return 0.0
    total, v2 = nb + na, b2 + a2
    low = max(a2, v2 - nb)
    terms = [_log_choose(v2, k) + _log_choose(total - v2, na - k) - _log_choose(total, na)
             for k in range(low, min(v2, na) + 1)]
    return min(1.0, sum(math.exp(t) for t in terms))


def judge_outage(answers: Any, outage: Any) -> CheckResult:
    """`outage`: {'while_down', 'after_change', 'after_restore'}: traffic results of the experiment. The
    VirtualService applied while down sends every call to reviews to v2: `after_change` must show no more v2 than
    the routing measured in `while_down` gives (`more_v2_p`), `after_restore` nothing but v2."""
    if not isinstance(outage, Mapping) or not all(outage.get(k) is not None for k in OUTAGE_KEYS):
        got = sorted(k for k in OUTAGE_KEYS if isinstance(outage, Mapping) and outage.get(k) is not None)
        return CheckResult(False, OUTAGE_EXPECTED, "no outage measured yet: run the experiment so that `outage` holds "
                           f"{', '.join(OUTAGE_KEYS)} (it has: {', '.join(got) or 'nothing'})")
    lines = []
    for key in OUTAGE_KEYS:
        run = outage[key]
        if getattr(run, "requests", 0) < MIN_OUTAGE_REQUESTS:
            return CheckResult(False, OUTAGE_EXPECTED, f"{key}: {getattr(run, 'requests', 0)} requests; send at "
                               f"least {MIN_OUTAGE_REQUESTS} each time")
        lines.append(f"{key}: {run.ok}/{run.requests} ok, reviews {_split(_versions(run))}")
    text = "\n".join(lines)
    down, change, back = (outage[k] for k in OUTAGE_KEYS)
    if down.failed or change.failed:
        return CheckResult(False, OUTAGE_EXPECTED, f"{text}\nrequests failed while the control plane was down: did "
                           "you kill something else, or send traffic before the lab had settled?")
    before, after = _versions(down), _versions(change)
    if not before or not after:
        return CheckResult(False, OUTAGE_EXPECTED, f"{text}\nno answer from reviews was traced in "
                           f"{'while_down' if not before else 'after_change'}: send the traffic through the edge "
                           "(lab.traffic(n=200)), whose requests reach reviews")
    if set(before) == {"v2"}:
        return CheckResult(False, OUTAGE_EXPECTED, f"{text}\nreviews answered only from v2 already in while_down, "
                           "before ALL_TO_V2 was applied: that routing was in force before the control plane went "
                           "down (applied before lab.kill, or left from an earlier run), so the experiment cannot show "
                           "whether a change made during the outage is served. With the control plane up (lab.restore()"
                           "), route reviews as in exercise 4 again (lab.apply(canary_yaml)), then kill, measure, "
                           "apply ALL_TO_V2, measure, restore, measure")
    if more_v2_p(before, after) < SERVED_ALPHA:
        return CheckResult(False, OUTAGE_EXPECTED, f"{text}\nthe VirtualService was served: reviews v2 answered "
                           f"{after.get('v2', 0)} of {sum(after.values())} in after_change against "
                           f"{before.get('v2', 0)} of {sum(before.values())} in while_down, more than the routing in "
                           "force before the change can give. So the control plane was not down when ALL_TO_V2 was "
                           "applied (never killed, or already restored): kill it first with "
                           "lab.kill(pod=\"meshlab-controlplane\"), then apply with wait=0 and measure")
    if back.failed or set(_versions(back)) != {"v2"}:
        return CheckResult(False, OUTAGE_EXPECTED, f"{text}\nafter the control plane came back, reviews still "
                           "answered from other versions than v2: restore it (lab.restore()) and wait until every "
                           "sidecar is SYNCED again (wait_synced(lab)) before sending `after_restore`")
    return quiz_after(OUTAGE_EXPECTED, text, "experiment", answers, QUIZ)


@exercise(LAB, "control-plane-down", hints=[
    "Kill the control plane with lab.kill(pod='meshlab-controlplane'), send traffic, apply ALL_TO_V2 with wait=0 "
    "(no sidecar will ACK it while the control plane is down), send traffic again, then lab.restore(), "
    "wait_synced(lab, 30), and send traffic a third time. Keep the three results in `outage`.",
    "A sidecar holds the last config it ACKed and its certificate; the control plane only matters when something "
    "changes: a new object, a new pod, a certificate to renew.",
    "outage = {'while_down': ..., 'after_change': ..., 'after_restore': ...} (each lab.traffic(n=200)). "
    "Quiz: q1 b (traffic flows on the last config), q2 c (stored, pushed when it is back), q3 b (the new pod "
    "waits, not ready), q4 a (a certificate that expires: renewals need the control plane).",
])
def control_plane_down(lab, answers, outage) -> CheckResult:
    """The learner's three traffic results and quiz; the lab must be healthy again."""
    result = judge_outage(answers, outage)
    if not result.ok:
        return result
    table = wait_synced(lab)
    stale = not_synced(table) if table is not None else ["the control plane does not answer"]
    if table is None or stale:
        return CheckResult(False, "the control plane back, every sidecar SYNCED", f"not SYNCED: {', '.join(stale)}")
    return result
