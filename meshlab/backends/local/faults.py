"""Faults on the local runtime: kill a pod, a node or a proxy, held down until restore."""

from __future__ import annotations

from ..base import MeshlabError
from .pods import Pod


class Faults:
    """The fault half of the Runtime (a mixin: it works on the runtime's nodes and pods)."""

    def kill(self, pod: str | None = None, node: str | None = None, proxy: str | None = None) -> list[str]:
        """Kill a pod (by name, or one pod of a workload/app), a node, or a proxy; held until restore."""
        if node:
            if node not in self.nodes:
                raise MeshlabError(f"no node {node}", f"nodes are {', '.join(self.nodes)}")
            self.nodes[node].ready = False
            return [k for p in self.pods.values() if p.node == node for k in p.kill()] or [f"node/{node}"]
        if pod:
            return self._find_pod(pod).kill()
        if proxy:
            return [k for p, c in self._find_proxies(proxy) for k in p.kill(c.name)]
        raise MeshlabError("kill needs pod=, node= or proxy=", "e.g. lab.kill(pod='ratings')")

    def _find_pod(self, name: str) -> Pod:
        if name in self.pods:
            return self.pods[name]
        matches = sorted((p for p in self.pods.values()
                          if p.owner.split("/")[-1] == name or p.labels.get("app") == name), key=lambda p: p.name)
        alive = [p for p in matches if p.ready] or matches
        if not alive:
            raise MeshlabError(f"no pod {name}", "see 'meshlab status' for pod names")
        return alive[0]

    def _find_proxies(self, name: str) -> list:
        found = [(p, c) for p in self.pods.values() for c in p.containers if p.proxy_role(c)]
        exact = [(p, c) for p, c in found if self.proxy_name(p, c) == name]
        by_role = [(p, c) for p, c in found if p.proxy_role(c) == name]
        result = exact or by_role
        if not result:
            raise MeshlabError(f"no proxy {name}", "see 'meshlab status' for proxy names, or give a role such as 'router'")
        return result

    @staticmethod
    def proxy_name(pod: Pod, container) -> str:
        """A proxy pod is named by its pod; a sidecar by pod/container."""
        return f"{pod.name}/{container.name}" if pod.proxy_role(container) == "sidecar" else pod.name

    def restore(self) -> None:
        """Bring back killed nodes, pods and proxies."""
        for node in self.nodes.values():
            node.ready = True
        for pod in self.pods.values():
            pod.release()
