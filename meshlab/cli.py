"""The `meshlab` command: doctor, up, down, status, apply, traffic, kill, restore, blast-radius, proxy-status, restart,
call, manifests, lab, progress, reset, class."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from .backends.base import MeshlabError

EXIT_USAGE = 2


def _lab(args, owned: bool = False):
    from .lab import Lab

    learner = getattr(args, "learner", None)
    backend = getattr(args, "backend", "local")
    # a CLI lab outlives the command: its kind/kube port-forwards must too, until `meshlab down` (cluster.py)
    detached = {"detached": True} if backend in ("kind", "kube") and not owned else {}
    return Lab(args.lab, backend=backend, owned=owned, **({"learner": learner} if learner else {}), **detached)


def cmd_doctor(args) -> int:
    """What each backend needs, what is here, and how to get what is missing."""
    from .doctor import report

    text, ok = report()
    print(text)
    return 0 if ok else 1


def cmd_up(args) -> int:
    lab = _lab(args)
    lab.node_count = args.nodes
    try:
        lab.up(stage=args.stage, quiet=True, keep=args.keep, **({"injection": False} if args.no_injection else {}))
    except KeyboardInterrupt:  # Lab.up has removed whatever it had started
        print(f"interrupted: lab {args.lab} was not started, nothing of it is left", file=sys.stderr)
        return 130
    print(f"lab {args.lab}: stage {lab.stage} is up ({args.backend})")
    print(f"entry: {lab.url}")
    print(f"stop it with: meshlab down --lab {args.lab}")
    return 0


def cmd_down(args) -> int:
    if args.all:
        from .backends import kindclean
        from .backends.local import down_all

        names = down_all()
        print(f"removed {len(names)} lab(s){': ' + ', '.join(names) if names else ''}")
        kind = kindclean.down_all()  # meshlab's kind clusters, checked by marker or node label
        if kind.checked:
            print(f"removed {len(kind.removed)} kind cluster(s){': ' + ', '.join(kind.removed) if kind.removed else ''}")
        for cluster, why in kind.left:
            print(f"left kind cluster {cluster}: {why}")
        return 0
    _lab(args).down()
    print(f"lab {args.lab} is down")
    return 0


def cmd_status(args) -> int:
    from .status import status_text

    lab = _lab(args)
    data = lab.status()
    print(json.dumps(data, indent=1) if args.json else status_text(data))
    return 0


def cmd_apply(args) -> int:
    from . import manifests

    text = manifests.read_file(args.file)  # UTF-8, at most 5 MiB: one line otherwise
    for ref in _lab(args).apply(text, source=args.file):
        print(f"{ref} applied")
    return 0


def cmd_traffic(args) -> int:
    result = _lab(args).traffic(n=args.n, concurrency=args.c, path=args.path, host=args.host)
    print(json.dumps(result.to_dict(), indent=1) if args.json else str(result))
    return 0


def cmd_kill(args) -> int:
    killed = _lab(args).kill(**{args.what: args.name})
    print("killed: " + ", ".join(killed))
    return 0


def cmd_restore(args) -> int:
    _lab(args).restore()
    print("restored every killed part and cleared injected faults")
    return 0


def cmd_inject(args) -> int:
    pods = _lab(args).inject(args.service, errors=args.errors, latency_ms=args.latency_ms, pod=args.pod)
    print("faults set on: " + ", ".join(pods))
    return 0


def cmd_proxy_status(args) -> int:
    rows = _lab(args).proxy_status()
    print(json.dumps([r.to_dict() for r in rows], indent=1) if args.json else rows)
    return 0 if all(r.state == "SYNCED" for r in rows) else 1


def cmd_restart(args) -> int:
    for pod in _lab(args).restart(args.workload):
        print(f"pod/{pod} ready")
    return 0


def cmd_call(args) -> int:
    headers = dict(h.split(":", 1) for h in args.header or [] if ":" in h)
    result = _lab(args).call(None if args.source == "-" else args.source, args.url, headers)
    print(result)
    return 0 if result.ok else 1


def parse_kill(items: list[str]) -> dict:
    """['proxy=node', 'node=node-2'] (or 'proxy=node,node=node-2') -> {'proxy': 'node', 'node': 'node-2'}."""
    kill = {}
    for item in (part for text in items for part in text.split(",") if part.strip()):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in ("proxy", "node", "pod") or not value.strip():
            raise MeshlabError(f"--kill {item}: expected proxy=NAME|ROLE, node=NODE or pod=NAME",
                               "e.g. --kill proxy=router, or --kill proxy=node --kill node=node-2")
        kill[key.strip()] = value.strip()
    return kill


def cmd_blast_radius(args) -> int:
    result = _lab(args).blast_radius(parse_kill(args.kill), n=args.n, concurrency=args.c)
    print(json.dumps(result.to_dict(), indent=1) if args.json else str(result))
    return 0


def cmd_manifests(args) -> int:
    from . import stages

    print(stages.yaml_text(args.stage), end="")
    return 0


def cmd_lab(args) -> int:
    from .course.launch import open_lab

    return open_lab(port=args.port, no_browser=args.no_browser)


def cmd_progress(args) -> int:
    from .course import board, progress

    if args.export:
        progress.export_csv(args.output or "-", files=args.files or None)
    else:
        print(board.progress_text())
    return 0


def cmd_reset(args) -> int:
    from .course import reset

    for line in reset.reset(args.lab_id, notebook=args.notebook):
        print(line)
    return 0


def cmd_class_setup(args) -> int:
    """The instructor's bundle for a class on a shared cluster (docs/classroom.md)."""
    from . import manifests
    from .backends import classroom, kube

    learners = classroom.parse_learners(manifests.read_file(args.learners), args.learners)
    kube.class_setup(args.context, learners, args.labs or classroom.COURSE_LABS,
                     None if args.no_istio else args.istio_namespace, args.pod_security, dry_run=args.dry_run)
    return 0


