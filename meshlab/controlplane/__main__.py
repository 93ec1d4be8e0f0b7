"""`python -m meshlab.controlplane`: the control plane as a pod of the lab."""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import threading
from pathlib import Path

from ..backends.base import MeshlabError
from . import ca, tokenreview
from .server import ControlPlane
from .sources import api_address, from_environment, ClusterWatch, LocalWatch

_print_lock = threading.Lock()


def log(line: str) -> None:
    """One timestamped line on stdout."""
    stamp = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
    with _print_lock:
        sys.stdout.write(f"{stamp} {line}\n")
        sys.stdout.flush()


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m meshlab.controlplane", description=__doc__)
    parser.add_argument("--xds-port", type=int, default=15010, help="gRPC ADS port (default 15010)")
    parser.add_argument("--status-port", type=int, default=15014, help="HTTP status port (default 15014)")
    parser.add_argument("--address", default=os.environ.get("POD_IP") or "127.0.0.1",
                        help="address to bind (default: $POD_IP, else 127.0.0.1)")
    parser.add_argument("--state", default=str(Path.home() / "ca"),
                        help="folder of the CA's root and intermediate (default ~/ca)")
    parser.add_argument("--debounce", type=float, default=0.02,
                        help="seconds without a new state before building (default 0.02)")
    parser.add_argument("--cert-ttl", type=float, default=ca.DEFAULT_TTL,
                        help="workload certificate lifetime in seconds (default 3600)")
    parser.add_argument("--watch-timeout", type=float, default=30.0, help="long-poll timeout in seconds")
    parser.add_argument("--api", default="", help="supervisor socket (default: $MESHLAB_API; @name is abstract)")
    parser.add_argument("--cluster", default="", help="this cluster's name in a multi-cluster mesh (istiod's CLUSTER_ID); "
                        "then peers named by remote secrets in mesh-system are watched too")
    parser.add_argument("--network", default="", help="this cluster's network (istiod's NETWORK)")
    parser.add_argument("--root-ca", default="", help="folder of the root CA shared by every cluster "
                        "(default: the --state folder); this cluster signs with its own intermediate")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run until SIGTERM or SIGINT."""
    args = parse(argv)
    options = {"poll_timeout": args.watch_timeout, "log": log}
    try:
        source = LocalWatch(api_address(args.api), **options) if args.api else from_environment(**options)
    except MeshlabError as exc:
        print(f"meshlab.controlplane: {exc}", file=sys.stderr)
        return 2
    review = tokenreview.reviewer(source.address)  # proxies show their pod's token to the runtime that issued it
    if args.cluster:
        source = ClusterWatch(source, args.cluster, args.network, log=log)
    try:
        plane = ControlPlane(args.address, args.xds_port, args.status_port, args.state, debounce=args.debounce,
                             cert_ttl=args.cert_ttl, log=log, cluster=args.cluster,
                             root_folder=args.root_ca or None, review=review).start()
    except OSError as exc:
        print(f"meshlab.controlplane: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    plane.follow(source)
    try:
        done.wait()
    finally:
        log("stopping")
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
