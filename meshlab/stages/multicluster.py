"""Stage 6: the shop across two clusters (multi-primary, multi-network) and a legacy service outside both.

The same objects go to both clusters (Istio's namespace sameness), except placement: frontend and catalog run in
cluster-1 only, reviews and ratings in both; the edge Ingress is cluster-1's. The legacy payments service is a
plain process outside the clusters, reached through a ServiceEntry, with retries and a timeout.
"""

from __future__ import annotations

from . import controlplane, shop

CLUSTERS = ("cluster-1", "cluster-2")
EDGE_CLUSTER = CLUSTERS[0]
ONLY_IN = {"frontend": (EDGE_CLUSTER,), "catalog": (EDGE_CLUSTER,)}  # app -> clusters; others run everywhere
PAYMENTS_HOST = "payments.legacy.example"
PAYMENTS_ADDRESS = "192.0.2.10"  # a placeholder for reading; a running lab gives the legacy host's real address
PAYMENTS_URL = f"http://{PAYMENTS_HOST}:{shop.APP_PORT}/"
FAILOVER_RULE = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        enabled: true
        failover:
        - {from: region-1, to: region-2}
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 30s
      maxEjectionPercent: 100
"""  # lesson 06's rule: prefer the caller's locality, fail over from region-1 to region-2 (compare, kind test)


def runs_in(app: str, cluster: str) -> bool:
    """Whether an app's Deployments are placed in a cluster."""
    return cluster in ONLY_IN.get(app, CLUSTERS)


def with_payments(doc: dict) -> dict:
    """The frontend Deployment calling the legacy payments service too."""
    if doc["kind"] == "Deployment" and doc["metadata"]["labels"]["app"] == "frontend":
        for container in doc["spec"]["template"]["spec"]["containers"]:
            container["args"] += ["--upstream", PAYMENTS_URL]
    return doc


def service_entry(address: str, namespace: str | None = None) -> dict:
    """The legacy payments host as a ServiceEntry: outside the mesh, at a fixed address."""
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": shop.meta("payments", namespace),
            "spec": {"hosts": [PAYMENTS_HOST], "location": "MESH_EXTERNAL", "resolution": "STATIC",
                     "ports": [{"number": shop.APP_PORT, "name": "http", "protocol": "HTTP"}],
                     "endpoints": [{"address": address}]}}


def payments_policy(namespace: str | None = None) -> dict:
    """Calls to the legacy service get a timeout and are retried on errors (it is flaky, the mesh hides it)."""
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": shop.meta("payments", namespace),
            "spec": {"hosts": [PAYMENTS_HOST], "http": [{
                "timeout": "3s",
                "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "5xx,connect-failure,reset"},
                "route": [{"destination": {"host": PAYMENTS_HOST, "port": {"number": shop.APP_PORT}}}]}]}}


def placed(doc: dict, cluster: str) -> bool:
    """Whether one object of the stage belongs in a cluster."""
    if doc["kind"] == "Deployment":
        return runs_in(doc["metadata"]["labels"]["app"], cluster)
    if doc["kind"] == "Ingress":
        return cluster == EDGE_CLUSTER
    return True


def documents(cluster: str = EDGE_CLUSTER, payments_address: str = "", namespace: str | None = None) -> list[dict]:
    """The objects one cluster gets (cluster-1's are every object of the stage)."""
    docs = [with_payments(d) for d in controlplane.documents(namespace=namespace)]
    docs += [service_entry(payments_address or PAYMENTS_ADDRESS, namespace), payments_policy(namespace)]
    return [d for d in docs if placed(d, cluster)]
