"""The stage-5 control plane on Kubernetes: real Istio, installed on kind (istioctl) or found on kube.

Pin: Istio 1.30.3, the newest patch of the newest minor when this was written (2026-07). `istioctl
proxy-status -o json` (what proxy_status() parses) exists since 1.27; the table it prints by default
changed shape in 1.27, so meshlab never parses the table.

Install flags on kind, each for a reason:
- profile=minimal: istiod only; meshlab's Envoy stays the edge, so no Istio ingress gateway.
- meshConfig.rootNamespace=mesh-system: mesh-wide policy lives in mesh-system on every backend
  (docs/controlplane.md), so the same YAML means the same thing locally and on kind.
- meshConfig.defaultConfig.holdApplicationUntilProxyStarts=true: the app starts after its sidecar is
  ready, so the first calls of a fresh pod do not fail (values.global.proxy.* spelling is deprecated).
- values.pilot.env.ENABLE_NATIVE_SIDECARS=false: istio-proxy stays in spec.containers, the shape of
  the contract; Istio's default (auto) turns it into an init container on Kubernetes >= 1.33.

Trace hops: an EnvoyFilter in the root namespace (so it applies to every sidecar) adds meshlab's
`x-meshlab-trace` hop to every outbound and inbound route configuration (trace_filter()).
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass

from .base import MeshlabError
from .kubectl import Kubectl, Runner, check, not_found

VERSION = "1.30.3"
ROOT_NAMESPACE = "mesh-system"
ISTIO_NAMESPACE = "istio-system"
PROXY_CONTAINER = "istio-proxy"
PROXY_IMAGE = "proxyv2"
TRACE_FILTER = "meshlab-trace"
TRACE_HEADER = "x-meshlab-trace"
INSTALL_TIMEOUT = 900.0  # the first install pulls istiod's image
INSTALL_FLAGS = [
    "--set", "profile=minimal",
    "--set", f"meshConfig.rootNamespace={ROOT_NAMESPACE}",
    "--set", "meshConfig.defaultConfig.holdApplicationUntilProxyStarts=true",
    "--set", "values.pilot.env.ENABLE_NATIVE_SIDECARS=false",
]
DOWNLOAD = f"curl -L https://istio.io/downloadIstio | ISTIO_VERSION={VERSION} sh -"
RELEASES = f"https://github.com/istio/istio/releases/download/{VERSION}"
MANAGED = {"app.kubernetes.io/managed-by": "meshlab"}


@dataclass(frozen=True)
class IstioFound:
    """An Istio control plane on a cluster: its namespace, revision ('' = default) and version."""

    namespace: str
    revision: str
    version: str


# ---- pure builders -------------------------------------------------------------------------------


def install_argv(context: str, extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    """`istioctl install` for one kubeconfig context with meshlab's flags (see the module docstring), plus `extra`
    (stage 6 adds the multi-cluster values: istio_multicluster.install_flags)."""
    return ["istioctl", "install", "-y", "--context", context, *INSTALL_FLAGS, *extra]


def root_namespace() -> dict:
    """The Namespace that holds mesh-wide policy (meshConfig.rootNamespace)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ROOT_NAMESPACE, "labels": dict(MANAGED)}}


def trace_hop(direction: str) -> str:
    """The sidecar's trace hop, filled in by Envoy from the proxy's environment (set by Istio's injection)."""
    hop = ("kind=proxy;role=sidecar;name=%ENVIRONMENT(POD_NAME)%;node=%ENVIRONMENT(ISTIO_META_NODE_NAME)%"
           f";dir={direction}")
    return hop + (";peer=%DOWNSTREAM_PEER_URI_SAN%" if direction == "in" else "")


def trace_filter(namespace: str = ROOT_NAMESPACE) -> dict:
    """EnvoyFilter that stamps the trace hop on every sidecar route config (outbound and inbound)."""
    patches = []
    for context, direction in (("SIDECAR_OUTBOUND", "out"), ("SIDECAR_INBOUND", "in")):
        header = {"header": {"key": TRACE_HEADER, "value": trace_hop(direction)},
                  "append_action": "APPEND_IF_EXISTS_OR_ADD"}
        patches.append({"applyTo": "ROUTE_CONFIGURATION", "match": {"context": context},
                        "patch": {"operation": "MERGE", "value": {"request_headers_to_add": [header]}}})
    return {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": {"name": TRACE_FILTER, "namespace": namespace, "labels": dict(MANAGED)},
            "spec": {"configPatches": patches}}


