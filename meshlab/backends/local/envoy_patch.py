"""The local-only changes made to Envoy config before it runs (docs/internals.md, item 2)."""

from __future__ import annotations

import copy
import json

import yaml

from ...envoy.configcheck import patch_paths  # shared with the kind/kube config check
from ..base import MeshlabError

POD_LOCAL = {"0.0.0.0", "127.0.0.1", "::", "::1", "localhost"}


def patch_addresses(config, pod_ip: str):
    """Pod-local addresses (0.0.0.0, 127.0.0.1, ::) become the pod's own loopback address."""
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            if key == "socket_address" and isinstance(value, dict) and value.get("address") in POD_LOCAL:
                value = {**value, "address": pod_ip}
                value.pop("ipv4_compat", None)
            out[key] = patch_addresses(value, pod_ip)
        return out
    if isinstance(config, list):
        return [patch_addresses(item, pod_ip) for item in config]
    return config


def dns_resolver(dns_ip: str, dns_port: int) -> dict:
    """A c-ares resolver that asks the lab's DNS server (cluster names -> ClusterIPs)."""
    return {
        "name": "envoy.network.dns_resolver.cares",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
            "resolvers": [{"socket_address": {"address": dns_ip, "port_value": dns_port}}],
            "dns_resolver_options": {"no_default_search_domain": True},
        },
    }


def patch_bootstrap(config: dict, pod_ip: str, mounts: dict[str, str], dns: tuple[str, int]) -> dict:
    """Everything the local runtime changes in a bootstrap, in one place."""
    config = patch_paths(patch_addresses(copy.deepcopy(config), pod_ip), mounts)
    config["typed_dns_resolver_config"] = dns_resolver(*dns)
    return config


def with_token(config: dict, token: str, xds_cluster: str = "xds-grpc") -> dict:
    """The bootstrap with the pod's token on its ADS stream to the mesh's control plane (`authorization: Bearer`),
    as istio-agent presents the pod's service-account token; other bootstraps are returned unchanged."""
    ads = ((config.get("dynamic_resources") or {}).get("ads_config") or {})
    services = ads.get("grpc_services") or []
    if not any((s.get("envoy_grpc") or {}).get("cluster_name") == xds_cluster for s in services):
        return config
    header = {"key": "authorization", "value": f"Bearer {token}"}
    services = [{**s, "initial_metadata": [m for m in s.get("initial_metadata") or [] if m.get("key") != "authorization"]
                 + [header]} if (s.get("envoy_grpc") or {}).get("cluster_name") == xds_cluster else s for s in services]
    return {**config, "dynamic_resources": {**config["dynamic_resources"], "ads_config": {**ads, "grpc_services": services}}}


def patch_file_text(text: str, pod_ip: str, mounts: dict[str, str], source: str) -> str:
    """Patch a dynamic-resource file (LDS/CDS YAML or JSON) projected into an Envoy pod."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise MeshlabError(f"{where}: invalid YAML in Envoy config: {getattr(exc, 'problem', exc)}",
                           "check the indentation of the Envoy config") from None
    if not isinstance(data, (dict, list)):
        return text
    patched = patch_paths(patch_addresses(data, pod_ip), mounts)
    if source.endswith(".json"):
        return json.dumps(patched, indent=1)  # Envoy picks its parser by the file's extension
    return yaml.safe_dump(patched, sort_keys=False)
