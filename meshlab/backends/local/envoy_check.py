"""Apply-time check of the Envoy config a workload's proxies would load, so bad config never lands.

The pure part (which proxies change, their files, `envoy --mode validate`) is meshlab/envoy/configcheck.py,
shared with kind and kube; here only what the local runtime changes before Envoy runs (envoy_patch.py).
"""

from __future__ import annotations

from ...envoy import configcheck
from . import envoy_patch, volumes


class LocalPrepare(configcheck.Prepare):
    """The local patch: pod-local addresses become the pod's loopback address, a DNS resolver is added."""

    def __init__(self, pod_ip: str, dns):
        self.pod_ip, self.dns = pod_ip, dns
        self.key = f"local {pod_ip} {dns}"

    def files(self, files: dict[str, str], mounts: dict[str, str], source: str) -> dict[str, str]:
        return volumes.envoy_files(files, self.pod_ip, mounts, source)

    def bootstrap(self, config: dict, mounts: dict[str, str]) -> dict:
        return envoy_patch.patch_bootstrap(config, self.pod_ip, mounts, self.dns)


async def check(objects: dict, docs: list[dict], octet: int, dns, source: str) -> None:
    """Raise a one-line MeshlabError when a proxy would reject its config after these docs land."""
    await configcheck.check(objects, docs, source, LocalPrepare(f"127.{octet}.0.3", dns))
