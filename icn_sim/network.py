"""The modelled network: nodes in regions on a globe, their links, and what a message costs.

Pure: no clock, no I/O; every draw comes from the ``random.Random`` it is given.

* **Where.** Each node is placed around its region's centre (a normal spread of
  ``spread_km``), with an access-link height of 1-5 ms that every path from it crosses.
* **RTT** between two nodes: great-circle distance at :data:`MS_PER_KM` (light in fibre with a
  1.3x path stretch, as ``icn_dev.netsim.globe``) plus both heights. A message's one-way delay
  is half of it times a uniform jitter factor in ``[1 - jitter, 1 + jitter]``, plus its size
  over the slower end's bandwidth.
* **The overlay.** With ``links`` > 0 every node links to about ``links`` random others (the
  mesh's ``max_peers``): a direct message to a linked peer is one unsigned frame; to anyone else
  the mesh routes it as signed gossip with a ``to`` (``MeshCore.send_direct``): the origin sends
  it on every link and each relay forwards it to ``degree`` random links until it arrives, which
  costs about ``degree`` frames per member and one signature check per member. Its delay is the
  RTT/2 to the destination times :data:`ROUTED_STRETCH` plus a relay's CPU per hop.
* **Partitions**: a set of regions cut off from the rest; messages across the cut are lost.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from icn_sim.scenario import NodesSpec, Region

__all__ = ["EARTH_KM", "MS_PER_KM", "ROUTED_STRETCH", "Geography", "place"]

EARTH_KM = 6371.0
MS_PER_KM = 0.013
"""RTT per km of great-circle distance: light in fibre (~200,000 km/s) both ways, 1.3x stretch."""
ROUTED_STRETCH = 1.5
"""A message routed through relays takes longer than the straight path: RTT/2 times this."""


@dataclass(slots=True)
class Geography:
    """Where every node is, and the RTTs between them (computed on demand)."""

    regions: tuple[Region, ...]
    region_of: list[int]
    lat: list[float]
    lon: list[float]
    height_ms: list[float]
    bandwidth_mbps: list[float]

    def rtt_ms(self, i: int, j: int) -> float:
        if i == j:
            return 0.0
        la1, lo1, la2, lo2 = self.lat[i], self.lon[i], self.lat[j], self.lon[j]
        # Haversine.
        a = (
            math.sin((la2 - la1) / 2) ** 2
            + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
        )
        km = 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(a)))
        return km * MS_PER_KM + self.height_ms[i] + self.height_ms[j]

    def region(self, i: int) -> str:
        return self.regions[self.region_of[i]].name


def place(spec: NodesSpec, rng: random.Random) -> Geography:
    """Put ``spec.count`` nodes in the regions (by weight), each with its bandwidth."""
    regions = spec.regions
    weights = [r.weight for r in regions]
    region_of: list[int] = []
    lat: list[float] = []
    lon: list[float] = []
    heights: list[float] = []
    bws: list[float] = []
    lo_bw, hi_bw = spec.bandwidth_mbps
    for _ in range(spec.count):
        k = rng.choices(range(len(regions)), weights)[0]
        r = regions[k]
        # A normal spread around the centre; degrees of latitude are ~111 km.
        dlat = rng.gauss(0.0, r.spread_km / 111.0)
        dlon = rng.gauss(0.0, r.spread_km / (111.0 * max(0.2, math.cos(math.radians(r.lat)))))
        region_of.append(k)
        lat.append(math.radians(max(-89.0, min(89.0, r.lat + dlat))))
        lon.append(math.radians(((r.lon + dlon + 180.0) % 360.0) - 180.0))
        heights.append(rng.uniform(1.0, 5.0))
        # Log-uniform between the bounds: many modest links, a few fast ones.
        bws.append(lo_bw * (hi_bw / lo_bw) ** rng.random() if hi_bw > lo_bw else lo_bw)
    return Geography(regions, region_of, lat, lon, heights, bws)


def overlay(n: int, links: int, rng: random.Random) -> list[set[int]] | None:
    """Each node's linked peers: a random graph where every node dials ``links // 2`` others
    (so about ``links`` each); None when ``links`` is 0 or covers everyone (full mesh)."""
    if links <= 0 or links >= n - 1:
        return None
    peers: list[set[int]] = [set() for _ in range(n)]
    dials = max(1, links // 2)
    for i in range(n):
        for j in rng.sample(range(n - 1), dials):
            j = j if j < i else j + 1
            peers[i].add(j)
            peers[j].add(i)
    return peers


def hops(n: int, degree: int) -> int:
    """Relays a flood needs to reach ``n`` members at fan-out ``degree`` (at least 1)."""
    if n <= 2 or degree <= 1:
        return 1
    return max(1, math.ceil(math.log(n) / math.log(degree)))


def cut_sides(geo: Geography, regions: Sequence[str]) -> list[bool]:
    """For a partition of ``regions`` from the rest: which side each node is on."""
    names = set(regions)
    return [geo.regions[k].name in names for k in geo.region_of]
