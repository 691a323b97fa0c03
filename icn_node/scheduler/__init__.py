"""icn_node.scheduler: the pure scheduler core (resource matching, placement scoring, ranking).

Sans-IO: nothing here reads a clock, touches the network or imports trio. See docs/SCHEDULING.md.
"""

from icn_node.scheduler.resources import (
    ComputeCapability,
    GpuDevice,
    GpuSpec,
    NodeCapacity,
    Reservation,
    ResourceProfile,
)

__all__ = [
    "ComputeCapability",
    "GpuDevice",
    "GpuSpec",
    "NodeCapacity",
    "Reservation",
    "ResourceProfile",
]
