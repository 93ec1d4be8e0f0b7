"""Checks of lab 05 (sidecar proxy + control plane): move the shop into the mesh one service at a
time under load (brownfield), turn on STRICT mTLS with the edge still let in, allow only the callers
each service needs, a 90/10 canary with a header route, and a control plane that goes away.

As in labs 01-04, each check is a probe (talks to the lab: pods, `lab.call`, real traffic, the
control plane's proxy status) and a pure `judge_*` function that the unit tests feed with fakes.
Traffic splits are judged with an exact binomial test (`checks.stats.split_matches`) on
`required_samples` requests, so a correct answer fails less than once in a million runs.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Iterable, Mapping

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


def mesh_states(result) -> tuple[Counter, int, set[tuple[str, str]]]:
    """(service -> requests' paths that passed it outside the mesh, paths with every app in the mesh,
    (caller, callee) pairs seen with the caller in the mesh and the callee outside it) in a traffic
    result's traces."""
    outside: Counter = Counter()
    every = 0
    early: set[tuple[str, str]] = set()
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
            if c_in and not e_in:
                early.add((caller.get("service", "?"), callee.get("service", "?")))
    return outside, every, early


def plaintext_calls(result) -> set[str]:
    """'caller->callee' of east-west calls whose callee's sidecar saw no verified caller identity."""
    found = set()
    for path in getattr(result, "paths", None) or []:
        apps = chain(path.get("hops") or [])
        for (caller, _, _), (callee, e_in, peer) in zip(apps, apps[1:]):
            if e_in and not peer.startswith("spiffe://"):
                found.add(f"{caller.get('service', '?')}->{callee.get('service', '?')}")
    return found


# ---- exercise 1: brownfield, one service at a time, under load ----------------------------------------

MIGRATION_EXPECTED = ("every service moved into the mesh one at a time, leaves first (each service after the "
                      "services it calls), under load with no failed request; every app pod then runs an "
                      f"{SIDECAR} sidecar that the control plane keeps SYNCED")


def read_order(order: Any) -> tuple[list[str], list[str]]:
    """(service names, items that name no service) from the learner's `order`."""
    if order is None or isinstance(order, (str, bytes, Mapping)) or not isinstance(order, Iterable):
        order = [order] if isinstance(order, str) and order.strip() else []
    known, names, unknown = set(services()), [], []
    for item in order:
        text = str(item).strip().lower()
        (names.append(text) if text in known else unknown.append(str(item)))
    return names, unknown


def order_problem(order: Any) -> str | None:
    """Why an order is not one service at a time, leaves first (None when it is)."""
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
    for i, service in enumerate(names):
        later = [c for c in sorted(callees()[service]) if c in names[i + 1:]]
        if later:
            return (f"order = {names}: {service} moves before {', '.join(later)}, which it calls. Move the leaves "
                    "first (渐进式采纳, 从非核心系统开始): a service joins after everything it depends on, so the "
                    "core path, frontend, goes last")
    return None


