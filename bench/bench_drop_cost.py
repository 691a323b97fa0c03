"""What a flooded frame costs the node that drops it: decode plus the mesh core's checks, for
gossip over the per-(link, origin) budget (dropped as rate-limit before any signature check).

    .venv/bin/python bench/bench_drop_cost.py
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icn_dev.flood import request_frames  # noqa: E402
from icn_node import wire  # noqa: E402
from icn_node.identity import NodeIdentity  # noqa: E402
from icn_node.limits import RateLimiter  # noqa: E402
from icn_node.mesh.core import CoreConfig, MeshCore  # noqa: E402

FRAMES, ROUNDS = 5000, 5


def main() -> int:
    me, flooder = NodeIdentity.generate(), NodeIdentity.generate()
    now = time.time()
    core = MeshCore(me, CoreConfig(members=frozenset([me.did, flooder.did])), random.Random(0))
    core.start(now, ("127.0.0.1:1",))
    core.link_opened(1, flooder.did, "in", "x", now)
    core.frame_received(1, wire.Hello(1), now)
    decoder = wire.FrameDecoder(1 << 20)
    decoder.feed(b"".join(request_frames(flooder, FRAMES, now, 0.5)))
    bodies = list(decoder)
    per_frame = []
    for _ in range(ROUNDS):
        core.gossip_limit = RateLimiter(1e-9, 1)  # an exhausted budget: every frame dropped
        t = time.perf_counter()
        for body in bodies:
            core.frame_received(1, wire.decode_message(body), now)
        per_frame.append((time.perf_counter() - t) / len(bodies) * 1e6)
    print(
        f"dropped over budget: {statistics.median(per_frame):.1f} µs per frame (median of "
        f"{ROUNDS} x {FRAMES}, decode + mesh core)"
    )
    print("command: .venv/bin/python bench/bench_drop_cost.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