def release_asset(system: str = "Linux", machine: str = "x86_64") -> str:
    """The official istioctl archive for an OS and CPU (names as in Istio's release/downloadIstioCtl.sh)."""
    arch = "arm64" if machine.lower() in ("arm64", "aarch64") else "amd64"
    if system == "Windows":
        return f"{RELEASES}/istioctl-{VERSION}-win.zip"
    if system == "Darwin":
        return f"{RELEASES}/istioctl-{VERSION}-osx{'-arm64' if arch == 'arm64' else ''}.tar.gz"
    return f"{RELEASES}/istioctl-{VERSION}-linux-{arch}.tar.gz"


def download_hint(system: str = "Linux", machine: str = "x86_64") -> str:
    """How to get the pinned istioctl on this OS (the official script, or the release archive)."""
    if system == "Windows":
        return f"download {release_asset(system, machine)}, unpack it and put istioctl.exe on PATH"
    return (f"get istioctl {VERSION}: `{DOWNLOAD}` then add istio-{VERSION}/bin to PATH "
            f"(or unpack {release_asset(system, machine)})")


# ---- istioctl ------------------------------------------------------------------------------------


def client_version(runner: Runner) -> str:
    """istioctl's own version (`istioctl version --remote=false -o json`), or "" when it does not answer."""
    try:
        result = runner.run(["istioctl", "version", "--remote=false", "-o", "json"], timeout=30)
    except MeshlabError:  # not on PATH
        return ""
    if result.returncode != 0:
        return ""
    try:
        return (json.loads(result.stdout).get("clientVersion") or {}).get("version", "")
    except ValueError:
        return ""


def version_ok(version: str, pin: str = VERSION) -> bool:
    """Whether an istioctl of `version` installs the pinned Istio (same major.minor; patches may differ)."""
    return version.lstrip("v").split(".")[:2] == pin.split(".")[:2]


def require_istioctl(runner: Runner) -> str:
    """The istioctl version, or a one-line error saying how to get the pinned one."""
    found, how = client_version(runner), download_hint(platform.system(), platform.machine())
    if not found:
        raise MeshlabError("stage 5 on kind needs istioctl, which is not on PATH (or does not run)", how)
    if not version_ok(found):
        raise MeshlabError(f"istioctl {found} is not Istio {VERSION.rsplit('.', 1)[0]}.x, which meshlab is tested with", how)
    return found


# ---- install (kind) and find (kube) --------------------------------------------------------------


def images() -> list[str]:
    """The images a pinned install runs: istiod, and the sidecar (also its init container)."""
    return [f"docker.io/istio/pilot:{VERSION}", f"docker.io/istio/proxyv2:{VERSION}"]


def install(runner: Runner, context: str, say=print, extra: tuple[str, ...] | list[str] = ()) -> IstioFound:
    """Install the pinned Istio into the cluster of `context` (skipped when it is there already), then the root
    namespace and the trace filter; idempotent. `extra` flags go to `istioctl install`."""
    kubectl = Kubectl(context, None, runner)
    present = kubectl.call("get", "deployment", "istiod", "-o", "json", namespace=ISTIO_NAMESPACE, timeout=30)
    version = _istiod_image_version(json.loads(present.stdout)) if present.returncode == 0 else ""
    if version_ok(version):
        say(f"Istio {version} is already installed")
    else:
        version = require_istioctl(runner)
        say(f"installing Istio {version} (istiod only, root namespace {ROOT_NAMESPACE}); the first run pulls its images")
        check(runner.run(install_argv(context, extra), timeout=INSTALL_TIMEOUT), "istioctl install",
              "look at `kubectl -n istio-system get pods`; `istioctl verify-install` explains most failures")
    kubectl.run("rollout", "status", "deployment/istiod", "--timeout=300s", namespace=ISTIO_NAMESPACE, timeout=330,
                what="istiod is not ready", hint="kubectl -n istio-system describe pods -l app=istiod")
    kubectl.apply([root_namespace(), trace_filter()], namespace=None)
    return IstioFound(ISTIO_NAMESPACE, "", version)