def judge_migration(order: Any, pods, during, table=()) -> CheckResult:
    """Pass when `order` is leaves first, every app pod is injected and SYNCED, and the load that ran
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
    outside, every, early = mesh_states(during)
    names, _ = read_order(order)
    line = f"{during.requests} requests under load, 0 failed"
    if not outside.get(names[0]):
        return CheckResult(False, MIGRATION_EXPECTED, f"{line}, but no request was traced through {names[0]} before "
                           "it joined the mesh: the load started after the migration did. Start over with "
                           "lab.up(stage='control-plane', injection=False) and run the migration cell once.")
    if not every:
        return CheckResult(False, MIGRATION_EXPECTED, f"{line}, but no request was traced with every service in the "
                           "mesh: the load stopped before the last service joined")
    if early:
        pairs = ", ".join(f"{a} (in the mesh) -> {b} (not yet)" for a, b in sorted(early))
        return CheckResult(False, MIGRATION_EXPECTED, f"{line}, but the traces show callers that joined before a "
                           f"service they call: {pairs}. Did the cell move them in the order of `order`?")
    return CheckResult(True, MIGRATION_EXPECTED, f"{line}; moved {' -> '.join(names)}; traced: {outside[names[0]]} "
                       f"calls to {names[0]} before it joined, {every} requests with every service in the mesh; "
                       f"{len(shop_pods)} pods injected and SYNCED")


@exercise(LAB, "brownfield-migration", hints=[
    "A service is in the mesh when its pods were created with a sidecar: injection happens when a pod is "
    "created, so ask for it (the pod label sidecar.istio.io/inject: 'true') and roll the Deployments. `order` "
    "lists the services; the seed says to start from what is not core (从非核心系统开始改造).",
    "Leaves first: ratings and catalog call nobody, reviews calls ratings, frontend calls catalog and reviews. In "
    "join_mesh, take each Deployment of the service (its name is in deployments(service)) from `brownfield`, add the "
    "label to spec.template.metadata.labels and lab.apply it: a changed pod template rolls the Deployment.",
    "order = ['ratings', 'reviews', 'catalog', 'frontend']; join_mesh(service): for doc in brownfield: if "
    "doc['kind'] == 'Deployment' and doc['metadata']['name'] in deployments(service): "
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


def judge_strict(outside: Mapping[str, Any], edge, plaintext: Iterable[str] = (), meshed: Iterable[str] = ()) -> CheckResult:
    """`outside`: service -> status of a call from outside the mesh (0 = no answer); `edge`: traffic
    through the edge; `plaintext`: east-west calls seen without a peer identity; `meshed`: services
    whose pods all run a sidecar."""
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
    return judge_strict(outside, edge, plaintext_calls(edge), meshed)


# ---- exercise 3: only the callers each service needs ---------------------------------------------------------

ALLOWED = (("frontend", "reviews"), ("reviews", "ratings"))
DENIED = (("catalog", "reviews"), ("ratings", "reviews"), ("frontend", "ratings"), ("catalog", "ratings"),
          (None, "reviews"), (None, "ratings"))
CALLERS_EXPECTED = ("only frontend may call reviews and only reviews may call ratings: those calls answer 200, "
                    "every other caller gets 403 (from outside the mesh: no answer), and every request through "
                    "the edge still succeeds")


def _who(source: str | None) -> str:
    return source or "outside"


def judge_callers(calls: Mapping[tuple, Any], edge, meshed: Iterable[str] = ()) -> CheckResult:
    """`calls`: (source or None, target) -> status of a call (as lab.call answered); `edge`: traffic
    through the edge afterwards; `meshed`: services whose pods all run a sidecar."""
    meshed = set(meshed)
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
               "(exercise 1)" if loose else "")
        if not why and any(s is not None for s, _ in let_in) and all(_status(calls[k]) == 200 for k in ALLOWED):
            why = ("\nan ALLOW policy lets in exactly its rules; a caller no ALLOW policy on the workload names is "
                   "denied. Is there one for each of reviews and ratings, naming one principal each?")
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
        return CheckResult(False, CALLERS_EXPECTED, f"{table}\n{edge.failed} of {edge.requests} requests through the "
                           f"edge failed{first}: a policy selects more than reviews and ratings (one with no "
                           "selector applies to every workload of the namespace, frontend and catalog too)")
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
    return judge_callers(calls, edge, meshed)


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
                   "is not served; once it is back, the change reaches the sidecars; and the quiz right")
OUTAGE_KEYS = ("while_down", "after_change", "after_restore")
MIN_OUTAGE_REQUESTS = 100


def judge_outage(answers: Any, outage: Any) -> CheckResult:
    """`outage`: {'while_down', 'after_change', 'after_restore'}: traffic results of the experiment
    (the VirtualService applied while down sends every call to reviews to v2)."""
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
    if _versions(change) and set(_versions(change)) == {"v2"}:
        return CheckResult(False, OUTAGE_EXPECTED, f"{text}\nthe VirtualService applied during the outage was "
                           "already served: was the control plane down? (lab.kill(pod='meshlab-controlplane'))")
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
