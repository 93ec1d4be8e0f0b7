"""The edge proxy on Kubernetes: Traefik as the ingress controller of IngressClass `edge`.

Traefik's Kubernetes Ingress provider serves the lab's standard Ingress objects. A file-provider
middleware, attached to the `web` entry point, stamps the edge hop of meshlab's trace protocol
(`x-meshlab-trace: kind=proxy;role=edge;name=<pod>;node=<node>`); the file provider renders Go
templates, so `env` fills in the pod and node names given by the downward API.

Traefik watches one namespace (the lab's). Its rights are split accordingly: a Role in that namespace
(Services, EndpointSlices, Secrets, Ingresses) and a ClusterRole for the two cluster-scoped kinds the
provider reads (IngressClasses, Nodes), bound per namespace so learners on a shared cluster do not
see each other.
"""

from __future__ import annotations

NAME = "edge"
IMAGE = "traefik:v3.7"
INGRESS_CLASS = "edge"
CONTROLLER = "traefik.io/ingress-controller"
WEB_PORT, ADMIN_PORT = 8000, 8080
EDGE_NODE_LABEL = "meshlab.io/edge"
POD_LABELS = {"app.kubernetes.io/name": "meshlab-edge", "meshlab.io/proxy-role": "edge"}

TRACE_MIDDLEWARE = """\
http:
  middlewares:
    meshlab-trace:
      headers:
        customRequestHeaders:
          x-meshlab-trace: 'kind=proxy;role=edge;name={{ env "POD_NAME" }};node={{ env "NODE_NAME" }}'
"""

_READ = ["get", "list", "watch"]


def _meta(name: str, namespace: str | None = None) -> dict:
    meta = {"name": name, "labels": {"app.kubernetes.io/name": "meshlab-edge", "app.kubernetes.io/managed-by": "meshlab"}}
    return {**meta, "namespace": namespace} if namespace else meta


def cluster_binding_name(namespace: str) -> str:
    """The ClusterRoleBinding that belongs to one lab namespace."""
    return f"meshlab-edge-{namespace}"


def rbac(edge_namespace: str, watched_namespace: str) -> list[dict]:
    """ServiceAccount, Role + RoleBinding (watched namespace), ClusterRole + ClusterRoleBinding."""
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": edge_namespace}]
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta("meshlab-edge", watched_namespace),
            "rules": [{"apiGroups": [""], "resources": ["services", "secrets"], "verbs": _READ},
                      {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
                      {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": _READ},
                      {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["update"]}]}
    cluster_role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta("meshlab-edge"),
                    "rules": [{"apiGroups": ["networking.k8s.io"], "resources": ["ingressclasses"], "verbs": _READ},
                              {"apiGroups": [""], "resources": ["nodes"], "verbs": _READ}]}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, edge_namespace)},
        role,
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta("meshlab-edge", watched_namespace),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "meshlab-edge"}, "subjects": subject},
        cluster_role,
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta(cluster_binding_name(watched_namespace)),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "meshlab-edge"}, "subjects": subject},
    ]


def ingress_class() -> dict:
    """IngressClass `edge`, served by Traefik (the class meshlab's stage manifests name)."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": _meta(INGRESS_CLASS),
            "spec": {"controller": CONTROLLER}}


def _args(watched_namespace: str) -> list[str]:
    return ["--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
            f"--entryPoints.web.address=:{WEB_PORT}", f"--entryPoints.traefik.address=:{ADMIN_PORT}",
            "--entryPoints.web.http.middlewares=meshlab-trace@file",
            "--providers.file.filename=/etc/meshlab/trace.yaml",
            "--providers.kubernetesIngress=true", f"--providers.kubernetesIngress.ingressClass={INGRESS_CLASS}",
            f"--providers.kubernetesIngress.namespaces={watched_namespace}",
            "--api.insecure=true", "--ping=true", "--accessLog=true", "--log.level=INFO"]


def deployment(edge_namespace: str, watched_namespace: str, host_port: int | None = None) -> dict:
    """One Traefik pod; with host_port it binds that port on the node labelled meshlab.io/edge (kind)."""
    web = {"name": "web", "containerPort": WEB_PORT, **({"hostPort": host_port} if host_port else {})}
    container = {
        "name": "traefik", "image": IMAGE, "args": _args(watched_namespace),
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "ports": [web, {"name": "admin", "containerPort": ADMIN_PORT}],
        "readinessProbe": {"httpGet": {"path": "/ping", "port": "admin"}, "periodSeconds": 2},
        "volumeMounts": [{"name": "trace", "mountPath": "/etc/meshlab", "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
    }
    pod = {"serviceAccountName": NAME, "containers": [container],
           "volumes": [{"name": "trace", "configMap": {"name": "edge-trace"}}, {"name": "tmp", "emptyDir": {}}]}
    if host_port:
        pod["nodeSelector"] = {EDGE_NODE_LABEL: "true"}
        pod["tolerations"] = [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(NAME, edge_namespace),
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": dict(POD_LABELS)},
                     "template": {"metadata": {"labels": dict(POD_LABELS)}, "spec": pod}}}


def documents(edge_namespace: str, watched_namespace: str, host_port: int | None = None,
              with_namespace: bool = False) -> list[dict]:
    """Every object of the edge: (its Namespace,) RBAC, IngressClass, trace middleware, Deployment, Service."""
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("edge-trace", edge_namespace),
              "data": {"trace.yaml": TRACE_MIDDLEWARE}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(NAME, edge_namespace),
               "spec": {"selector": dict(POD_LABELS), "ports": [{"name": "web", "port": 80, "targetPort": "web"},
                                                         {"name": "admin", "port": ADMIN_PORT, "targetPort": "admin"}]}}
    namespace = [{"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(edge_namespace)}] if with_namespace else []
    return [*namespace, *rbac(edge_namespace, watched_namespace), ingress_class(), config,
            deployment(edge_namespace, watched_namespace, host_port), service]
