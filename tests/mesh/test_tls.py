"""Certificates and the channel-bound link proof."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from icn_node.errors import RemoteProtocolError
from icn_node.identity import NodeIdentity
from icn_node.mesh import tls

LISTENER, DIALER, MITM = (NodeIdentity.generate() for _ in range(3))


def test_the_certificate_key_is_the_node_key():
    der = tls.certificate_der(tls.self_signed_certificate(LISTENER))
    assert tls.did_from_certificate(der) == LISTENER.did


def test_a_proof_verifies_only_for_the_certificate_and_nonce_it_was_made_for():
    real = tls.certificate_der(tls.self_signed_certificate(LISTENER))
    relay = tls.certificate_der(tls.self_signed_certificate(MITM))
    nonce = b"\x01" * 32
    proof = tls.make_proof(DIALER, nonce, real)
    assert tls.check_proof(proof, nonce, real)
    assert not tls.check_proof(proof, b"\x02" * 32, real)  # not for another challenge
    # A man in the middle terminates TLS with its own certificate: the dialer's proof covers
    # that certificate's hash, so relaying it to the real listener fails.
    relayed = tls.make_proof(DIALER, nonce, relay)
    assert not tls.check_proof(relayed, nonce, real)


def test_a_non_ed25519_certificate_is_refused():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(RemoteProtocolError, match="not Ed25519"):
        tls.did_from_certificate(tls.certificate_der(cert))
    with pytest.raises(RemoteProtocolError, match="no certificate"):
        tls.did_from_certificate(None)
    with pytest.raises(RemoteProtocolError, match="unreadable"):
        tls.did_from_certificate(b"garbage")


def test_contexts_are_tls13_only():
    import ssl

    server = tls.server_context(LISTENER, tls.self_signed_certificate(LISTENER))
    client = tls.client_context()
    assert server.minimum_version == client.minimum_version == ssl.TLSVersion.TLSv1_3
