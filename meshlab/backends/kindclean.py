"""`meshlab down --all` on kind: delete every kind cluster meshlab made on this machine, and no other.

Which clusters: every `meshlab-*` cluster that `kind get clusters` lists, and every one meshlab's state has a marker
file for. A recorded one goes down as its lab's would (KindBackend.down(): marker id, port-forwards, a stage-6 lab's
CA folder). One with no marker (a crashed test run's `meshlab-kindtest`: each test session has its own
MESHLAB_HOME; a wiped state folder) is meshlab's only if its nodes carry meshlab's label, read with
`kubectl --context kind-NAME get nodes -l meshlab.io/owned=true`; without the label, or when the labels cannot be
read (a stopped cluster), it is left alone and reported.

One more guard: up() writes the state folder that made the cluster into it (ConfigMap kube-system/meshlab-owner).
An unrecorded cluster whose maker's folder still holds its marker belongs to a meshlab that is alive with another
MESHLAB_HOME (a test session's `meshlab down --all` must not take a learner's lab cluster): it is left alone, with
the command that removes it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .cluster import OWNED_LABEL
from .kubectl import Kubectl, Runner, check
from .state import NAME, state_root

PREFIX = "meshlab-"
OWNER = "meshlab-owner"  # ConfigMap in kube-system: which state folder made the cluster
OWNER_NAMESPACE = "kube-system"


@dataclass
class Cleanup:
    """What down_all() did: the clusters it deleted, and the meshlab-* ones it left alone (why, and what to do)."""

    checked: bool = False  # False when kind is not installed: there can be no kind cluster to remove
    removed: list[str] = field(default_factory=list)
    left: list[tuple[str, str]] = field(default_factory=list)


def records() -> dict[str, dict]:
    """Cluster name -> marker data for every kind marker file in meshlab's state."""
    found = {}
    for path in sorted((state_root() / "kind").glob(f"{PREFIX}*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            found[path.stem] = data
    return found


def labelled(runner: Runner, cluster: str) -> tuple[bool, str]:
    """Whether the cluster's nodes carry meshlab's label, and if not, why not (one line)."""
    result = Kubectl(f"kind-{cluster}", None, runner).call("get", "nodes", "-l", f"{OWNED_LABEL}=true", "-o", "name",
                                                           namespace=None, timeout=30)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
        return False, f"could not read its nodes' labels ({lines[-1].strip() if lines else 'kubectl failed'})"
    if not result.stdout.strip():
        return False, f"its nodes lack meshlab's label {OWNED_LABEL}=true"
    return True, ""


def owner_record(cluster: str) -> dict:
    """The ConfigMap up() applies into a new cluster: the state folder (MESHLAB_HOME) that records it."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": OWNER, "namespace": OWNER_NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "meshlab"}},
            "data": {"home": str(state_root()), "cluster": cluster}}


def recorded_elsewhere(runner: Runner, cluster: str) -> str:
    """The other state folder that made this cluster and still records it, or "" (none, gone, or unreadable)."""
    result = Kubectl(f"kind-{cluster}", None, runner).call("get", "configmap", OWNER, "-o", "jsonpath={.data.home}",
                                                           namespace=OWNER_NAMESPACE, timeout=30)
    home = result.stdout.strip() if result.returncode == 0 else ""
    if home and Path(home) != state_root() and (Path(home) / "kind" / f"{cluster}.json").is_file():
        return home
    return ""


def backend_for(cluster: str, data: dict, runner: Runner, progress):
    """The KindBackend that made a recorded cluster: a stage-6 member (its marker names lab and member) or a lab's own."""
    from .kind import KindBackend

    if data.get("member") and data.get("lab") and cluster == f"{PREFIX}{data['lab']}-{data['member']}":
        return KindBackend(data["lab"], runner=runner, progress=progress, member=data["member"],
                           network=data.get("network", ""), region=data.get("region", ""))
    lab = cluster.removeprefix(PREFIX)
    return KindBackend(lab, runner=runner, progress=progress) if NAME.match(lab) else None


def down_all(runner: Runner | None = None, progress=None, which=shutil.which) -> Cleanup:
    """Delete every kind cluster meshlab made (see the module docstring); report the meshlab-* ones left alone."""
    done = Cleanup()
    if not which("kind"):
        return done
    runner, progress = runner or Runner(), progress or (lambda message: print(message, flush=True))
    done.checked = True
    listed = check(runner.run(["kind", "get", "clusters"], timeout=60), "kind get clusters",
                   "start Docker, then run `meshlab down --all` again").split()
    recorded = records()
    # Members first: a lab's own down() would take its members down with it, unreported.
    order = sorted(recorded, key=lambda name: not recorded[name].get("member"))
    for cluster in order:
        backend = backend_for(cluster, recorded[cluster], runner, progress)
        if backend is None:
            continue
        backend.down()
        if backend.state.read():
            why = ("its control-plane container is not the one meshlab recorded" if recorded[cluster].get("control_plane_id")
                   else f"its nodes lack meshlab's label {OWNED_LABEL}=true")
            done.left.append((cluster, f"{why}; {yours(cluster)}"))
        elif cluster in listed:
            done.removed.append(cluster)
    for cluster in (name for name in listed if name.startswith(PREFIX) and name not in recorded):
        ours, why = labelled(runner, cluster)
        if not ours:
            done.left.append((cluster, f"{why}; {yours(cluster)}"))
            continue
        home = recorded_elsewhere(runner, cluster)
        if home:
            done.left.append((cluster, f"meshlab with MESHLAB_HOME={home} records it; to remove it run "
                                       f"`MESHLAB_HOME={home} meshlab down --all`"))
            continue
        progress(f"[kind] deleting kind cluster {cluster} (meshlab's node label, no record: left by a crashed run?)")
        check(runner.run(["kind", "delete", "cluster", "--name", cluster], timeout=300), f"kind delete cluster {cluster}")
        done.removed.append(cluster)
    return done


def yours(cluster: str) -> str:
    """What to do about a cluster down_all() left alone because it may not be meshlab's."""
    return f"if it is yours, delete it yourself: kind delete cluster --name {cluster}"
