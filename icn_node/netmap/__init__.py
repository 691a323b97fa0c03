"""The network map: Vivaldi coordinates, RTT and bandwidth per peer, bandwidth probes.

The rooms, as in every package:

* :mod:`.core`: :class:`~icn_node.netmap.core.NetmapCore` and the Vivaldi update (pure);
* :mod:`.driver`: :class:`~icn_node.netmap.driver.NetmapService`, which feeds the mesh's RTT
  samples into the core, exchanges coordinates and probes on ``icn/netmap`` and exports the
  metrics (trio);
* :mod:`.rpc`: ``netmap.topology`` and ``netmap.estimate`` (``icnctl topology``).

The coordinate value type is :class:`icn_node.scheduler.coordinates.Coordinate`, so the
scheduler and the wire read it without this package. Importing this package pulls in no trio.
"""
