"""Blobs: task code, inputs and outputs, named by their SHA-256.

The rooms, as in every package:

* :mod:`.store`: the content-addressed files on disk (blocking; drivers call it);
* :mod:`.core`: the facade of the pure side: announcements, withdrawals, queries, syncs, and
  the fetches, over :mod:`.locations` (who holds what, compactly) and :mod:`.transfer` (one
  fetch from several holders) (pure);
* :mod:`.driver`: :class:`~icn_node.blobs.driver.BlobService`, which moves pieces,
  announcements and queries over the mesh (trio);
* :mod:`.rpc`: the ``blob.put``, ``blob.get``, ``blob.list``, ``blob.rm``, ``blob.locate``
  and ``blob.fetch`` methods.

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
