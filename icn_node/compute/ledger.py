"""The executor's capacity ledger, sans-IO: every reservation held against the host's capacity.

:class:`Ledger` owns the node's live :class:`NodeCapacity` (a ledger-free snapshot of what icnd
may use) and the :class:`Hold`\\ s taken from it, tentative (an offer in flight) or firm (an
accepted job). ``NodeCapacity.reserve`` refuses what does not fit, so no interleaving of
requests, claims and timers can hold more than the capacity. When the host shrinks below what
firm holds need (:meth:`Ledger.rebase`), the holds that no longer fit stay recorded without a
reservation — over-commitment — and nothing new is reserved until they fit again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from icn_node.errors import ResourceError
from icn_node.scheduler.resources import NodeCapacity, Reservation, ResourceProfile

__all__ = ["Hold", "Ledger"]


@dataclass(slots=True, eq=False)
class Hold:
    """One reservation held. ``reservation`` is None while the host's capacity has shrunk
    below it (see :meth:`Ledger.rebase`)."""

    profile: ResourceProfile
    gpu_ids: tuple[str, ...]
    reservation: Reservation | None


class Ledger:
    def __init__(self, capacity: NodeCapacity) -> None:
        self._capacity = capacity.snapshot()
        self._holds: list[Hold] = []

    @property
    def capacity(self) -> NodeCapacity:
        """The live capacity minus every reservation held (the object itself: read it, or take
        a ``snapshot()`` to keep)."""
        return self._capacity

    @property
    def overcommitted(self) -> bool:
        """True while some hold has no reservation (new work is refused)."""
        return any(h.reservation is None for h in self._holds)

    def profiles(self) -> list[ResourceProfile]:
        """The profile of every hold (tentative and firm)."""
        return [h.profile for h in self._holds]

    def reserve(self, profile: ResourceProfile) -> Hold | None:
        """A new hold for ``profile``, or None when it does not fit (or while over-committed)."""
        if self.overcommitted:
            return None
        try:
            r = self._capacity.reserve(profile)
        except ResourceError:
            return None
        hold = Hold(profile, r.gpu_device_ids, r)
        self._holds.append(hold)
        return hold

    def release(self, hold: Hold | None) -> None:
        """Give ``hold`` back (None, or a hold already released: nothing)."""
        if hold is None or hold not in self._holds:
            return
        self._holds.remove(hold)
        if hold.reservation is not None:
            self._capacity.release(hold.reservation)
            hold.reservation = None
        self._refit()

    def _refit(self) -> None:
        """Give over-committed holds their reservation back once they fit, oldest first."""
        for h in self._holds:
            if h.reservation is None:
                try:
                    h.reservation = self._capacity.reserve(h.profile, h.gpu_ids or None)
                except ResourceError:
                    return

    def rebase(self, capacity: NodeCapacity, firm: Iterable[Hold]) -> None:
        """Start again from a new reading of the host: the ``firm`` holds are re-applied, oldest
        first (one that no longer fits stays, over-committed); every other hold is dropped, and
        the caller re-reserves the tentative ones it wants to keep."""
        self._capacity = capacity.snapshot()
        self._holds = []
        for h in firm:
            h.reservation = None
            self._holds.append(h)
        self._refit()
