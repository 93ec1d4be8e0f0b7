"""The mesh CA: chains verify, identities are SPIFFE URIs, keys stay private, restarts reuse, certs rotate."""

from __future__ import annotations

import datetime
import os
import stat

from cryptography import x509
from cryptography.x509 import verification

from meshlab.controlplane import ca


def chain_of(cert: ca.WorkloadCert) -> list[x509.Certificate]:
    """The leaf and intermediate of a workload certificate."""
    return x509.load_pem_x509_certificates(cert.chain_pem.encode())


def verify(authority: ca.CertificateAuthority, cert: ca.WorkloadCert) -> list[x509.Certificate]:
    """Verify the chain up to the root as a TLS client would; returns the built chain."""
    leaf, *intermediates = chain_of(cert)
    store = verification.Store(x509.load_pem_x509_certificates(authority.trust_bundle.encode()))
    verifier = verification.PolicyBuilder().store(store).build_client_verifier()
    return verifier.verify(leaf, intermediates).chain


def test_workload_chain_verifies_to_the_root_with_a_spiffe_san(tmp_path):
    authority = ca.CertificateAuthority(tmp_path / "ca")
    cert = authority.issue("shop", "shop-reviews")
    built = verify(authority, cert)
    assert len(built) == 3  # leaf, intermediate, root
    leaf = chain_of(cert)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/shop/sa/shop-reviews"]
    assert cert.identity == "spiffe://cluster.local/ns/shop/sa/shop-reviews"
    assert leaf.public_key().curve.name == "secp256r1"
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_after - cert.not_before
    assert datetime.timedelta(minutes=59) < lifetime <= datetime.timedelta(minutes=66)
    assert "PRIVATE KEY" in cert.key_pem


def test_empty_service_account_is_default():
    assert ca.spiffe_id("default", "") == "spiffe://cluster.local/ns/default/sa/default"


def test_files_are_private_and_reused_after_a_restart(tmp_path):
    folder = tmp_path / "state" / "ca"
    first = ca.CertificateAuthority(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["intermediate-default-cert.pem", "intermediate-default-key.pem", "root-cert.pem", "root-key.pem"]
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    again = ca.CertificateAuthority(folder)
    assert again.trust_bundle == first.trust_bundle
    assert again.intermediate.cert_pem == first.intermediate.cert_pem
    verify(first, again.issue("default", "web"))  # proxies configured before the restart still verify


def test_loose_permissions_are_tightened(tmp_path):
    folder = tmp_path / "ca"
    ca.CertificateAuthority(folder)
    folder.chmod(0o755)
    (folder / "root-key.pem").chmod(0o644)
    ca.CertificateAuthority(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "root-key.pem").stat().st_mode) == 0o600


def test_a_damaged_intermediate_is_replaced_under_the_same_root(tmp_path):
    first = ca.CertificateAuthority(tmp_path)
    other = ca.CertificateAuthority(tmp_path / "other")
    for name in ("intermediate-default-cert.pem", "intermediate-default-key.pem"):
        (tmp_path / name).write_bytes((tmp_path / "other" / name).read_bytes())
    again = ca.CertificateAuthority(tmp_path)
    assert again.trust_bundle == first.trust_bundle
    assert again.intermediate.cert_pem != other.intermediate.cert_pem
    verify(first, again.issue("default", "web"))


def test_one_root_an_intermediate_per_cluster(tmp_path):
    east = ca.CertificateAuthority(tmp_path / "east", cluster="east", root_folder=tmp_path / "root")
    west = ca.CertificateAuthority(tmp_path / "west", cluster="west", root_folder=tmp_path / "root")
    assert east.trust_bundle == west.trust_bundle
    assert east.intermediate.cert_pem != west.intermediate.cert_pem
    verify(east, west.issue("default", "web"))
    assert (tmp_path / "west" / "intermediate-west-key.pem").is_file()


def test_rotation_after_two_thirds_of_the_lifetime(tmp_path, monkeypatch):
    authority = ca.CertificateAuthority(tmp_path, ttl=30)
    first = authority.workload("default", "web")
    assert authority.workload("default", "web") is first
    assert authority.workload("default", "other") is not first
    lifetime = first.not_after - first.not_before
    assert first.rotate_at() == first.not_before + lifetime * 2 / 3
    assert not first.due(first.rotate_at() - datetime.timedelta(seconds=1))
    assert first.due(first.rotate_at())
    later = first.rotate_at() + datetime.timedelta(seconds=1)
    monkeypatch.setattr(ca, "_now", lambda: later)
    second = authority.workload("default", "web")
    assert second.serial != first.serial and second.identity == first.identity


def test_sds_secrets_carry_chain_key_and_root(tmp_path):
    authority = ca.CertificateAuthority(tmp_path)
    cert = authority.workload("default", "web")
    secrets = ca.sds_secrets(cert, authority.trust_bundle)
    assert set(secrets) == {"default", "ROOTCA"}
    assert secrets["default"]["tls_certificate"]["certificate_chain"]["inline_string"] == cert.chain_pem
    assert secrets["ROOTCA"]["validation_context"]["trusted_ca"]["inline_string"] == authority.trust_bundle


def test_key_files_are_never_readable_by_others_even_with_a_loose_umask(tmp_path):
    old = os.umask(0)
    try:
        ca.CertificateAuthority(tmp_path / "ca")
    finally:
        os.umask(old)
    for path in (tmp_path / "ca").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