def mesh_root(runner: Runner, context: str, found: IstioFound) -> str:
    """The root namespace of a found Istio (meshConfig.rootNamespace; Istio's default is its own namespace)."""
    result = Kubectl(context, None, runner).call("get", "configmap", f"istio{'-' + found.revision if found.revision else ''}",
                                                 "-o", "jsonpath={.data.mesh}", namespace=found.namespace, timeout=30)
    for line in (result.stdout if result.returncode == 0 else "").splitlines():
        if line.strip().startswith("rootNamespace:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    return found.namespace


def _istiod_image_version(deployment: dict) -> str:
    """The tag of istiod's image (its Istio version)."""
    containers = deployment["spec"]["template"]["spec"].get("containers") or [{}]
    return containers[0].get("image", "").rsplit(":", 1)[-1]


def find(runner: Runner, context: str) -> IstioFound:
    """The Istio already on the cluster (deployment istiod in istio-system, or any istiod with a revision label)."""
    kubectl = Kubectl(context, None, runner)
    result = kubectl.call("get", "deployment", "istiod", "-o", "json", namespace=ISTIO_NAMESPACE, timeout=30)
    if result.returncode == 0:
        deployment = json.loads(result.stdout)
        revision = ((deployment.get("metadata") or {}).get("labels") or {}).get("istio.io/rev", "default")
        return IstioFound(ISTIO_NAMESPACE, "" if revision == "default" else revision, _istiod_image_version(deployment))
    if not not_found(result) and "forbidden" not in (result.stderr or "").lower():
        check(result, "kubectl get deployment istiod")
    listed = kubectl.call("get", "deployments", "-A", "-l", "app=istiod", "-o", "json", namespace=None, timeout=30)
    items = json.loads(listed.stdout or "{}").get("items", []) if listed.returncode == 0 else []
    if not items:
        raise MeshlabError(f"stage 5 needs Istio on cluster {context}, and no istiod was found",
                           f"ask the cluster admin to install Istio {VERSION} with meshConfig.rootNamespace={ROOT_NAMESPACE}")
    first = items[0]
    revision = ((first.get("metadata") or {}).get("labels") or {}).get("istio.io/rev", "")
    return IstioFound(first["metadata"]["namespace"], "" if revision == "default" else revision,
                      _istiod_image_version(first))


def label_injection(kubectl: Kubectl, namespace: str, revision: str = "") -> None:
    """Ask Istio to inject every new pod of a namespace (`istio-injection=enabled`, or `istio.io/rev=REV`)."""
    label = f"istio.io/rev={revision}" if revision else "istio-injection=enabled"
    kubectl.run("label", "namespace", namespace, label, "--overwrite", namespace=None,
                what=f"label namespace {namespace} for injection")


# ---- proxy-status --------------------------------------------------------------------------------


def _documents(text: str) -> list[dict]:
    """The JSON documents istioctl prints one after another (one DiscoveryResponse per istiod)."""
    decoder, out, at = json.JSONDecoder(), [], 0
    text = text.strip()
    while at < len(text):
        doc, end = decoder.raw_decode(text, at)
        out.append(doc)
        at = end
        while at < len(text) and text[at].isspace():
            at += 1
    return out


def _field(obj: dict, camel: str, snake: str, default=None):
    return obj.get(camel, obj.get(snake, default))


def _status_entry(config: dict) -> dict | None:
    """One proxy (an envoy.service.status.v3.ClientConfig) as an entry of /debug/syncz's `proxies`."""
    node_id = (config.get("node") or {}).get("id", "")
    parts = node_id.split("~")
    if len(parts) != 4:
        return None
    pod, _, namespace = parts[2].partition(".")
    types = _field(config, "genericXdsConfigs", "generic_xds_configs", []) or []
    sent = [t for t in types if _field(t, "configStatus", "config_status", "") not in ("", "UNKNOWN", "NOT_SENT")]
    version = max((_field(t, "lastUpdated", "last_updated", "") or "" for t in sent), default="")
    errors = [(_field(t, "errorState", "error_state", {}) or {}).get("details", "") for t in sent
              if _field(t, "configStatus", "config_status", "") == "ERROR"]
    synced = bool(sent) and all(_field(t, "configStatus", "config_status", "") == "SYNCED" for t in sent)
    return {"node_id": node_id, "pod": pod, "namespace": namespace, "connected": True, "version": version,
            "acked": version if synced else "", "nacked": version if errors else "",
            "nack_error": "; ".join(e for e in errors if e),
            "types": {_field(t, "typeUrl", "type_url", "").rsplit(".", 1)[-1]: _field(t, "configStatus", "config_status", "")
                      for t in types}}


def parse_proxy_status(text: str) -> list[dict]:
    """`istioctl proxy-status -o json` -> the /debug/syncz `proxies` list (version = time of the last push)."""
    entries = []
    for response in _documents(text):
        for resource in response.get("resources") or []:
            entry = _status_entry(resource)
            if entry:
                entries.append(entry)
    return sorted(entries, key=lambda e: (e["namespace"], e["pod"]))


def proxy_status(runner: Runner, context: str, namespace: str | None = None, istio_namespace: str = ISTIO_NAMESPACE,
                 revision: str = "") -> list[dict]:
    """Every sidecar connected to istiod, by `istioctl proxy-status -o json` (one namespace, or all)."""
    argv = ["istioctl", "proxy-status", "--context", context, "-i", istio_namespace, "-o", "json",
            *(["-n", namespace] if namespace else []), *(["--revision", revision] if revision else [])]
    return parse_proxy_status(check(runner.run(argv, timeout=60), "istioctl proxy-status"))
