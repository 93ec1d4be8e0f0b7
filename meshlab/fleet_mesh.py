"""The mesh half of a fleet: calls into pods, Service addresses and control-plane status, cluster by cluster."""

from __future__ import annotations

from .backends.base import Backend, MeshlabError


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
        raise MeshlabError("convergence is measured in one cluster at a time",
                           "use lab.backend.member('cluster-1') with meshlab.mesh, or lab.proxy_status()")

    def parts(self) -> list[Backend]:
        """The clusters' own backends, in order."""
        return list(self.members.values())
