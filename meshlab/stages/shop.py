"""The sample shop as Kubernetes objects: one Deployment per service version, one Service each."""

from __future__ import annotations

from pathlib import Path

APP_SOURCE = Path(__file__).resolve().parent.parent / "app" / "app.py"
APP_PORT = 9080
IMAGE = "python:3.12-slim"

# (service, version, replicas, upstream services): Bookinfo's shape
SHOP = (
    ("frontend", "v1", 1, ("catalog", "reviews")),
    ("catalog", "v1", 1, ()),
    ("reviews", "v1", 1, ()),
    ("reviews", "v2", 1, ("ratings",)),
    ("reviews", "v3", 1, ("ratings",)),
    ("ratings", "v1", 2, ()),
)


def field_env(name: str, field_path: str) -> dict:
    """An env var from the downward API."""
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


IDENTITY_ENV = [field_env("POD_NAME", "metadata.name"), field_env("NODE_NAME", "spec.nodeName"),
                field_env("POD_IP", "status.podIP")]


def meta(name: str, namespace: str | None = None, **fields) -> dict:
    """metadata with a namespace only when one is given: namespace-less objects go where the backend runs
    the lab (kube: `kubectl -n meshlab-<learner>-<lab>`, which refuses objects that name another namespace)."""
    return {"name": name, **({"namespace": namespace} if namespace else {}), **fields}


def app_configmap(namespace: str | None = None) -> dict:
    """The app's code, mounted into a stock python image (no image to build)."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("shop-app", namespace),
            "data": {"app.py": APP_SOURCE.read_text()}}


def app_container(service: str, version: str, upstreams, extra_env=()) -> dict:
    """The app container of one service version."""
    args = ["--service", service, "--version", version, "--port", str(APP_PORT)]
    for upstream in upstreams:
        args += ["--upstream", f"http://{upstream}:{APP_PORT}/"]
    return {"name": "app", "image": IMAGE, "command": ["python", "/app/app.py"], "args": args,
            "env": IDENTITY_ENV + list(extra_env),
            "ports": [{"containerPort": APP_PORT, "name": "http"}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": APP_PORT}, "periodSeconds": 1},
            "volumeMounts": [{"name": "app", "mountPath": "/app", "readOnly": True}]}


def deployment(service: str, version: str, replicas: int, containers: list[dict], volumes: list[dict],
               namespace: str | None = None, annotations: dict | None = None) -> dict:
    """A Deployment labelled app/version, Bookinfo style."""
    labels = {"app": service, "version": version}
    template_meta = {"labels": dict(labels), **({"annotations": annotations} if annotations else {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta(f"{service}-{version}", namespace, labels=dict(labels)),
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": template_meta, "spec": {"containers": containers, "volumes": volumes}}}}


def service(name: str, namespace: str | None = None, port: int = APP_PORT, target="http") -> dict:
    """A ClusterIP Service selecting every version of an app."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name, namespace, labels={"app": name}),
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port, "targetPort": target}]}}


APP_VOLUME = {"name": "app", "configMap": {"name": "shop-app"}}


def documents(namespace: str | None = None, extra_env=(), sidecar=None) -> list[dict]:
    """Every object of the shop; `extra_env` goes into each app container, `sidecar(service, version)`
    returns (extra containers, extra volumes) for stage 4."""
    docs = [app_configmap(namespace)]
    for name, version, replicas, upstreams in SHOP:
        containers = [app_container(name, version, upstreams, extra_env)]
        volumes = [dict(APP_VOLUME)]
        if sidecar:
            more_containers, more_volumes = sidecar(name, version)
            containers += more_containers
            volumes += more_volumes
        docs.append(deployment(name, version, replicas, containers, volumes, namespace))
    for name in dict.fromkeys(s[0] for s in SHOP):
        docs.append(service(name, namespace))
    return docs
