import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icn_node.blobs import BlobError, BlobStore, blob_hash, parse_blob_id


def test_put_get_is_content_addressed_and_idempotent(tmp_path):
    store = BlobStore(tmp_path)
    h = store.put(b"hello")
    assert h == blob_hash(b"hello")
    assert store.put(b"hello") == h
    assert store.get(h) == b"hello"
    assert store.size(h) == 5
    assert list(store.items()) == [(h, 5)]
    assert not os.access(store.path(h), os.W_OK) or os.getuid() == 0


def test_missing_and_corrupt_blobs_are_errors(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(BlobError, match="no blob"):
        store.get(b"\0" * 32)
    h = store.put(b"data")
    path = store.path(h)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(BlobError, match="corrupt"):
        store.get(h)


def test_chunked_writer_verifies_before_publishing(tmp_path):
    store = BlobStore(tmp_path)
    data = os.urandom(10_000)
    h = blob_hash(data)
    w = store.writer(h, len(data))
    for off in range(0, len(data), 4096):
        w.write(off, data[off : off + 4096])
    w.commit()
    assert store.get(h) == data

    bad = store.writer(blob_hash(b"other"), 5)
    bad.write(0, b"wrong")
    with pytest.raises(BlobError, match="verification"):
        bad.commit()
    assert not store.has(blob_hash(b"other"))
    assert list(store.tmp_dir.iterdir()) == []


def test_writer_refuses_gaps_and_overruns(tmp_path):
    store = BlobStore(tmp_path)
    w = store.writer(blob_hash(b"abc"), 3)
    with pytest.raises(BlobError, match="offset"):
        w.write(1, b"b")
    w.write(0, b"ab")
    with pytest.raises(BlobError, match="exceed"):
        w.write(2, b"cd")
    w.abort()


def test_put_file_and_leftover_temp_files_are_cleared(tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(b"x" * 3_000_000)
    store = BlobStore(tmp_path / "blobs")
    h, size = store.put_file(src)
    assert size == 3_000_000 and store.get(h) == src.read_bytes()
    (store.tmp_dir / "in-crashed").write_bytes(b"half")
    BlobStore(tmp_path / "blobs")
    assert list(store.tmp_dir.iterdir()) == []


def test_parse_blob_id():
    h = blob_hash(b"x")
    assert parse_blob_id(h.hex()) == h
    for bad in ["", "zz", h.hex()[:-2]]:
        with pytest.raises(BlobError, match="64 hex"):
            parse_blob_id(bad)


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=5000), chunk=st.integers(1, 700))
def test_any_chunking_reassembles(tmp_path_factory, data, chunk):
    store = BlobStore(tmp_path_factory.mktemp("b"))
    w = store.writer(blob_hash(data), len(data))
    for off in range(0, len(data), chunk):
        w.write(off, data[off : off + chunk])
    w.commit()
    assert store.get(blob_hash(data)) == data
