"""RPC parameters are checked in one step (icn_node.rpc.params) with errors that name them."""

from __future__ import annotations

import base64

import pytest

from icn_node.compute.rpc import ListParams, SubmitParams, WatchParams
from icn_node.rpc.params import parse
from icn_node.rpc.protocol import INVALID_PARAMS, InvalidParams
from icn_node.scheduler import PreferLowLatency, ResourceProfile

MODULE = base64.b64encode(b"\0asm\1\0\0\0").decode()


def test_a_good_submit_is_read_into_values():
    p = parse(
        SubmitParams,
        {
            "module": MODULE,
            "fuel": 1000,
            "args": ["a"],
            "profile": {"cpu_cores": 1.5, "memory_mb": 256},
            "hints": [{"kind": "prefer_low_latency", "max_rtt_ms": 20}],
            "inputs": [{"blob": "ab" * 32, "name": "data"}],
            "timeout_s": 5,
        },
    )
    assert p.fuel == 1000 and p.args == ("a",) and p.timeout_s == 5.0
    assert p.profile == ResourceProfile(cpu_cores=1.5, memory_mb=256)
    assert p.hints == (PreferLowLatency(20.0),)
    assert p.inputs[0].blob_hash == bytes.fromhex("ab" * 32)
    assert p.module_bytes() == b"\0asm\1\0\0\0"


@pytest.mark.parametrize(
    "params, starts",
    [
        ({"module": MODULE}, "fuel: missing"),
        ({"module": MODULE, "fuel": "lots"}, "fuel: expected an integer"),
        ({"module": MODULE, "fuel": True}, "fuel: expected an integer"),
        ({"module": MODULE, "fuel": 0}, "fuel: expected a positive integer"),
        ({"module": MODULE, "fuel": 1, "args": [1]}, "args[0]: expected a string"),
        ({"module": MODULE, "fuel": 1, "args": "a b"}, "args: expected a list"),
        ({"module": MODULE, "fuel": 1, "profile": {"cpu_cores": -1}}, "profile.cpu_cores"),
        ({"module": MODULE, "fuel": 1, "profile": {"cpu_cores": "x"}}, "profile.cpu_cores"),
        ({"module": MODULE, "fuel": 1, "hints": [{"kind": "nope"}]}, "hints[0].kind"),
        ({"module": MODULE, "fuel": 1, "inputs": [{"blob": "xyz"}]}, "inputs.blob"),
        ({"module": MODULE, "fuel": 1, "inputs": [{}]}, "inputs[0].blob: missing"),
        ({"fuel": 1}, "module: empty (or give module_blob or exec)"),
        ({"exec": ["bin/echo"], "fuel": 1}, "exec: expected [absolute"),
        (
            {"exec": ["/bin/echo"], "module": MODULE, "fuel": 1},
            "give one of module, module_blob or exec, not module and exec",
        ),
        (
            {"module_blob": "ab" * 32, "module": MODULE, "fuel": 1},
            "give one of module, module_blob or exec, not module and module_blob",
        ),
        ({"module_blob": "xyz", "fuel": 1}, "module_blob: a blob id is 64 hex characters"),
        ({"module": MODULE, "fuel": 1, "timeout_s": "soon"}, "timeout_s: expected a number"),
    ],
)
def test_bad_submit_params_are_named(params, starts):
    with pytest.raises(InvalidParams) as e:
        parse(SubmitParams, params)
    assert e.value.code == INVALID_PARAMS
    assert str(e.value).startswith(starts), e.value.message


def test_a_module_can_be_named_by_its_blob():
    p = parse(SubmitParams, {"module_blob": "CD" * 32, "fuel": 10})
    assert p.module_blob == "CD" * 32 and p.module is None and p.exec is None


def test_bad_module_bytes_are_named():
    with pytest.raises(InvalidParams, match="module: expected base64"):
        parse(SubmitParams, {"module": "!!!", "fuel": 1}).module_bytes()


@pytest.mark.parametrize(
    "cls, params, starts",
    [
        (ListParams, {"limit": 0}, "limit: expected 1-"),
        (ListParams, {"limit": "ten"}, "limit: expected an integer"),
        (WatchParams, {"after": "x"}, "after: expected an integer"),
        (WatchParams, {"after": -1}, "after: expected a sequence number"),
        (WatchParams, {"timeout_s": -1}, "timeout_s: expected seconds"),
        (WatchParams, [], "params: expected an object"),
    ],
)
def test_bad_list_and_watch_params_are_named(cls, params, starts):
    with pytest.raises(InvalidParams) as e:
        parse(cls, params)
    assert str(e.value).startswith(starts), e.value.message
