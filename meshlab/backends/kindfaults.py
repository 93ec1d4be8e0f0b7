"""Faults on kind, held until restore(): stopped nodes, frozen proxies, a control plane scaled to zero.

A stopped node: Kubernetes notices only when the node controller's grace period runs out (40-50 s), and until
then its pods stay in their Services' Endpoints, so calls to them time out. kill_node() makes them fail at once,
as on the local runtime: cordon first (nothing new is scheduled there, in particular not the replacements of the
pods deleted below), `docker stop` the node, then force-delete the lab's pods that ran there, which takes them
out of the Endpoints at once (kube-proxy and the proxies stop sending to them). Deleting before the stop would
let the still-running kubelet start a DaemonSet's replacement there, ready until the stop.

An Istio sidecar's main process is pilot-agent, with Envoy as its child: freezing it means SIGSTOP to the
whole process tree of the container, and since the sidecar intercepts every port of its pod, the reject
rules cover all of the pod's ports (callers are refused at once, as by a dead Envoy locally).
"""

from __future__ import annotations

import json

from . import istio
from .base import MeshlabError
from .kubectl import check, container_id, container_ports, labels, pod_ports

# In a node container: print "pid ppid" for every process (the node's PID namespace holds its pods' processes).
PROCESS_TABLE = ('for f in /proc/[0-9]*/stat; do read -r l < "$f" 2>/dev/null || continue; '
                 'set -- ${l##*) }; p=${f#/proc/}; echo "${p%/stat} $2"; done')


def reject_rules(pod_ip: str, ports: list[int]) -> list[list[str]]:
    """iptables FORWARD rules (match + target) that reset TCP connections to each of a pod's ports."""
    return [["-d", pod_ip, "-p", "tcp", "--dport", str(port), "-j", "REJECT", "--reject-with", "tcp-reset"]
            for port in ports if pod_ip]


def descendants(table: str, pid: int) -> list[int]:
    """Every process below `pid` in a "pid ppid" table, parents before children."""
    children: dict[int, list[int]] = {}
    for line in table.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(fields[0]))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        out.append(child)
        todo += children.get(child, [])
    return out


