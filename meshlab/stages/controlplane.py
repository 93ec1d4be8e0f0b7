"""Stage 5: sidecars injected automatically, configured over xDS by a control plane; policy as Istio objects."""

from __future__ import annotations

from . import edge, shop

INJECT_LABEL = "sidecar.istio.io/inject"
MESH = True  # Lab.up installs (kind: Istio) or starts (local: meshlab's own) control plane first


def service_account(service: str) -> str:
    """One identity per service, as Bookinfo does: `shop-reviews` -> spiffe://cluster.local/ns/NS/sa/shop-reviews."""
    return f"shop-{service}"


def service_accounts(namespace: str | None = None) -> list[dict]:
    """A ServiceAccount per service of the shop."""
    return [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": shop.meta(service_account(s), namespace)}
            for s in dict.fromkeys(s[0] for s in shop.SHOP)]


def meshed(doc: dict, injection: bool = True) -> dict:
    """A shop Deployment with its own identity and, when `injection`, the label that asks for a sidecar."""
    if doc["kind"] != "Deployment":
        return doc
    template = doc["spec"]["template"]
    template["spec"]["serviceAccountName"] = service_account(doc["metadata"]["labels"]["app"])
    if injection:
        template["metadata"]["labels"][INJECT_LABEL] = "true"
    return doc


def documents(injection: bool = True, namespace: str | None = None) -> list[dict]:
    """The shop with a ServiceAccount per service (sidecars injected unless `injection=False`), and the edge.

    The app manifests carry no proxy: the sidecar is added to each new pod by injection, as Istio's webhook does.
    `injection=False` is the brownfield start: the control plane runs, no service is in the mesh yet.
    """
    docs = [meshed(d, injection) for d in shop.documents(namespace)]
    return docs[:1] + service_accounts(namespace) + docs[1:] + [edge.ingress(namespace=namespace)]


def subsets_yaml(service: str = "reviews", versions=("v1", "v2", "v3")) -> str:
    """A DestinationRule naming one subset per version (Bookinfo's destination-rule-all, for one service)."""
    subsets = "".join(f"  - {{name: {v}, labels: {{version: {v}}}}}\n" for v in versions)
    return (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {service}}}\n"
            f"spec:\n  host: {service}\n  subsets:\n{subsets}")


def split_yaml(weights: dict, service: str = "reviews") -> str:
    """A VirtualService sending `weights` ({"v1": 90, "v3": 10}) of a service's calls to its subsets."""
    routes = "".join(f"    - destination: {{host: {service}, subset: {v}}}\n      weight: {w}\n" for v, w in weights.items())
    return (f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {service}}}\n"
            f"spec:\n  hosts: [{service}]\n  http:\n  - route:\n{routes}")
