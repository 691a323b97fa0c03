"""Blobs: task code, inputs and outputs, named by their SHA-256.

The rooms, as in every package:

* :mod:`.store`: the content-addressed files on disk (blocking; drivers call it);
* :mod:`.core`: who holds what, when to announce, and the bookkeeping of fetches (pure);
* :mod:`.driver`: :class:`~icn_node.blobs.driver.BlobService`, which moves chunks and
  announcements over the mesh (trio);
* :mod:`.rpc`: the ``blob.put``, ``blob.get``, ``blob.list`` and ``blob.rm`` methods.

Importing this package gives the store's names only, so it pulls in no trio.
"""

from .store import (
    HASH_BYTES,
    BlobError,
    BlobStore,
    BlobWriter,
    QuotaExceeded,
    blob_hash,
    parse_blob_id,
)

__all__ = [
    "HASH_BYTES",
    "BlobError",
    "BlobStore",
    "BlobWriter",
    "QuotaExceeded",
    "blob_hash",
    "parse_blob_id",
]
