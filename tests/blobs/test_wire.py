"""The blob messages' own checks: a malformed one is refused at decode, naming what is wrong."""

from __future__ import annotations

import cbor2
import pytest

from icn_node import wire
from icn_node.errors import CodecError

H = bytes(range(32))


def raw(tag: str, fields: dict) -> bytes:
    return cbor2.dumps([tag, fields])


@pytest.mark.parametrize(
    ("tag", "fields", "words"),
    [
        ("blob_fetch", {"request_id": 1, "blob": H, "offset": 0, "length": 0}, "bad range"),
        (
            "blob_fetch",
            {"request_id": 1, "blob": H, "offset": 0, "length": 1, "cause": ""},
            "cause",
        ),
        (
            "blob_fetch",
            {"request_id": 1, "blob": H, "offset": 0, "length": 1, "cause": "x" * 33},
            "cause",
        ),
        ("blob_hashes_request", {"request_id": 1, "blob": H, "first": -1}, "first"),
        (
            "blob_hashes",
            {"request_id": 1, "blob": H, "size": 1, "first": 0, "hashes": b"x"},
            "multiple of 32",
        ),
        (
            "blob_hashes",
            {"request_id": 1, "blob": H, "size": 1, "first": 0, "hashes": bytes(32 * 8193)},
            "at most 8192",
        ),
        (
            "blob_hashes",
            {"request_id": 1, "blob": H, "size": -1, "first": 0, "hashes": b""},
            "negative",
        ),
        ("blob_have", {"blobs": [[H, 1]], "refresh_s": 0.5}, "refresh_s"),
        ("blob_have", {"blobs": [[H, -1]], "refresh_s": 600.0}, "negative size"),
        ("blob_have", {"blobs": [[b"short", 1]]}, "missing fields"),
        ("blob_withdraw", {"blobs": []}, "1-256 blob hashes"),
        ("blob_query", {"blobs": [H] * 65}, "1-64 blob hashes"),
        ("blob_query", {"blobs": [b"short"]}, "32 bytes"),
        ("blob_sync", {"extra": 1}, "unknown fields"),
    ],
)
def test_malformed_blob_messages_are_codec_errors(tag, fields, words):
    with pytest.raises(CodecError, match=words):
        wire.decode_message(raw(tag, fields))


def test_a_hash_list_splits_into_hashes():
    msg = wire.BlobHashesMsg(1, H, 3, 0, H + bytes(32))
    assert msg.hash_list() == [H, bytes(32)]
