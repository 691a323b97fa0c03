"""What a submitter has seen of each executor, sans-IO: penalties that lower its effective trust,
and the checks that catch an offer lying about what its executor announced.

**Effective trust** = the configured trust × (1 − penalty). A penalty is added when this
submitter catches the executor out — an offer that contradicts its own announcements
(:data:`LIE`), a run past its deadline (:data:`OVERRUN`), a result that fails verification
(:data:`VERIFY`), a task lost on it (:data:`LOST`) — and halves every ``half_life_s``, so an
executor that behaves earns its place back. Each submitter keeps its own: nothing here is
gossiped, so a member cannot talk down another.

**Checking an offer** (:func:`offer_lie`). An executor scores itself; the submitter recomputes
the score with its own trust, but the other components are the executor's word. Some of that
word can be checked against what the executor announced and what the submitter knows:

- a component that no hint applies to is neutral (0.5) — an honest policy never reports more;
- the jitter component is a draw in [0, 1) — exactly 1.0 is not a draw;
- an executor outside a required region (by its own announcement) cannot offer at all.

Free capacity, queue length and the data held are *not* checked against what was announced:
they change between two announcements (a one-second task turns a full node free; a blob fetched
a moment ago is held before its announcement arrives), so any margin either misses the liar or
catches the honest. Measured: checking capacity and queue with a 0.35 margin refused honest
offers under load in the 50-task real-process test, and checking data held against the
submitter's blob locations shut honest executors out during the chaos run (27 of 100 tasks
failed ``no_executor``). A liar about them wins placements it then has to run; an overrun, a
lost task or a wrong result (replicas) is what catches it.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from icn_node.scheduler.executors import ExecutorInfo
from icn_node.scheduler.policy import NEUTRAL, PlacementOffer, PlacementRequest

__all__ = ["LIE", "LOST", "OVERRUN", "PENALTIES", "VERIFY", "Reputation", "offer_lie"]

LIE = "lie"
OVERRUN = "overrun"
VERIFY = "verify"
LOST = "lost"
PENALTIES = {LIE: 0.5, OVERRUN: 0.3, VERIFY: 0.5, LOST: 0.1}
"""How much each kind of misbehaviour adds to an executor's penalty (capped at 1)."""

MAX_TRACKED = 10_000


FAULTS = frozenset({LOST})
"""Penalties for unreliability (as opposed to dishonesty): they lower an executor's rank but
never exclude it."""


class Reputation:
    """Penalties by DID, each decaying with ``half_life_s``; bounded (the least penalised are
    forgotten first once :data:`MAX_TRACKED` are held).

    Two accounts per executor: *malice* (a lie, a wrong result, an overrun) and *fault* (a task
    lost on it). Both lower its effective trust, which ranks offers; only malice counts against
    ``min_trust``, so a flaky host under load is ranked down but never shut out, while a caught
    liar is shut out once its penalty brings it below the threshold."""

    def __init__(self, half_life_s: float = 600.0) -> None:
        self.half_life_s = half_life_s
        self._penalties: OrderedDict[str, tuple[float, float, float]] = OrderedDict()

    def _now(self, did: str, now: float) -> tuple[float, float]:
        entry = self._penalties.get(did)
        if entry is None:
            return 0.0, 0.0
        malice, fault, at = entry
        k = math.pow(0.5, max(0.0, now - at) / self.half_life_s)
        return malice * k, fault * k

    def penalty(self, did: str, now: float) -> float:
        """The combined penalty in [0, 1]: 1 − (1 − malice)(1 − fault)."""
        malice, fault = self._now(did, now)
        return 1.0 - (1.0 - malice) * (1.0 - fault)

    def malice(self, did: str, now: float) -> float:
        return self._now(did, now)[0]

    def penalize(self, did: str, reason: str, now: float) -> float:
        """Add the penalty for ``reason``; returns the new combined penalty."""
        malice, fault = self._now(did, now)
        if reason in FAULTS:
            fault = min(1.0, fault + PENALTIES[reason])
        else:
            malice = min(1.0, malice + PENALTIES[reason])
        self._penalties[did] = (malice, fault, now)
        self._penalties.move_to_end(did)
        if len(self._penalties) > MAX_TRACKED:
            least = min(self._penalties, key=lambda d: self.penalty(d, now))
            del self._penalties[least]
        return self.penalty(did, now)

    def effective(self, did: str, trust: float, now: float) -> float:
        """Trust for ranking: less every penalty."""
        return trust * (1.0 - self.penalty(did, now))

    def honest(self, did: str, trust: float, now: float) -> float:
        """Trust for the ``min_trust`` gate: less malice only."""
        return trust * (1.0 - self.malice(did, now))

    def penalised(self, now: float) -> dict[str, float]:
        """Every DID with a penalty above 1 %, for views."""
        return {d: p for d in self._penalties if (p := self.penalty(d, now)) > 0.01}


def offer_lie(
    offer: PlacementOffer,
    request: PlacementRequest,
    info: ExecutorInfo | None,
) -> str | None:
    """Why ``offer`` cannot be honest, or None. ``info``: the executor's latest announcement
    (None: never heard, so only the structural checks apply)."""
    c = offer.components
    plan = request._plan
    if c.jitter >= 1.0:
        return f"jitter {c.jitter:g} is not a draw in [0, 1)"
    locality_applies = bool(plan.data_blobs or plan.colocate or plan.prefer_dids)
    if not locality_applies and c.locality > NEUTRAL:
        return f"locality {c.locality:g} with no locality hint or data (neutral is {NEUTRAL})"
    network_applies = bool(plan.max_rtt_ms or plan.min_mbps or plan.prefer_regions)
    if not network_applies and c.network > NEUTRAL:
        return f"network {c.network:g} with no network hint (neutral is {NEUTRAL})"
    if info is None:
        return None
    if plan.require_regions and info.region not in plan.require_regions:
        return (
            f"announced region {info.region!r} is not the required {sorted(plan.require_regions)}"
        )
    return None
