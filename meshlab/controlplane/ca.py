"""The mesh CA: a root, an intermediate per cluster, short-lived SPIFFE workload certificates."""

from __future__ import annotations

import datetime
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "cluster.local"
DEFAULT_TTL = 3600.0
ROOT_DAYS = 3650
INTERMEDIATE_DAYS = 365
CLOCK_SKEW = datetime.timedelta(minutes=5)  # leaves start a little in the past, as istiod's do


def spiffe_id(namespace: str, service_account: str, trust_domain: str = TRUST_DOMAIN) -> str:
    """The SPIFFE identity of a workload, as Istio writes it."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account or 'default'}"


@dataclass(frozen=True)
class WorkloadCert:
    """One issued workload certificate: PEM chain (leaf + intermediate), PEM key, validity."""

    identity: str
    chain_pem: str
    key_pem: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    serial: int

    def rotate_at(self) -> datetime.datetime:
        """When two thirds of the lifetime have passed."""
        return self.not_before + (self.not_after - self.not_before) * 2 / 3

    def due(self, now: datetime.datetime | None = None) -> bool:
        """True once the certificate should be replaced."""
        return (now or _now()) >= self.rotate_at()


@dataclass(frozen=True)
class KeyPair:
    """A CA certificate with its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> str:
        """The certificate in PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


class CertificateAuthority:
    """Keeps the root and this cluster's intermediate on disk and issues workload certs."""

    def __init__(self, folder: str | os.PathLike, cluster: str = "", ttl: float = DEFAULT_TTL,
                 trust_domain: str = TRUST_DOMAIN, root_folder: str | os.PathLike | None = None):
        self.folder = Path(folder)
        self.root_folder = Path(root_folder) if root_folder else self.folder
        self.cluster = cluster or "default"
        self.ttl = datetime.timedelta(seconds=ttl)
        self.trust_domain = trust_domain
        self._lock = threading.Lock()
        self._issued: dict[tuple[str, str, str], WorkloadCert] = {}
        self.root = load_or_create(self.root_folder, "root", "meshlab root CA", None)
        self.intermediate = load_or_create(self.folder, f"intermediate-{self.cluster}",
                                           f"meshlab intermediate CA {self.cluster}", self.root)

    @property
    def trust_bundle(self) -> str:
        """The PEM every proxy trusts (ROOTCA)."""
        return self.root.cert_pem

    def issue(self, namespace: str, service_account: str, ttl: float | None = None) -> WorkloadCert:
        """A new EC P-256 certificate for the workload, signed by the intermediate."""
        identity = spiffe_id(namespace, service_account, self.trust_domain)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        lifetime = datetime.timedelta(seconds=ttl) if ttl is not None else self.ttl
        not_before = now - min(CLOCK_SKEW, lifetime / 10)
        issuer = self.intermediate
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([]))  # as Istio's: the identity is the (critical) URI SAN
                .issuer_name(issuer.cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before)
                .not_valid_after(min(now + lifetime, issuer.cert.not_valid_after_utc))
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]),
                               critical=True)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(_usage(signing=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                               critical=False)
                .sign(issuer.key, hashes.SHA256()))
        leaf_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        return WorkloadCert(identity, leaf_pem + issuer.cert_pem, _key_pem(key).decode(),
                            cert.not_valid_before_utc, cert.not_valid_after_utc, cert.serial_number)

    def workload(self, namespace: str, service_account: str, holder: str = "") -> WorkloadCert:
        """The current certificate (own key) of one holder of an identity, reissued once due."""
        key = (holder, namespace, service_account or "default")
        with self._lock:
            current = self._issued.get(key)
            if current is None or current.due():
                current = self._issued[key] = self.issue(namespace, service_account or "default")
            return current

    def retain(self, holders) -> None:
        """Forget the certificates of holders (proxies) that are gone."""
        keep = set(holders)
        with self._lock:
            for key in [key for key in self._issued if key[0] not in keep]:
                del self._issued[key]


def sds_secrets(cert: WorkloadCert, trust_bundle: str) -> dict[str, dict]:
    """The two SDS secrets of a proxy, `default` and `ROOTCA`, in Envoy's proto3 JSON."""
    return {
        "default": {"name": "default", "tls_certificate": {
            "certificate_chain": {"inline_string": cert.chain_pem},
            "private_key": {"inline_string": cert.key_pem}}},
        "ROOTCA": {"name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_string": trust_bundle}}},
    }


def load_or_create(folder: Path, name: str, common_name: str, parent: KeyPair | None) -> KeyPair:
    """Reuse NAME-cert.pem/NAME-key.pem in folder when valid, else make and store a new CA."""
    _private_folder(folder)
    cert_path, key_path = folder / f"{name}-cert.pem", folder / f"{name}-key.pem"
    if cert_path.is_file() and key_path.is_file():
        _tighten(cert_path)
        _tighten(key_path)
        pair = KeyPair(x509.load_pem_x509_certificate(cert_path.read_bytes()),
                       serialization.load_pem_private_key(key_path.read_bytes(), password=None))
        if _still_good(pair, parent):
            return pair
    pair = _new_ca(common_name, parent)
    _write_private(key_path, _key_pem(pair.key))
    _write_private(cert_path, pair.cert_pem.encode())
    return pair


def _new_ca(common_name: str, parent: KeyPair | None) -> KeyPair:
    """A CA key pair: self-signed root when parent is None, else an intermediate under parent."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshlab"),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    days = ROOT_DAYS if parent is None else INTERMEDIATE_DAYS
    signer = parent.key if parent else key
    not_after = now + datetime.timedelta(days=days)
    if parent is not None:
        not_after = min(not_after, parent.cert.not_valid_after_utc)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(parent.cert.subject if parent else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - CLOCK_SKEW)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None if parent is None else 0),
                              critical=True)
               .add_extension(_usage(signing=True), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if parent is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()), critical=False)
    return KeyPair(builder.sign(signer, hashes.SHA256()), key)


def _still_good(pair: KeyPair, parent: KeyPair | None) -> bool:
    """The stored CA matches its key, is not near expiry and (for an intermediate) is signed by parent."""
    if pair.cert.public_key().public_numbers() != pair.key.public_key().public_numbers():
        return False
    if pair.cert.not_valid_after_utc - _now() < datetime.timedelta(days=1):
        return False
    if parent is None:
        return True
    try:
        pair.cert.verify_directly_issued_by(parent.cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _usage(signing: bool) -> x509.KeyUsage:
    """Key usage for a CA (signs certificates) or a leaf (signs TLS handshakes)."""
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=not signing,
                         data_encipherment=False, key_agreement=False, key_cert_sign=signing,
                         crl_sign=signing, encipher_only=False, decipher_only=False)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _private_folder(folder: Path) -> None:
    """Create folder (and parents) and make it 0700."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(folder.stat().st_mode) != 0o700:
        folder.chmod(0o700)


def _tighten(path: Path) -> None:
    """Make an existing file 0600."""
    if stat.S_IMODE(path.stat().st_mode) != 0o600:
        path.chmod(0o600)


def _write_private(path: Path, data: bytes) -> None:
    """Write a file atomically, created 0600 from the start (never readable by others)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _now() -> datetime.datetime:
    """The current time, timezone-aware UTC."""
    return datetime.datetime.now(datetime.timezone.utc)
