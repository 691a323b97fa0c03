"""The compute core announces the netmap's coordinate (the provider the driver passes in)."""

from __future__ import annotations

import random

from icn_node.compute import ComputeCore
from icn_node.config import load_config
from icn_node.scheduler import NodeCapacity
from icn_node.scheduler.coordinates import Coordinate
from icn_node.wire import ExecutorAnnounceMsg, decode_message, encode_message

DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
CAP = NodeCapacity.from_totals(4.0, 8192, 10_000, 1000.0)


def executor(coordinate=None) -> ComputeCore:
    cfg = load_config(env={}, overrides={"compute": {"executor": True}})
    return ComputeCore.from_config(
        DID, lambda _d: 0.5, cfg.compute, capacity=CAP, rng=random.Random(1), coordinate=coordinate
    )


def test_each_announcement_reads_the_coordinate_now():
    current = [Coordinate((1.0, 2.0), 3.0, 0.9)]
    core = executor(lambda: current[0])
    assert core.announce_info(10.0).coordinate == current[0]
    current[0] = Coordinate((5.0, 6.0), 1.0, 0.2)  # Vivaldi moved it
    info = core.announce_info(20.0)
    assert info.coordinate == current[0]
    msg = decode_message(encode_message(ExecutorAnnounceMsg(info)))
    assert msg.info.coordinate == current[0]


def test_without_a_provider_or_a_coordinate_the_announcement_has_none():
    assert executor().announce_info(10.0).coordinate is None
    assert "coordinate" not in executor(lambda: None).announce_info(10.0).to_dict()
