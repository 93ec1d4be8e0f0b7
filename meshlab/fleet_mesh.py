"""The mesh half of a fleet: calls into pods, Service addresses and control-plane status, cluster by cluster, and
the admission of objects against every cluster before any of them stores them."""

from __future__ import annotations

import time

from . import apivalidation
from .backends.base import Backend, MeshlabError

ADMIT_HINT = "nothing was changed in any cluster and every proxy keeps its config; fix the object and apply again"


class FleetMesh:
    """Mixed into Fleet: what meshlab/mesh.py asks of a backend, answered by the cluster that has it."""

    def owner_of(self, pod: str) -> Backend:
        """The cluster that runs a pod (by name)."""
        for name, member in self.members.items():
            if any(p.name == pod for p in member.pods()):
                return member
        raise MeshlabError(f"no pod {pod} in any cluster", "see lab.pods()")

    def pod_get(self, pod: str, path: str, timeout: float = 10.0) -> str:
        return self.owner_of(pod).pod_get(pod, path, timeout)

    def service_url(self, host: str, port: int) -> str:
        """A Service's address in the first cluster that has it (as a client next to that cluster reaches it)."""
        errors = []
        for member in self.members.values():
            try:
                return member.service_url(host, port)
            except MeshlabError as exc:
                errors.append(exc)
        raise errors[0]

    def proxy_status(self) -> dict:
        """Every cluster's control-plane status, the proxies of all of them in one list."""
        states = {name: m.proxy_status() for name, m in self.members.items()}
        proxies = [{**p, "cluster": name} for name, s in states.items() for p in s.get("proxies", [])]
        return {"clusters": states, "proxies": proxies}

    def revision(self) -> int:
        """Each cluster counts its own revisions: there is no one revision of a fleet."""
        raise MeshlabError("each cluster of a fleet counts its own revisions",
                           "ask one: lab.backend.member('cluster-1').revision(); lab.convergence measures every cluster")

    def admit(self, docs: list[dict], source: str, cluster: str | None = None) -> None:
        """Refuse, in one line naming the cluster, objects that any target cluster would refuse, before any stores
        them: each cluster's namespaces, and for Istio objects its mesh as its control plane will build it (its own
        objects and pods, its peers' pods). The first target also runs its own checks before storing, so Envoy
        validates here only the configs of the others. Members without a watch API (kind) are left to istiod."""
        targets = [cluster] if cluster else list(self.members)
        watched = {n: m for n, m in self.members.items() if "watch" in m.capabilities()}
        istio = any(is_istio(d) for d in docs)
        if not watched or not (istio or len(targets) > 1):
            return
        payloads = {n: m.watch(since=0, timeout=0) for n, m in watched.items()}
        for index, name in enumerate(targets):
            if name not in payloads:
                continue
            try:
                apivalidation.check_namespaces(docs, source, payload_namespaces(payloads[name]))
                problem = mesh_problem(payloads[name], [p for n, p in payloads.items() if n != name], docs,
                                       validate=index > 0) if istio else None
            except MeshlabError as exc:  # a missing namespace, or a translation error
                raise MeshlabError(f"{source}: refused by {name}, so applied to no cluster: "
                                   f"{exc.message.removeprefix(f'{source}: ')}", exc.hint or ADMIT_HINT) from None
            if problem:
                raise MeshlabError(f"{source}: refused by {name}, so applied to no cluster: {problem}", ADMIT_HINT)

    def parts(self) -> list[Backend]:
        """The clusters' own backends, in order."""
        return list(self.members.values())


def is_istio(doc: dict) -> bool:
    """Whether a document is an Istio object."""
    from .controlplane.schema import is_istio as istio

    return istio(doc)


def payload_namespaces(payload: dict) -> set[str]:
    """The namespaces a cluster has, from its watch answer: Namespace objects, and those holding objects or pods."""
    objects = payload.get("objects") or []
    return ({(o.get("metadata") or {}).get("name") for o in objects if o.get("kind") == "Namespace"}
            | {(o.get("metadata") or {}).get("namespace") for o in objects}
            | {p.get("namespace") for p in payload.get("pods") or []}) - {None, ""}


def key_of(doc: dict) -> tuple:
    meta = doc.get("metadata") or {}
    return doc.get("kind"), meta.get("namespace") or "default", meta.get("name")


def overlaid(payload: dict, docs: list[dict]) -> dict:
    """A watch answer as it would be once docs are stored (creationTimestamp kept on update, set on create)."""
    objects = {key_of(o): o for o in payload.get("objects") or []}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for doc in docs:
        previous = (objects.get(key_of(doc)) or {}).get("metadata") or {}
        meta = {**doc.get("metadata", {}), "creationTimestamp": previous.get("creationTimestamp") or now}
        objects[key_of(doc)] = {**doc, "metadata": meta}
    return {**payload, "objects": list(objects.values())}


def mesh_problem(local: dict, remotes: list[dict], docs: list[dict], validate: bool = True) -> str | None:
    """Why the cluster of `local` would refuse docs (its proxies' config dangling, or rejected by Envoy), else None."""
    from .controlplane import envoy_check, model, snapshot

    before = snapshot.build_all(model.from_watches(local, remotes))
    after = snapshot.build_all(model.from_watches(overlaid(local, docs), remotes))
    refused = snapshot.refusal(before, after)
    if refused:
        return refused
    changed = [n for n, snap in sorted(after.items()) if n not in before or before[n].version != snap.version]
    if validate and changed:
        reason = envoy_check.problem(after[changed[0]])
        if reason:
            return f"Envoy would reject the config for {changed[0].split('~')[2]}: {reason}"
    return None
