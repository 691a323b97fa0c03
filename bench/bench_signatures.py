"""Ed25519 sign and verify per 400-byte gossip body: cryptography (OpenSSL) against PyNaCl
(libsodium), the same key and message, medians of 7 rounds of 2,000 each.

    .venv/bin/python bench/bench_signatures.py
"""

from __future__ import annotations

import statistics
import sys
import time

import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROUNDS, N = 7, 2000


def per_call_us(fn) -> float:
    times = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        for _ in range(N):
            fn()
        times.append((time.perf_counter() - t) / N * 1e6)
    return statistics.median(times)


def main() -> int:
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pub = key.public_key()
    signer = nacl.signing.SigningKey(seed)
    verifier = signer.verify_key
    msg = bytes(range(256)) + bytes(144)
    sig = key.sign(msg)
    assert signer.sign(msg).signature == sig  # the same signature either way
    rows = [
        ("sign", per_call_us(lambda: key.sign(msg)), per_call_us(lambda: signer.sign(msg))),
        (
            "verify",
            per_call_us(lambda: pub.verify(sig, msg)),
            per_call_us(lambda: verifier.verify(msg, sig)),
        ),
    ]
    print("| operation | cryptography (OpenSSL) | PyNaCl (libsodium) |")
    print("|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a:.1f} µs | {b:.1f} µs |")
    print(f"command: {' '.join([sys.executable.split('/')[-1], *sys.argv])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