def cmd_class_teardown(args) -> int:
    from .backends import kube

    kube.class_teardown(args.context, dry_run=args.dry_run)
    return 0


class OneLineParser(argparse.ArgumentParser):
    """Argument errors in one line with a hint, not the whole usage text."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (hint: run '{self.prog} --help')\n")


def parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests)."""
    p = OneLineParser(prog="meshlab", description="Build a service mesh, stage by stage, for real.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)

    def lab_args(sp, backend=False):
        sp.add_argument("--lab", default=os.environ.get("MESHLAB_LAB", "default"), help="lab name (default: default)")
        if backend:
            sp.add_argument("--backend", choices=["local", "kind", "kube"], default=os.environ.get("MESHLAB_BACKEND", "local"),
                            help="default: $MESHLAB_BACKEND, else local")
            sp.add_argument("--learner", default=None,
                            help="kube: your name on a shared cluster (default: $MESHLAB_LEARNER, else your user name)")

    sub.add_parser("doctor", help="check what each backend needs").set_defaults(func=cmd_doctor)
    sp = sub.add_parser("up", help="start a lab at a stage")
    lab_args(sp, backend=True)
    sp.add_argument("--stage", default="0", help="0/app, 1/edge, 2/router, 3/per-node, 4/sidecar, 5/control-plane")
    sp.add_argument("--nodes", type=int, default=None, help="nodes to start (default: what the stage needs)")
    sp.add_argument("--no-injection", action="store_true",
                    help="stage 5: start with the control plane but no service in the mesh (brownfield)")
    sp.add_argument("--keep", action="store_true",
                    help="on a running lab, keep the objects you applied yourself (default: exactly the stage's objects)")
    sp.set_defaults(func=cmd_up)
    sp = sub.add_parser("down", help="remove a lab (works after a crash)")
    lab_args(sp, backend=True)
    sp.add_argument("--all", action="store_true", help="every local lab and every kind cluster meshlab made")
    sp.set_defaults(func=cmd_down)
    sp = sub.add_parser("status", help="nodes, pods and proxies")
    lab_args(sp, backend=True)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_status)
    sp = sub.add_parser("apply", help="apply a YAML file")
    lab_args(sp, backend=True)
    sp.add_argument("-f", "--file", required=True)
    sp.set_defaults(func=cmd_apply)
    sp = sub.add_parser("traffic", help="send requests and show what happened")
    lab_args(sp, backend=True)
    sp.add_argument("-n", type=int, default=100, help="number of requests")
    sp.add_argument("-c", type=int, default=4, help="concurrency")
    sp.add_argument("--path", default="/")
    sp.add_argument("--host", default=None, help="Host header")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_traffic)
    sp = sub.add_parser("kill", help="kill a pod, node or proxy, or a whole cluster of stage 6 (until restore)")
    lab_args(sp, backend=True)
    sp.add_argument("what", choices=["pod", "node", "proxy", "cluster"])
    sp.add_argument("name")
    sp.set_defaults(func=cmd_kill)
    sp = sub.add_parser("restore", help="undo kills and faults")
    lab_args(sp, backend=True)
    sp.set_defaults(func=cmd_restore)
    sp = sub.add_parser("inject", help="make a service fail or slow down")
    lab_args(sp, backend=True)
    sp.add_argument("service")
    sp.add_argument("--errors", type=float, default=0.0, help="share of requests that fail, 0..1")
    sp.add_argument("--latency-ms", type=int, default=0)
    sp.add_argument("--pod", default=None, help="only this pod")
    sp.set_defaults(func=cmd_inject)
    sp = sub.add_parser("blast-radius", help="kill one part, measure which calls break, restore")
    lab_args(sp, backend=True)
    sp.add_argument("--kill", action="append", required=True, metavar="KEY=VALUE",
                    help="proxy=router | node=node-2 | pod=reviews-v2 | proxy=node --kill node=node-2")
    sp.add_argument("-n", type=int, default=200, help="requests before and after")
    sp.add_argument("-c", type=int, default=4, help="concurrency")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_blast_radius)
    sp = sub.add_parser("proxy-status", help="every sidecar: SYNCED / STALE / NOT CONNECTED (stage 5)")
    lab_args(sp, backend=True)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_proxy_status)
    sp = sub.add_parser("restart", help="re-create a workload's pods (kubectl rollout restart)")
    lab_args(sp, backend=True)
    sp.add_argument("workload", help="e.g. deployment/reviews-v1")
    sp.set_defaults(func=cmd_restart)
    sp = sub.add_parser("call", help="GET a URL from inside a pod of an app (or - for outside the mesh)")
    lab_args(sp, backend=True)
    sp.add_argument("source", help="an app such as frontend, or - for a client outside the mesh")
    sp.add_argument("url", help="e.g. http://reviews:9080/")
    sp.add_argument("--header", "-H", action="append", metavar="NAME:VALUE")
    sp.set_defaults(func=cmd_call)
    sp = sub.add_parser("manifests", help="print a stage's YAML")
    sp.add_argument("--stage", default="0")
    sp.set_defaults(func=cmd_manifests)
    sp = sub.add_parser("lab", help="open JupyterLab on the course")
    sp.add_argument("--port", type=int, default=8888)
    sp.add_argument("--no-browser", action="store_true")
    sp.set_defaults(func=cmd_lab)
    sp = sub.add_parser("progress", help="your progress (or --export csv for a class)")
    sp.add_argument("--export", choices=["csv"])
    sp.add_argument("--output", "-o", help="CSV file (default: stdout)")
    sp.add_argument("files", nargs="*", help="progress files or folders collected from learners")
    sp.set_defaults(func=cmd_progress)
    sp = sub.add_parser("reset", help="start a lab's exercises again")
    sp.add_argument("lab_id", help="e.g. 01-edge-proxy-lab (or a unique prefix such as 01)")
    sp.add_argument("--notebook", action="store_true",
                    help="also rewrite the lab notebook from the course (your copy is kept in labs/.backups/)")
    sp.set_defaults(func=cmd_reset)
    sp = sub.add_parser("class", help="instructors: set up or tear down a class on a shared cluster (kube)")
    csub = sp.add_subparsers(dest="class_command", required=True, metavar="ACTION", parser_class=OneLineParser)
    sp = csub.add_parser("setup", help="namespaces, roles and bindings so learners need only namespace rights")
    sp.add_argument("--context", help="kubeconfig context of the class's cluster (not needed with --dry-run)")
    sp.add_argument("--learners", required=True, metavar="FILE", help="one learner per line: NAME, or NAME USER")
    sp.add_argument("--labs", nargs="+", metavar="LAB", help="lab names (default: every lab of the course)")
    sp.add_argument("--istio-namespace", default="istio-system", help="where the cluster's istiod runs (stage 5)")
    sp.add_argument("--no-istio", action="store_true", help="no stage 5: leave Istio's namespace alone")
    sp.add_argument("--pod-security", choices=["baseline", "privileged"], default="baseline",
                    help="Pod Security level enforced in the lab namespaces (default: baseline)")
    sp.add_argument("--dry-run", action="store_true", help="print the YAML, apply nothing")
    sp.set_defaults(func=cmd_class_setup)
    sp = csub.add_parser("teardown", help="delete everything class setup made, learners' work included")
    sp.add_argument("--context", required=True, help="kubeconfig context of the class's cluster")
    sp.add_argument("--dry-run", action="store_true", help="print the kubectl commands, run nothing")
    sp.set_defaults(func=cmd_class_teardown)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # see meshlab/__init__.py: loading is over
        return args.func(args)
    except MeshlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `meshlab status | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
