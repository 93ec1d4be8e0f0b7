"""Realistic Istio outputs for the unit tests: injected pods as `kubectl get pods -o json` lists them, istiod,
and `istioctl proxy-status -o json` (Istio 1.30: one protojson DiscoveryResponse per istiod, printed in turn)."""

from __future__ import annotations

import json

from test_kube_backend import pod

from meshlab.backends import istio

PROXY_IMAGE = f"docker.io/istio/proxyv2:{istio.VERSION}"
STATUS_ANNOTATION = json.dumps({"initContainers": ["istio-init"], "containers": ["istio-proxy"],
                                "volumes": ["workload-socket", "istio-envoy", "istio-data", "istio-podinfo",
                                            "istio-token", "istiod-ca-cert"], "imagePullSecrets": None,
                                "revision": "default"})


def injected(name: str, app: str, version: str, node: str = "meshlab-t1-worker", ip: str = "10.244.1.7",
             native: bool = False, namespace: str = "default") -> dict:
    """A shop pod after Istio's injection: app + istio-proxy (or a native sidecar), istio-init, the status annotation."""
    obj = pod(name, node=node, namespace=namespace, labels={"app": app, "version": version, "sidecar.istio.io/inject": "true",
                                       "security.istio.io/tlsMode": "istio", "service.istio.io/canonical-name": app},
              containers=(("app", "python:3.12-slim", 9080), ("istio-proxy", PROXY_IMAGE, 15090)))
    obj["metadata"]["annotations"] = {"sidecar.istio.io/status": STATUS_ANNOTATION,
                                      "prometheus.io/port": "15020", "kubectl.kubernetes.io/default-container": "app"}
    spec, status = obj["spec"], obj["status"]
    spec["serviceAccountName"] = f"shop-{app}"
    spec["containers"][0]["ports"][0]["name"] = "http"
    spec["containers"][1].update(args=["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
                                 ports=[{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}])
    init = {"name": "istio-init", "image": PROXY_IMAGE, "args": ["istio-iptables", "-p", "15001", "-z", "15006"]}
    spec["initContainers"] = [init]
    status["podIP"] = ip
    status["initContainerStatuses"] = [{"name": "istio-init", "image": PROXY_IMAGE, "restartCount": 0,
                                        "containerID": f"containerd://id-{name}-istio-init",
                                        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]
    if native:  # Istio's "auto" mode on Kubernetes >= 1.33: istio-proxy is an init container that keeps running
        proxy = spec["containers"].pop(1)
        spec["initContainers"].append({**proxy, "restartPolicy": "Always"})
        status["initContainerStatuses"].append(status["containerStatuses"].pop(1))
    return obj


def istiod(name: str = "istiod-5d8f7c9b4-q7x2m", node: str = "meshlab-t1-worker") -> dict:
    """istiod's pod in istio-system."""
    obj = pod(name, node=node, namespace="istio-system",
              labels={"app": "istiod", "istio": "pilot", "istio.io/rev": "default", "sidecar.istio.io/inject": "false"},
              containers=(("discovery", f"docker.io/istio/pilot:{istio.VERSION}", 15010),))
    obj["spec"]["containers"][0]["ports"] += [{"containerPort": 8080}, {"containerPort": 15017},
                                              {"containerPort": 15014}]
    return obj


def deployment(name: str, namespace: str, image: str, labels: dict | None = None, replicas: int = 1) -> str:
    """`kubectl get deployment NAME -o json`."""
    selector = {"app": name} if name == "istiod" else {"app": name.rsplit("-", 1)[0], "version": name.rsplit("-", 1)[1]}
    return json.dumps({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
                       "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                                "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})


def _config(type_url: str, status: str, when: str, error: str = "") -> dict:
    out = {"typeUrl": f"type.googleapis.com/{type_url}", "configStatus": status, "lastUpdated": when}
    if error:
        out["errorState"] = {"lastUpdateAttempt": when, "details": error}
    return out


CDS, EDS = "envoy.config.cluster.v3.Cluster", "envoy.config.endpoint.v3.ClusterLoadAssignment"
LDS, RDS = "envoy.config.listener.v3.Listener", "envoy.config.route.v3.RouteConfiguration"


def _client(pod_name: str, namespace: str, ip: str, configs: list[dict]) -> dict:
    return {"@type": "type.googleapis.com/envoy.service.status.v3.ClientConfig",
            "node": {"id": f"sidecar~{ip}~{pod_name}.{namespace}~{namespace}.svc.cluster.local",
                     "metadata": {"CLUSTER_ID": "Kubernetes", "ISTIO_VERSION": istio.VERSION, "NAMESPACE": namespace}},
            "genericXdsConfigs": configs}


def _response(istiod_id: str, clients: list[dict]) -> dict:
    identifier = json.dumps({"Component": "istiod", "ID": istiod_id, "Info": {"version": istio.VERSION,
                                                                               "revision": "default", "status": "Clean"}})
    return {"versionInfo": "2026-07-20T10:11:12Z", "resources": clients, "typeUrl": "istio.io/debug/syncz",
            "nonce": "8c3b5a36-3b1f-4a5e-9d8e-0b7f2c1e9a11", "controlPlane": {"identifier": identifier}}


T1, T2 = "2026-07-20T10:11:05.120381Z", "2026-07-20T10:11:09.907713Z"
PROXY_STATUS_JSON = "\n".join(json.dumps(doc, indent=4) for doc in [
    _response("istiod-5d8f7c9b4-q7x2m", [
        _client("reviews-v2-7d4f9c8b5-abcde", "default", "10.244.1.7",
                [_config(CDS, "SYNCED", T2), _config(EDS, "SYNCED", T2), _config(LDS, "SYNCED", T1),
                 _config(RDS, "SYNCED", T2)]),
        _client("frontend-v1-6c9d8b7f4-fghij", "default", "10.244.1.8",
                [_config(CDS, "SYNCED", T1), _config(EDS, "STALE", T2), _config(LDS, "SYNCED", T1),
                 _config(RDS, "SYNCED", T1)]),
    ]),
    _response("istiod-5d8f7c9b4-zz9k1", [
        _client("ratings-v1-5b6c7d8e9-klmno", "default", "10.244.1.9",
                [_config(CDS, "SYNCED", T1), _config(EDS, "SYNCED", T1),
                 _config(LDS, "ERROR", T2, "Error adding/updating listener(s) virtualInbound: bad filter"),
                 _config(RDS, "NOT_SENT", "0001-01-01T00:00:00Z")]),
    ]),
])