class KindFaults:
    """Mixed into KindBackend: kill a node, freeze a proxy, stop the control plane; restore() undoes them."""

    def stopped_nodes(self) -> list[str]:
        """Node containers of this cluster that are not running (kill(node=...) stopped them)."""
        out = self.run(["docker", "ps", "-a", "--filter", f"label=io.x-k8s.kind.cluster={self.cluster_name}",
                        "--filter", "status=exited", "--format", "{{.Names}}"], "docker ps")
        return out.split()

    def kill_node(self, node: str) -> list[str]:
        """Cordon a worker, `docker stop` its container, force-delete the lab's pods that ran there (see the module
        docstring); returns those pods. Down until restore()."""
        names = self.run(["kind", "get", "nodes", "--name", self.cluster_name], "kind get nodes").split()
        if node not in names:
            raise MeshlabError(f"no node {node} in {self.cluster_name}", f"nodes are {', '.join(names)}")
        if node.endswith("-control-plane"):
            raise MeshlabError(f"refusing to stop {node}: it runs the Kubernetes API and the edge", "kill a worker node")
        pods = [p["metadata"] for p in self.pod_objects() if (p.get("spec") or {}).get("nodeName") == node]
        cordoned = self.state.read().get("cordoned", [])
        self.state.update(cordoned=cordoned + ([] if node in cordoned else [node]))  # first, so restore() undoes it
        self.kubectl.run("cordon", node, namespace=None, what=f"cordon {node}")
        stopped = self.runner.run(["docker", "stop", node], timeout=90)
        if stopped.returncode != 0:
            self.uncordon(node)
            check(stopped, f"docker stop {node}")
        by_namespace: dict[str, list[str]] = {}
        for meta in pods:
            by_namespace.setdefault(meta["namespace"], []).append(meta["name"])
        for namespace, names in by_namespace.items():
            self.kubectl.run("delete", "pod", *names, "--grace-period=0", "--force", "--wait=false", "--ignore-not-found",
                             namespace=namespace, what=f"delete the pods of {node}")
        return [meta["name"] for meta in pods] or [f"node/{node}"]

    def uncordon(self, node: str) -> None:
        """`kubectl uncordon` a node kill_node() cordoned, and forget it."""
        self.kubectl.run("uncordon", node, namespace=None, what=f"uncordon {node}")
        self.state.update(cordoned=[n for n in self.state.read().get("cordoned", []) if n != node])

    def kill_proxy_container(self, pod: dict, container: str) -> None:
        """Freeze the proxy from its node: SIGSTOP its processes, and reject new connections to its ports
        (see the kind module's docstring); both stay until restore()."""
        name, node, cid = pod["metadata"]["name"], pod["spec"]["nodeName"], container_id(pod, container)
        if not cid:
            raise MeshlabError(f"proxy {name}/{container} is not running", "wait for lab.wait_ready()")
        info = json.loads(self.run(["docker", "exec", node, "crictl", "inspect", cid], "crictl inspect"))
        pid = int(info["info"]["pid"])
        pids = [pid]
        if container == istio.PROXY_CONTAINER:  # pilot-agent runs Envoy as its child
            pids += descendants(self.run(["docker", "exec", node, "sh", "-c", PROCESS_TABLE], "list processes"), pid)
        self.run(["docker", "exec", node, "kill", "-STOP", *map(str, pids)], f"freeze {name}")
        ports = pod_ports(pod) if container == istio.PROXY_CONTAINER else container_ports(pod, container)
        rules = reject_rules((pod.get("status") or {}).get("podIP", ""), ports)
        frozen = self.state.read().get("frozen", [])
        self.state.update(frozen=frozen + [{"pod": name, "container": container, "node": node, "pid": pid,
                                            "pids": pids, "rules": rules}])
        for rule in rules:
            self.run(["docker", "exec", node, "iptables", "-I", "FORWARD", "1", *rule], f"cut {name} off")

    def kill_control_plane(self, pod: dict) -> list[str]:
        """Scale the control plane's Deployment (named after its app label) to zero until restore(): running
        sidecars keep their last config; new pods cannot be injected or configured meanwhile."""
        meta = pod["metadata"]
        deployment, namespace = labels(pod).get("app") or meta["name"], meta["namespace"]
        replicas = self.kubectl.run("get", "deployment", deployment, "-o", "jsonpath={.spec.replicas}",
                                    namespace=namespace, what=f"kubectl get deployment {deployment}").strip()
        scaled = self.state.read().get("scaled", [])
        if not any(s["deployment"] == deployment and s["namespace"] == namespace for s in scaled):
            self.state.update(scaled=scaled + [{"deployment": deployment, "namespace": namespace,
                                                "replicas": int(replicas or 1)}])
        self.kubectl.run("scale", f"deployment/{deployment}", "--replicas=0", namespace=namespace,
                         what=f"stop the control plane {deployment}")
        return [meta["name"]]

    def restore_faults(self) -> None:
        """Start stopped nodes (uncordoned, then waiting for Ready), thaw frozen proxies, scale the control plane back."""
        for node in self.stopped_nodes():
            self.run(["docker", "start", node], f"docker start {node}", timeout=90)
            if node in self.state.read().get("cordoned", []):
                self.uncordon(node)
            self.kubectl.run("wait", "--for=condition=Ready", f"node/{node}", "--timeout=180s", namespace=None,
                             timeout=210, what=f"node {node} did not come back")
        for node in self.state.read().get("cordoned", []):  # a kill_node() that stopped half-way
            self.uncordon(node)
        for frozen in self.state.read().get("frozen", []):
            pids = frozen.get("pids") or [frozen["pid"]]
            self.runner.run(["docker", "exec", frozen["node"], "kill", "-CONT", *map(str, pids)])
            for rule in frozen.get("rules", []):
                self.runner.run(["docker", "exec", frozen["node"], "iptables", "-D", "FORWARD", *rule])
        for scaled in self.state.read().get("scaled", []):
            target = f"deployment/{scaled['deployment']}"
            self.kubectl.run("scale", target, f"--replicas={scaled['replicas']}", namespace=scaled["namespace"],
                             what=f"start the control plane {scaled['deployment']}")
            self.rollout([("deployment", scaled["deployment"], scaled["namespace"])], timeout=180)
        if self.state.read():
            self.state.update(frozen=[], scaled=[])
