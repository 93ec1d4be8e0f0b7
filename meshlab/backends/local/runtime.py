"""The local cluster: stored objects reconciled into pods, Services, DNS and the edge proxy."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
import traceback
from pathlib import Path

from ... import apivalidation
from ..base import MeshlabError
from . import (envoy_check, ingress, inject, kinds, kubeproxy, mesh_check, network, probes, procs, rollout, rpc,
               transaction, watch, workloads)
from .faults import Faults
from .identity import ClusterIdentity, Node, make_nodes  # noqa: F401  (Node: part of this module's API)
from .paths import socket_address, write_state
from .pods import Pod
from .views import Views

TICK = 0.2


def key_of(doc: dict) -> tuple:
    """(kind, namespace, name) of an object."""
    meta = doc["metadata"]
    ns = None if doc["kind"] in ("Namespace", "IngressClass") else meta.get("namespace", "default")
    return doc["kind"], ns, meta["name"]


def stamped(doc: dict, previous: dict | None) -> dict:
    """The object with metadata.creationTimestamp as the API server keeps it (set on create, kept on update)."""
    created = ((previous or {}).get("metadata") or {}).get("creationTimestamp") \
        or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {**doc, "metadata": {**doc["metadata"], "creationTimestamp": created}}


class Runtime(Faults, Views):
    """Everything a local lab runs, owned by the supervisor's event loop."""

    def __init__(self, folder: Path, octet: int, nodes: int, state: dict, identity: ClusterIdentity = ClusterIdentity()):
        self.folder, self.octet, self.state, self.identity = folder, octet, state, identity
        self.entry_ip = f"127.{octet}.0.1"
        self.dns = (f"127.{octet}.0.2", 5353)
        self.nodes = make_nodes(octet, nodes, identity)
        self.objects: dict[tuple, dict] = {}
        self.pods: dict[str, Pod] = {}
        self.cluster_ips: dict[tuple, str] = {}
        self.service_proxy = kubeproxy.service_proxy(folder / "kube-proxy", f"127.{octet}.0.4")  # ClusterIPs, hostPorts
        self.projected: dict[tuple, str] = {}
        self.next_probe: dict[tuple, float] = {}
        self.dirty = True
        self.lock = asyncio.Lock()
        self.synced_ready: dict[str, bool] = {}  # pod readiness when endpoints were last synced
        self.revisions = watch.Revisions()
        self.api = rpc.printable(socket_address(folder))  # MESHLAB_API of every container
        self.terminating: dict[str, float] = {}  # pod name -> when its grace period ends

    # ---- objects -------------------------------------------------------------------------
    async def apply(self, docs: list[dict], source: str) -> list[str]:
        """Check everything first (API-server rules, the local subset, Envoy and mesh config), then store all or nothing."""
        apivalidation.check(docs, source, namespaces=transaction.namespaces(self.objects))
        apivalidation.check_updates(docs, source, lambda doc: self.objects.get(key_of(doc)))
        for doc in docs:
            kinds.check_supported(doc, source)
        docs = [stamped(doc, self.objects.get(key_of(doc))) for doc in docs]
        await envoy_check.check(self.objects, docs, self.octet, self.dns, source)
        await mesh_check.check(self.objects, self.pods.values(), docs, source)
        async with self.lock:
            apivalidation.check_namespaces(docs, source, transaction.namespaces(self.objects))  # a delete may have landed meanwhile

            async def store() -> None:
                for doc in docs:
                    self.objects[key_of(doc)] = doc
                await self.reconcile()

            await transaction.run(self, store)  # an internal error puts back what this apply changed
        await self.revisions.bump()
        return [f"{doc['kind']}/{doc['metadata']['name']}" for doc in docs]

    async def delete(self, docs: list[dict]) -> list[str]:
        """Remove objects (a Namespace takes the objects in it along, as on Kubernetes) and reconcile, all or nothing."""
        refs: list[str] = []

        async def remove() -> None:
            for doc in docs:
                if self.objects.pop(key_of(doc), None) is None:
                    continue
                refs.append(f"{doc['kind']}/{doc['metadata']['name']}")
                transaction.empty_namespace(self.objects, doc)
            await self.reconcile()

        async with self.lock:
            await transaction.run(self, remove)
        await self.revisions.bump()
        return refs

    def of_kind(self, kind: str) -> list[dict]:
        """Stored objects of one kind."""
        return [doc for (k, _, _), doc in sorted(self.objects.items(), key=lambda i: str(i[0])) if k == kind]

    def configmap(self, namespace: str, name: str) -> dict | None:
        return self.objects.get(("ConfigMap", namespace, name))

    # ---- reconcile -----------------------------------------------------------------------
    async def reconcile(self) -> None:
        """Bring pods, volumes, listeners and the edge in line with the stored objects."""
        self._sync_edge()
        self._sync_workloads()
        self._sync_volumes()
        await self._sync_services()
        self.dirty = True

    def _sync_edge(self) -> None:
        """meshlab's ingress controller: an edge Envoy whenever an Ingress it serves exists."""
        served = [i for i in self.of_kind("Ingress") if ingress.serves(i)]
        cm_key = ("ConfigMap", ingress.EDGE_NAMESPACE, "edge-envoy")
        dep_key = ("Deployment", ingress.EDGE_NAMESPACE, ingress.EDGE_NAME)
        if not served:
            self.objects.pop(cm_key, None)
            self.objects.pop(dep_key, None)
            return
        self.objects[cm_key] = ingress.config_map(self.entry_ip, served, self.endpoints)
        if dep_key not in self.objects:
            self.objects[dep_key] = ingress.deployment(next(iter(self.nodes)))

    def _sync_workloads(self) -> None:
        owners = {}
        for kind in ("Deployment", "DaemonSet"):
            for doc in self.of_kind(kind):
                owners[workloads.owner_ref(doc)] = doc
        for pod in list(self.pods.values()):
            if pod.owner not in owners and not pod.deleting:
                self._remove_pod(pod)
        ready_nodes = [n.name for n in self.nodes.values() if n.ready]
        for ref, doc in owners.items():
            owned = [p for p in self.pods.values() if p.owner == ref and not p.deleting]
            if doc["kind"] == "Deployment":
                load = {n: sum(1 for p in self.pods.values() if p.node == n) for n in self.nodes}
                create, delete = workloads.deployment_plan(doc, owned, ready_nodes, load)
            else:
                create, delete = workloads.daemonset_plan(doc, owned, ready_nodes)
            for pod in delete:
                self._remove_pod(pod)
            for node in create:
                self._new_pod(doc, node)

    def _new_pod(self, doc: dict, node_name: str) -> Pod:
        node = self.nodes[node_name]
        template = doc["spec"]["template"]
        used = {p.ip for p in self.pods.values()}
        while True:
            ip = f"127.{self.octet}.{node.index}.{node.next_pod}"
            node.next_pod = 10 if node.next_pod >= 254 else node.next_pod + 1
            if ip not in used:
                break
        thash = workloads.template_hash(template)
        name = workloads.pod_name(doc["metadata"]["name"], thash, node_name if doc["kind"] == "DaemonSet" else None)
        namespace = doc["metadata"].get("namespace", "default")
        ns_doc = self.objects.get(("Namespace", None, namespace)) or {}
        meta, spec = inject.inject(template.get("metadata") or {}, template.get("spec") or {},
                                   (ns_doc.get("metadata") or {}).get("labels") or {})  # the admission webhook
        pod = Pod(name=name, namespace=namespace, node=node_name, ip=ip,
                  host_ip=node.ip, labels=dict(meta.get("labels") or {}), spec=spec,
                  owner=workloads.owner_ref(doc), template_hash=thash, folder=self.folder / "pods" / name,
                  dns=self.dns, annotations=dict(meta.get("annotations") or {}), api=self.api,
                  cluster=self.identity.name)
        self.pods[name] = pod
        return pod

    def _remove_pod(self, pod: Pod) -> None:
        """A serving pod leaves the endpoints first and is killed after its grace period; others go at once."""
        grace = rollout.grace_seconds(pod.spec)
        if pod.ready and grace > 0:
            pod.deleting = True
            self.terminating[pod.name] = time.monotonic() + grace
            return
        self._finish_pod(pod)

    def _finish_pod(self, pod: Pod) -> None:
        pod.stop()
        self.pods.pop(pod.name, None)
        self.terminating.pop(pod.name, None)
        shutil.rmtree(pod.folder, ignore_errors=True)

    def _sync_volumes(self) -> None:
        """Project ConfigMaps into pods; an update reaches mounted files like the kubelet's."""
        for pod in self.pods.values():
            for volume in pod.spec.get("volumes") or []:
                name = (volume.get("configMap") or {}).get("name")
                cm = self.configmap(pod.namespace, name) if name else None
                if cm is None:
                    continue
                digest = hashlib.sha1(json.dumps(cm.get("data"), sort_keys=True).encode()).hexdigest()
                if self.projected.get((pod.name, volume["name"])) != digest:
                    pod.project_volume(volume, cm)
                    self.projected[(pod.name, volume["name"])] = digest

    def volumes_ready(self, pod: Pod) -> bool:
        """A pod starts once every ConfigMap it mounts exists (ContainerCreating until then)."""
        return all((pod.name, v["name"]) in self.projected for v in pod.spec.get("volumes") or [] if v.get("configMap"))

    async def _sync_services(self) -> None:
        """Every ClusterIP:port and hostIP:hostPort served, with the endpoints of this moment (returns once they are)."""
        wanted: dict[tuple, object] = {}
        for svc in self.of_kind("Service"):
            ns, name = svc["metadata"].get("namespace", "default"), svc["metadata"]["name"]
            if network.is_headless(svc):
                continue  # no ClusterIP, nothing to proxy: DNS answers with the pods' own IPs
            ip = self.cluster_ips.get((ns, name)) or self._allocate_cluster_ip()
            self.cluster_ips[(ns, name)] = ip
            for port in svc["spec"].get("ports") or []:
                wanted[(ip, int(port["port"]))] = (lambda ns=ns, name=name, p=port["port"]: self.endpoints(ns, name, p))
        live = {(s["metadata"].get("namespace", "default"), s["metadata"]["name"]) for s in self.of_kind("Service")
                if not network.is_headless(s)}
        self.cluster_ips = {k: v for k, v in self.cluster_ips.items() if k in live}
        for pod in self.pods.values():
            for container in pod.spec.get("containers") or []:
                for port in container.get("ports") or []:
                    if port.get("hostPort"):
                        wanted[(pod.host_ip, int(port["hostPort"]))] = (
                            lambda node=pod.node, hp=port["hostPort"]: self.host_port_backends(node, hp))
        await self.service_proxy.sync(wanted)

    def _allocate_cluster_ip(self) -> str:
        used = set(self.cluster_ips.values())
        for last in range(10, 255):
            ip = f"127.{self.octet}.0.{last}"
            if ip not in used:
                return ip
        raise MeshlabError("no ClusterIP left in this lab", "delete some Services")

    # ---- the loop ------------------------------------------------------------------------
    async def tick(self) -> None:
        """Start/restart containers, run due probes, follow readiness changes."""
        now = time.monotonic()
        for name, due in list(self.terminating.items()):
            if now >= due:
                self._finish_pod(self.pods[name]) if name in self.pods else self.terminating.pop(name)
        for pod in list(self.pods.values()):
            if not self.volumes_ready(pod):
                continue
            try:
                if pod.tick(now):
                    self.dirty = True
            except Exception as exc:  # one broken pod must not stop the others
                for c in pod.containers:
                    c.exit_code = 127
                    c.next_start = now + 5
                (pod.folder / "logs" / "meshlab.log").open("a").write(f"{exc}\n")
        await self._probe_due(now)
        await self.follow()
        await self.revisions.observe_pods(watch.pod_fingerprint(self.pods.values()))
        if self.dirty:
            self.save_state()
            self.dirty = False

    async def follow(self) -> None:
        """Reconcile when pod readiness changed since the last sync (also after kill/restore between ticks), so
        endpoints and the ClusterIP proxy follow it. Under the lock: a caller that reads pods after this sees
        only readiness the ClusterIPs already act on."""
        async with self.lock:
            ready = {name: pod.ready for name, pod in self.pods.items()}
            if ready != self.synced_ready or not self.service_proxy.running():
                self.synced_ready = ready
                try:
                    await self.reconcile()
                except BaseException:
                    self.synced_ready = {}  # try again on the next tick
                    raise

    async def settle(self) -> None:
        """follow() before an answer that reports pods; a failure to sync is logged, the answer still given."""
        try:
            await self.follow()
        except Exception:
            traceback.print_exc()

    async def restart(self, ref: str, timeout: float = 60.0) -> list[str]:
        """`kubectl rollout restart` of a Deployment or DaemonSet; the new pod names once rolled out."""
        return await rollout.restart(self, ref, timeout)

    async def _probe_due(self, now: float) -> None:
        jobs = []
        for pod in self.pods.values():
            for c in pod.containers:
                if c.state() != "running":
                    pod.probe_ok[c.name] = False
                    continue
                key = (pod.name, c.name)
                delay, period = probes.period(c)
                due = self.next_probe.get(key)
                if due is None:
                    self.next_probe[key] = now + min(delay, 0.2) if delay == 0 else now + delay
                    continue
                if now >= due:
                    self.next_probe[key] = now + period
                    jobs.append((pod, c))
        results = await asyncio.gather(*(probes.probe(p, c) for p, c in jobs))
        for (pod, c), ok in zip(jobs, results):
            pod.probe_ok[c.name] = ok and c.state() == "running"

    # ---- state and teardown --------------------------------------------------------------
    def save_state(self) -> None:
        self.state["processes"] = [list(pid) for pod in self.pods.values() for pid in pod.pids()] + \
            [list(pid) for pid in self.service_proxy.pids()]
        self.state["entrypoint"] = self.entrypoint()
        write_state(self.folder, self.state)

    async def shutdown(self) -> None:
        """Kill every process and close every listener."""
        for pod in list(self.pods.values()):
            pod.stop()
        await self.service_proxy.stop()
        for pid, started in self.state.get("processes", []):
            procs.kill_group(pid, started)
