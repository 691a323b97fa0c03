"""A task's data: what a request carries and what a placement moves and saves."""

from __future__ import annotations

from builders import SUB, did, h, kinds, spec

from icn_node.compute.data import bytes_needed, placement_effects, task_data
from icn_node.scheduler import BlobLocation, BlobRegistry

A, B = did("A"), did("B")
REG = BlobRegistry(
    [
        BlobLocation(h("code"), SUB, 1_000),
        BlobLocation(h("big"), A, 5_000_000),
        BlobLocation(h("big"), B, 5_000_000),
        BlobLocation(h("small"), B, 20_000),
    ]
)


def test_the_request_data_is_the_module_and_inputs_with_known_sizes():
    s = spec(input_blobs=(("big", h("big")), ("small", h("small")), ("lost", h("lost"))))
    assert task_data(s, REG) == ((h("code"), 1_000), (h("big"), 5_000_000), (h("small"), 20_000))


def test_bytes_needed_are_what_the_executor_lacks():
    data = task_data(spec(input_blobs=(("big", h("big")), ("small", h("small")))), REG)
    assert bytes_needed(data, B, REG) == 1_000
    assert bytes_needed(data, A, REG) == 21_000
    assert bytes_needed(data, did("C"), REG) == 5_021_000


def test_placement_counts_moved_local_and_saved_bytes():
    data = ((h("big"), 5_000_000), (h("small"), 20_000))
    on_b = placement_effects(data, B, 5_020_000, REG)
    assert kinds(on_b) == [
        "Count:placements_with_data",
        "Count:placements_data_local",
        "Count:data_transfer_saved",
    ]
    assert on_b[-1].n == 5_020_000
    on_a = placement_effects(data, A, 20_000, REG)  # the blind pick did as well: nothing saved
    assert kinds(on_a) == ["Count:placements_with_data", "Count:data_transfer_needed"]
    assert on_a[-1].n == 20_000
