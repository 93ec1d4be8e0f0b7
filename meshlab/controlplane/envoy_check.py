"""Check a snapshot with Envoy itself (`--mode validate`): its xDS resources folded into a static bootstrap."""

from __future__ import annotations

import copy
import datetime
import functools
import json
import subprocess
import tempfile
from pathlib import Path

from ..backends.base import MeshlabError
from ..envoy.binary import find
from ..envoy.validate import error_line
from .snapshot import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, Snapshot, content_version
from .translate.common import SECRET_CERT, SECRET_ROOT

HINT = "nothing was changed and the proxies keep their current config; fix the object and apply again"
VALIDATE_TIMEOUT = 60


@functools.cache
def test_pem() -> tuple[str, str]:
    """(certificate, key) of a throwaway self-signed workload cert, made once per process, for validate mode."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshlab validate")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(
                "spiffe://cluster.local/ns/default/sa/validate")]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def static_secrets() -> list[dict]:
    """`default` and `ROOTCA` as static secrets, standing in for what the ADS server sends over SDS."""
    cert, key = test_pem()
    return [{"name": SECRET_CERT, "tls_certificate": {"certificate_chain": {"inline_string": cert},
                                                      "private_key": {"inline_string": key}}},
            {"name": SECRET_ROOT, "validation_context": {"trusted_ca": {"inline_string": cert}}}]


def _static_refs(value, routes: dict):
    """A copy where RDS becomes the inline route config and SDS refs name static secrets (no ADS left)."""
    if isinstance(value, list):
        return [_static_refs(v, routes) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, sub in value.items():
        if key == "rds":
            name = sub.get("route_config_name")
            out["route_config"] = _static_refs(routes.get(name) or {"name": name}, routes)
        elif key == "sds_config":
            continue
        else:
            out[key] = _static_refs(sub, routes)
    return out


def static_cluster(cluster: dict, endpoints: dict) -> dict:
    """An EDS cluster turned STATIC with its ClusterLoadAssignment folded in."""
    out = copy.deepcopy(cluster)
    if out.get("type") == "EDS":
        service = (out.pop("eds_cluster_config", None) or {}).get("service_name") or out["name"]
        out["type"] = "STATIC"
        out["load_assignment"] = {**(endpoints.get(service) or {"endpoints": []}), "cluster_name": out["name"]}
    return out


def bootstrap(snapshot: Snapshot) -> dict:
    """A bootstrap that holds every resource of the snapshot statically, which validate mode checks in full."""
    routes = snapshot.resources.get(ROUTE_TYPE) or {}
    endpoints = snapshot.resources.get(ENDPOINT_TYPE) or {}
    listeners = [_static_refs(body, routes) for body in (snapshot.resources.get(LISTENER_TYPE) or {}).values()]
    clusters = [_static_refs(static_cluster(body, endpoints), routes)
                for body in (snapshot.resources.get(CLUSTER_TYPE) or {}).values()]
    return {"node": {"id": "meshlab-validate", "cluster": "meshlab-validate"},
            "static_resources": {"listeners": listeners, "clusters": clusters, "secrets": static_secrets()}}


def problem(snapshot: Snapshot) -> str | None:
    """None when Envoy accepts the snapshot; else its one-line complaint."""
    with tempfile.TemporaryDirectory(prefix="meshlab-xds-validate-") as folder:
        path = Path(folder) / f"snapshot-{content_version(snapshot.resources)}.json"
        path.write_text(json.dumps(bootstrap(snapshot)))
        try:
            done = subprocess.run([find(), "--mode", "validate", "-c", str(path), "-l", "critical",
                                   "--disable-hot-restart"], capture_output=True, text=True, timeout=VALIDATE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return f"envoy --mode validate did not finish in {VALIDATE_TIMEOUT} s"
    return None if done.returncode == 0 else error_line(done.stdout + done.stderr)


def validate(snapshot: Snapshot, source: str = "<yaml>") -> None:
    """Raise a one-line MeshlabError with Envoy's reason when it would reject the snapshot."""
    reason = problem(snapshot)
    if reason:
        raise MeshlabError(f"{source}: Envoy would reject the sidecar config (version {snapshot.version}): {reason}", HINT)
