"""Blobs: task code, inputs and outputs, named by their SHA-256.

:mod:`.store` holds the content-addressed files on disk (blocking; drivers call it).
"""

from .store import HASH_BYTES, BlobError, BlobStore, BlobWriter, blob_hash, parse_blob_id

__all__ = ["HASH_BYTES", "BlobError", "BlobStore", "BlobWriter", "blob_hash", "parse_blob_id"]
