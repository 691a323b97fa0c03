"""The delaying loopback forwarder the locality tests use; it lives in :mod:`icn_dev.proxy` with
the fault-injecting :class:`~icn_dev.proxy.Switchboard` (partitions), which shares its code."""

from icn_dev.proxy import DelayProxy, PortOwners, Switchboard

__all__ = ["DelayProxy", "PortOwners", "Switchboard"]
