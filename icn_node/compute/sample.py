"""Whom a placement invites, sans-IO: a sample of k candidates instead of every executor.

Asking every executor that could fit costs O(N) messages per task and O(N) work at every
executor; asking a well-chosen sample costs O(k) with k independent of N (Nomad ranks a
power-of-two-choices sample; Sparrow probes d·m workers for m tasks and lands within 12 % of an
ideal scheduler). The sample is chosen from what the submitter already knows:

* every candidate that holds some of the task's data is invited (compute goes to data);
* the rest of the places go to the best by a cheap prior from announcements: the submitter's
  own effective trust in the executor, its announced free capacity and its queue;
* ``explore`` places go to candidates outside that ranking, picked by a hash of the task and the
  round, so newcomers and executors whose announcement is stale get asked and corrected, and
  different tasks explore different executors without any randomness to inject.

Executors still score themselves on live state and the submitter still ranks the offers with
its own trust: the sample only decides who is asked. A round nobody in the sample takes is
retried with the sample doubled (``widen``), so a task fails for want of an executor only after
everyone has been asked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable

from icn_node.scheduler.executors import ExecutorInfo

__all__ = ["choose", "explore_places", "prior"]


def explore_places(k: int) -> int:
    """How many of ``k`` places go to exploration: one in eight, at least one."""
    return max(1, k // 8)


def prior(info: ExecutorInfo, trust: float) -> float:
    """What the submitter expects of an executor before asking: trust, times how free it
    announced itself (half weight: announcements are up to an interval old), over its queue."""
    return trust * (0.5 + 0.5 * info.capacity.available_ratio()) / (1.0 + info.queue_depth)


def choose(
    candidates: Iterable[ExecutorInfo],
    k: int,
    *,
    trust: Callable[[str], float],
    holders: Collection[str] = (),
    salt: bytes = b"",
) -> frozenset[str]:
    """The DIDs to invite: all of ``candidates`` when there are at most ``k`` (or ``k`` is 0),
    else the data ``holders`` among them, the best by :func:`prior`, and a few explored."""
    pool = list(candidates)
    if k <= 0 or len(pool) <= k:
        return frozenset(i.did for i in pool)
    chosen = {i.did for i in pool if i.did in holders}
    if len(chosen) >= k:
        # More holders than places: the best of them by the prior, deterministically.
        ranked = sorted((i for i in pool if i.did in chosen), key=lambda i: _rank(i, trust))
        return frozenset(i.did for i in ranked[:k])
    rest = [i for i in pool if i.did not in chosen]
    explore = min(explore_places(k), k - len(chosen))
    best = k - len(chosen) - explore
    rest.sort(key=lambda i: _rank(i, trust))
    chosen.update(i.did for i in rest[:best])
    others = rest[best:]
    others.sort(key=lambda i: hashlib.blake2b(salt + i.did.encode(), digest_size=8).digest())
    chosen.update(i.did for i in others[:explore])
    return frozenset(chosen)


def _rank(info: ExecutorInfo, trust: Callable[[str], float]) -> tuple[float, str]:
    return (-prior(info, trust(info.did)), info.did)
