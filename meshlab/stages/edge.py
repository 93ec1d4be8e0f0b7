"""Stage 1: an edge proxy in front of the shop, configured by a standard Ingress."""

from __future__ import annotations

from .shop import meta

INGRESS_CLASS = "edge"


def ingress(name: str = "shop", namespace: str | None = None) -> dict:
    """The stage's Ingress: every path of every host goes to the frontend."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": meta(name, namespace),
            "spec": {"ingressClassName": INGRESS_CLASS, "rules": [{"http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "frontend", "port": {"number": 9080}}}}]}}]}}
