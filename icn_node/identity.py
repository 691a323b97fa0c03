"""Node identity: an Ed25519 key on disk and its ``did:key`` DID.

The key lives in ``<data_dir>/node.key`` as an unencrypted PKCS#8 PEM file with mode 0600. A key
file readable by group or others is refused, as OpenSSH refuses a loose private key.
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import IdentityError

KEY_FILE = "node.key"
_DID_PREFIX = "did:key:z"
# Multicodec varint for an Ed25519 public key (0xed), see the did:key method.
_ED25519_MULTICODEC = b"\xed\x01"
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}
# An Ed25519 did:key is 56 characters; anything much longer is refused before decoding.
_MAX_DID_LEN = 64


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58_ALPHABET[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        try:
            n = n * 58 + _B58_INDEX[c]
        except KeyError:
            raise IdentityError(f"invalid base58 character {c!r}") from None
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body


def did_from_public_key(public_key: bytes) -> str:
    """The ``did:key`` DID of a raw 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise IdentityError(f"an Ed25519 public key has 32 bytes, got {len(public_key)}")
    return _DID_PREFIX + b58encode(_ED25519_MULTICODEC + public_key)


def public_key_from_did(did: str) -> bytes:
    """The raw Ed25519 public key inside a ``did:key`` DID; raises IdentityError if malformed."""
    # Length first: base58 decoding is quadratic, and a DID can come from a peer's frame.
    if not isinstance(did, str) or not did.startswith(_DID_PREFIX) or len(did) > _MAX_DID_LEN:
        raise IdentityError(f"not an Ed25519 did:key DID: {_shorten(did)}")
    raw = b58decode(did[len(_DID_PREFIX) :])
    if len(raw) != 34 or raw[:2] != _ED25519_MULTICODEC:
        raise IdentityError(f"not an Ed25519 did:key DID: {_shorten(did)}")
    return raw[2:]


def _shorten(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def validate_did(did: str) -> str:
    public_key_from_did(did)
    return did


@functools.lru_cache(maxsize=4096)
def verify_key(did: str) -> nacl.signing.VerifyKey:
    """``did``'s public key, parsed once (a cooperative has few DIDs; every gossip names one).
    Raises IdentityError when ``did`` is not an Ed25519 ``did:key``."""
    return nacl.signing.VerifyKey(public_key_from_did(did))


def verify_signature(did: str, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is ``did``'s Ed25519 signature over ``data``.

    Through libsodium (PyNaCl): about half the cost of ``cryptography``'s OpenSSL path per
    verify in Python (docs/PERFORMANCE.md), and the mesh verifies every gossip message."""
    try:
        verify_key(did).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, IdentityError, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class NodeIdentity:
    """A node's private key with its public key and DID."""

    private_key: Ed25519PrivateKey
    public_key: bytes
    did: str
    _signer: nacl.signing.SigningKey = field(repr=False, compare=False)
    """The same key in libsodium, which signs faster; ``cryptography`` keeps the PEM file and
    the TLS certificate."""

    @classmethod
    def from_private_key(cls, key: Ed25519PrivateKey) -> NodeIdentity:
        pub = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return cls(key, pub, did_from_public_key(pub), nacl.signing.SigningKey(seed))

    @classmethod
    def generate(cls) -> NodeIdentity:
        return cls.from_private_key(Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        return self._signer.sign(data).signature

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def save(self, path: Path) -> None:
        """Write the key with mode 0600; never overwrites an existing file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise IdentityError(
                f"{path}: a node key already exists; refusing to overwrite it"
            ) from None
        with os.fdopen(fd, "wb") as f:
            f.write(self.private_pem())
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path: Path) -> NodeIdentity:
        """Load a key file; refuses a missing, malformed or group/world-accessible file."""
        path = Path(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise IdentityError(
                f"{path}: no node key; create one with `icnd init --data-dir {path.parent}`"
            ) from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IdentityError(
                f"{path}: permissions {stat.S_IMODE(st.st_mode):04o} are too open; "
                f"the node key must be private to its owner (chmod 600 {path})"
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as e:
            raise IdentityError(f"{path}: not a readable PEM private key ({e})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"{path}: the node key must be Ed25519")
        return cls.from_private_key(key)


def init_data_dir(data_dir: Path) -> NodeIdentity:
    """Create ``data_dir`` (mode 0700) with a new node key; refuses an existing key."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ident = NodeIdentity.generate()
    ident.save(data_dir / KEY_FILE)
    return ident
