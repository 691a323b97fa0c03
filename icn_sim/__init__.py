"""icn_sim: a discrete-event simulator that hosts icnd's own sans-IO cores on a modelled network.

The rooms: :mod:`.scenario` (TOML scenarios into validated dataclasses), :mod:`.network`
(regions on a globe, RTT, bandwidth, loss, partitions, the overlay), :mod:`.engine` (the event
loop: one production ``ComputeCore`` per node, their effects executed as the daemon's driver
does), :mod:`.report` (figures, table, JSON, plots) and :mod:`.cli` (``icnd-sim``). See
docs/ARCHITECTURE.md, "The simulator".
"""
