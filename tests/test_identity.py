import os
import stat

import pytest

from icn_node.errors import IdentityError
from icn_node.identity import (
    KEY_FILE,
    NodeIdentity,
    b58decode,
    b58encode,
    did_from_public_key,
    init_data_dir,
    public_key_from_did,
    verify_signature,
)


def test_did_key_known_vector():
    # did:key spec test vector for Ed25519 (w3c-ccg did-method-key).
    did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
    pub = public_key_from_did(did)
    assert len(pub) == 32
    assert did_from_public_key(pub) == did


def test_base58_round_trip_keeps_leading_zeros():
    for data in [b"", b"\0", b"\0\0abc", bytes(range(40))]:
        assert b58decode(b58encode(data)) == data


@pytest.mark.parametrize(
    "bad", ["", "did:web:example.com", "did:key:z0OIl", "did:key:z6Mk", "did:key:zQ3s"]
)
def test_malformed_did_is_refused(bad):
    with pytest.raises(IdentityError):
        public_key_from_did(bad)


def test_sign_and_verify():
    ident = NodeIdentity.generate()
    sig = ident.sign(b"hello")
    assert verify_signature(ident.did, sig, b"hello")
    assert not verify_signature(ident.did, sig, b"hellO")
    assert not verify_signature(NodeIdentity.generate().did, sig, b"hello")
    assert not verify_signature("did:key:nonsense", sig, b"hello")


def test_init_creates_private_key_and_refuses_overwrite(tmp_path):
    ident = init_data_dir(tmp_path / "d")
    key = tmp_path / "d" / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert NodeIdentity.load(key).did == ident.did
    before = key.read_bytes()
    with pytest.raises(IdentityError, match="already exists"):
        init_data_dir(tmp_path / "d")
    assert key.read_bytes() == before


def test_loose_permissions_are_refused(tmp_path):
    init_data_dir(tmp_path)
    key = tmp_path / KEY_FILE
    os.chmod(key, 0o644)
    with pytest.raises(IdentityError, match="too open"):
        NodeIdentity.load(key)


def test_missing_and_garbage_keys_are_refused(tmp_path):
    with pytest.raises(IdentityError, match="icnd init"):
        NodeIdentity.load(tmp_path / KEY_FILE)
    bad = tmp_path / KEY_FILE
    bad.write_bytes(b"not a key")
    os.chmod(bad, 0o600)
    with pytest.raises(IdentityError, match="PEM"):
        NodeIdentity.load(bad)
