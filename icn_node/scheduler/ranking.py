"""The submitter's side: rank the offers that came back for a task.

An offer's ``score`` and ``components.trust`` are the executor's claims. :func:`rank_offers`
ignores both: it takes the trust figure from the submitter's own trust table, recomputes the
score from the components with the submitter's weights, rejects what is malformed or out of
range, and sorts into a total order that does not depend on the order offers arrived in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from icn_node import codec
from icn_node.errors import CodecError, ResourceError
from icn_node.scheduler import _checks as chk
from icn_node.scheduler.policy import (
    COMPONENTS,
    MIN_TRUST_EXECUTE,
    PlacementOffer,
    ScoreComponents,
    Weights,
)

__all__ = ["RankedOffer", "Ranking", "RejectedOffer", "rank_offers"]


@dataclass(frozen=True, slots=True)
class RankedOffer(codec.Document):
    """An accepted offer with the score and trust the submitter computed for it."""

    offer: PlacementOffer
    score: float
    trust: float


@dataclass(frozen=True, slots=True)
class RejectedOffer(codec.Document):
    """An offer left out, with why. ``executor`` is None when the offer could not be read."""

    executor: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Ranking:
    """Accepted offers best first, and the rejected ones (sorted by executor, then reason)."""

    ranked: tuple[RankedOffer, ...]
    rejected: tuple[RejectedOffer, ...]

    @property
    def best(self) -> RankedOffer | None:
        return self.ranked[0] if self.ranked else None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.ranked)

    def __len__(self) -> int:
        return len(self.ranked)


def _sort_key(r: RankedOffer) -> tuple[Any, ...]:
    o = r.offer
    # Higher score, then higher submitter trust, cheaper, sooner; then the executor DID (unique
    # after de-duplication) and, for two offers from one executor, every remaining field.
    return (
        -r.score,
        -r.trust,
        o.cost,
        o.estimated_start,
        o.executor,
        o.components.as_tuple(),
        o.offered_at,
        o.task_hash,
        o.score,
    )


def rank_offers(
    offers: Iterable[PlacementOffer | Mapping[str, Any]],
    trust: Mapping[str, float],
    *,
    weights: Weights | str = "phase16c",
    min_trust: float = MIN_TRUST_EXECUTE,
    task_hash: bytes | None = None,
    max_cost: int | None = None,
) -> Ranking:
    """Rank ``offers`` for the submitter.

    ``trust`` is the submitter's trust table (DID -> [0, 1]); an executor missing from it has
    trust 0. The trust component of each offer is replaced by that figure, and the score is
    recomputed from the components with ``weights`` (a :class:`Weights` or a name from
    ``WEIGHT_SETS``). Offers are rejected when they cannot be parsed (dicts go through
    :meth:`PlacementOffer.from_dict`), a component is outside [0, 1], the task hash differs from
    ``task_hash``, the executor's trust is below ``min_trust``, or the cost exceeds
    ``max_cost``. Of several offers from one executor only the best is kept. Ties are broken by
    trust, cost, start time and DID, so the result does not depend on the input order.
    """
    w = Weights.named(weights) if isinstance(weights, str) else weights
    if not isinstance(w, Weights):
        raise ResourceError("weights: expected a Weights or a weight set name")
    wt = w.normalised().as_tuple()
    best: dict[str, RankedOffer] = {}
    rejected: list[RejectedOffer] = []
    for raw in offers:
        try:
            offer = raw if isinstance(raw, PlacementOffer) else PlacementOffer.from_dict(raw)
        except (ResourceError, CodecError) as e:
            ex = raw.get("executor") if isinstance(raw, Mapping) else None
            rejected.append(RejectedOffer(ex if isinstance(ex, str) else None, f"malformed: {e}"))
            continue
        reason = _problem(offer, task_hash, max_cost)
        t = 0.0
        if reason is None:
            t = trust.get(offer.executor, 0.0)
            chk.number(f"trust[{offer.executor}]", t, lo=0.0, hi=1.0)
            if t < min_trust:
                reason = f"untrusted: submitter trust {t:g} is below {min_trust:g}"
        if reason is not None:
            rejected.append(RejectedOffer(offer.executor, reason))
            continue
        c = offer.components
        s = math.fsum(
            (
                t * wt[0],
                c.capacity * wt[1],
                c.queue * wt[2],
                c.locality * wt[3],
                c.network * wt[4],
                c.jitter * wt[5],
            )
        )
        r = RankedOffer(offer, min(1.0, max(0.0, s)), t)
        prev = best.get(offer.executor)
        if prev is None:
            best[offer.executor] = r
        else:
            keep, drop = sorted((prev, r), key=_sort_key)
            best[offer.executor] = keep
            rejected.append(
                RejectedOffer(
                    drop.offer.executor, "duplicate: a better offer from the same executor was kept"
                )
            )
    ranked = tuple(sorted(best.values(), key=_sort_key))
    rejected.sort(key=lambda x: (x.executor is None, x.executor or "", x.reason))
    return Ranking(ranked, tuple(rejected))


def _problem(offer: PlacementOffer, task_hash: bytes | None, max_cost: int | None) -> str | None:
    # Components are validated on construction, but an offer object can be built around that;
    # check again here, where it matters.
    c = offer.components
    if not isinstance(c, ScoreComponents):
        return "malformed: components missing"
    for name, v in zip(COMPONENTS, c.as_tuple(), strict=True):
        if not (isinstance(v, float | int) and 0.0 <= v <= 1.0):
            return f"out of range: components.{name} = {v!r}"
    if task_hash is not None and offer.task_hash != task_hash:
        return "wrong task: the offer is for another task hash"
    if max_cost is not None and offer.cost > max_cost:
        return f"too expensive: cost {offer.cost} exceeds max_cost {max_cost}"
    return None
