"""TLS for mesh links: a self-signed certificate per node key, contexts, the dialer's proof.

Both ends of a link learn each other's DID only from a key the other has *proven* it holds:

* The listener presents a self-signed X.509 certificate for its Ed25519 node key. TLS 1.3's
  CertificateVerify proves it holds that key; the dialer reads the key from the certificate and
  derives the DID (:func:`did_from_certificate`), then checks it against the DID it expected or
  the allowlist. The certificate's names and validity dates are never trusted for anything.
* The dialer does not present a certificate (stdlib ``ssl`` cannot accept an unknown
  self-signed client certificate). Instead, inside the TLS channel, the listener sends a fresh
  nonce and the dialer signs ``label || nonce || SHA-256(listener certificate)``
  (:func:`make_proof`). The certificate hash is the channel binding of RFC 5929
  ``tls-server-end-point``: a man in the middle terminating TLS with its own certificate would
  get a proof over *its* certificate's hash, which the real listener refuses.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from ..errors import RemoteProtocolError
from ..identity import NodeIdentity, did_from_public_key, verify_signature
from ..wire import Auth, link_auth_bytes


def self_signed_certificate(identity: NodeIdentity) -> x509.Certificate:
    """A certificate for the node key, signed by itself; its subject CN is the DID."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.did[-60:])])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(identity.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(identity.private_key, None)
    )


def certificate_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def server_context(identity: NodeIdentity, cert: x509.Certificate) -> ssl.SSLContext:
    """TLS 1.3 only, presenting ``cert``; asks for no client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    # load_cert_chain only reads files: write them to a private directory and remove it.
    with tempfile.TemporaryDirectory(prefix="icn-tls-") as tmp:
        cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.touch(mode=0o600)
        key_path.write_bytes(identity.private_pem())
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


def client_context() -> ssl.SSLContext:
    """TLS 1.3 only. Chain and host name checks are off on purpose: the dialer checks the
    certificate's *key* against the DID it expects (:func:`did_from_certificate`)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def did_from_certificate(der: bytes | None) -> str:
    """The DID of the Ed25519 key in a peer's certificate; RemoteProtocolError otherwise."""
    if not der:
        raise RemoteProtocolError("the listener presented no certificate")
    try:
        key = x509.load_der_x509_certificate(der).public_key()
    except ValueError as e:
        raise RemoteProtocolError(f"unreadable certificate: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise RemoteProtocolError(f"certificate key is {type(key).__name__}, not Ed25519")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return did_from_public_key(raw)


def make_proof(identity: NodeIdentity, nonce: bytes, listener_cert_der: bytes) -> Auth:
    """The dialer's answer to the listener's challenge, bound to the listener's certificate."""
    return Auth(identity.did, identity.sign(link_auth_bytes(nonce, listener_cert_der)))


def check_proof(auth: Auth, nonce: bytes, own_cert_der: bytes) -> bool:
    """True when ``auth`` was signed by ``auth.did`` over our nonce and our certificate."""
    return verify_signature(auth.did, auth.signature, link_auth_bytes(nonce, own_cert_der))


def cert_fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()
