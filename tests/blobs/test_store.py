import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icn_node.blobs import BlobError, BlobStore, QuotaExceeded, blob_hash, parse_blob_id


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


# --- streaming in and out ----------------------------------------------------------------------


def test_a_sink_names_the_blob_by_its_hash_and_a_second_copy_changes_nothing(tmp_path):
    store = BlobStore(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 17)
    sink = store.sink()
    for off in range(0, len(data), 1 << 20):
        sink.write(data[off : off + (1 << 20)])
    h, size = sink.commit()
    assert (h, size) == (blob_hash(data), len(data))
    assert store.stored_bytes == len(data)
    assert store.put_stream(io.BytesIO(data)) == (h, len(data))  # the same blob again
    assert store.stored_bytes == len(data)
    assert list(store.tmp_dir.iterdir()) == []


def test_a_reader_gives_the_blob_in_pieces_and_catches_rot(tmp_path):
    store = BlobStore(tmp_path)
    data = os.urandom(100_000)
    h = store.put(data)
    r = store.reader(h)
    got = b"".join(iter(lambda: r.read(30_000), b""))
    r.verify()
    r.close()
    assert got == data and r.size == len(data)
    os.chmod(store.path(h), 0o644)
    store.path(h).write_bytes(b"rotten" + data[6:])
    r = store.reader(h)
    while r.read(30_000):
        pass
    with pytest.raises(BlobError, match="corrupt on disk"):
        r.verify()
    r.close()
    with pytest.raises(BlobError, match="no blob"):
        store.reader(blob_hash(b"absent"))


def test_the_running_total_is_counted_at_start_and_kept_by_puts_and_deletes(tmp_path):
    store = BlobStore(tmp_path)
    a, b = store.put(b"a" * 1000), store.put(b"b" * 500)
    assert store.stored_bytes == 1500
    assert BlobStore(tmp_path).stored_bytes == 1500  # counted once at start
    assert store.delete(a) == 1000
    assert store.delete(a) is None
    assert store.stored_bytes == 500 and store.has(b)


# --- quota -------------------------------------------------------------------------------------


def test_a_put_past_the_quota_is_refused_naming_the_quota_and_the_sizes(tmp_path):
    store = BlobStore(tmp_path, quota_bytes=10_000)
    store.put(b"x" * 6000)
    with pytest.raises(QuotaExceeded) as err:
        store.put(b"y" * 5000)
    assert str(err.value) == (
        "blob store quota exceeded: blobs.quota_mb is 0.00953674 MB (10000 bytes); 6000 bytes "
        "are stored, and this blob needs 5000 bytes"
    )
    with pytest.raises(QuotaExceeded, match="needs 5000 bytes"):
        store.check_room(5000)
    store.check_room(4000)
    assert store.put(b"z" * 4000)  # exactly up to the quota fits
    assert store.stored_bytes == 10_000
    assert list(store.tmp_dir.iterdir()) == []


def test_a_stream_is_stopped_when_it_reaches_the_quota_and_its_room_is_given_back(tmp_path):
    store = BlobStore(tmp_path, quota_bytes=10_000)
    with pytest.raises(QuotaExceeded, match="needs 12000 bytes and more"):
        store.put_stream(io.BytesIO(b"s" * 50_000), chunk=4000)
    assert list(store.tmp_dir.iterdir()) == []
    assert store.put(b"f" * 10_000)  # nothing is left reserved


def test_transfers_in_flight_share_the_quota(tmp_path):
    store = BlobStore(tmp_path, quota_bytes=10_000)
    fetch = store.writer(blob_hash(b"p" * 6000), 6000)  # a fetch reserves its whole size
    with pytest.raises(QuotaExceeded, match="6000 reserved by other transfers"):
        store.writer(blob_hash(b"q" * 5000), 5000)
    fetch.abort()
    other = store.writer(blob_hash(b"q" * 5000), 5000)
    other.write(0, b"q" * 5000)
    other.commit()
    assert store.stored_bytes == 5000
