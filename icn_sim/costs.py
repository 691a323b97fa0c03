"""What one message costs a node's CPU, in one place, with where each figure comes from.

Signatures and TLS are not run in the simulator; their cost is charged to the simulated CPU of
the node that would pay it, so that a busy node's messages wait (see :mod:`icn_sim.engine`).
Measured on the project's machine (2-core AMD EPYC, CPython 3.11.7) in isolation, as quoted in
issue 12 ("Placement whose cost does not grow with the cooperative"):

* trio ``SSLStream`` adds about 105 µs per ~400-byte frame sent and per frame received
  (55 µs plain TCP against 161 µs TLS 1.3, pipelined, one process);
* Ed25519 with ``cryptography``: verify 157 µs, sign 45 µs;
* a CBOR round trip of a message: 3-5 µs.

The whole daemon measured 716-998 µs of CPU per message sent and received (``make
bench-placement``), so these pieces are a lower bound on what a real node pays: the rest is
trio scheduling, logging and the cores themselves. A scenario may override each figure
(``[cpu]``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CpuCosts"]

TLS_FRAME_US = 105.0
VERIFY_US = 157.0
SIGN_US = 45.0
CODEC_US = 4.0


@dataclass(frozen=True, slots=True)
class CpuCosts:
    """Seconds of CPU per frame sent or received (TLS + codec), per signature made, and per
    signature checked."""

    frame_s: float = (TLS_FRAME_US + CODEC_US) / 1e6
    sign_s: float = SIGN_US / 1e6
    verify_s: float = VERIFY_US / 1e6
