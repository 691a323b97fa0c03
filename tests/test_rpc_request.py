"""A request line is read within bounds (icn_node.rpc.request): no line raises past the reader,
and each refusal names what is wrong."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icn_node.rpc.request import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_SAFE_INTEGER,
    PARSE_ERROR,
    Limits,
    Request,
    RequestRefused,
    load_bounded,
    read_request,
)


def req(**fields) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **fields}).encode()


def refused(line: bytes, limits: Limits = Limits()) -> RequestRefused:
    with pytest.raises(RequestRefused) as e:
        read_request(line, limits)
    return e.value


@pytest.mark.parametrize(
    "line, code, message",
    [
        # What killed the daemon: RecursionError and the int conversion limit.
        (b"[" * 1500, PARSE_ERROR, "parse error: nested deeper than 32 levels"),
        (
            b'{"jsonrpc":"2.0","id":' + b"1" * 5000 + b',"method":"node.status"}',
            PARSE_ERROR,
            "parse error: a number longer than 40 characters",
        ),
        (b'{"a":' * 40 + b"1" + b"}" * 40, PARSE_ERROR, "parse error: nested deeper than 32"),
        (b"[" + b"0," * 10_000 + b"0]", PARSE_ERROR, "parse error: more than 10000 values"),
        (b'{"x": 1e999}', PARSE_ERROR, "parse error: number out of range: 1e999"),
        (b'{"x": NaN}', PARSE_ERROR, "parse error: NaN is not JSON"),
        (b'{"x": -Infinity}', PARSE_ERROR, "parse error: -Infinity is not JSON"),
        (b'{"x": 1.' + b"5" * 50 + b"}", PARSE_ERROR, "parse error: a number longer than 40"),
        (
            b'{"' + b"k" * 300 + b'": 1}',
            PARSE_ERROR,
            "parse error: an object key longer than 256 characters",
        ),
        (b'{"x": "\\ud800"}', PARSE_ERROR, "parse error: a string holds a lone surrogate"),
        (b"\xff\xfe{}", PARSE_ERROR, "parse error: not UTF-8 (byte 0)"),
        (b"{not json", PARSE_ERROR, "parse error: Expecting property name"),
        (b"[1, 2]", INVALID_REQUEST, "batch requests are not supported"),
        (b'"text"', INVALID_REQUEST, "a request must be a JSON object, got a string"),
        (b'{"id": 1, "method": "m"}', INVALID_REQUEST, 'missing "jsonrpc": "2.0"'),
        (req(id=1), INVALID_REQUEST, "method: expected a string, got missing"),
        (req(id=1, method=7), INVALID_REQUEST, "method: expected a string, got a number"),
        (req(id=1, method="m" * 129), INVALID_REQUEST, "method: longer than 128 characters"),
        (req(id=True, method="m"), INVALID_REQUEST, "id: expected a string, an integer or null"),
        (req(id=1.5, method="m"), INVALID_REQUEST, "id: expected a string, an integer or null"),
        (req(id=[1], method="m"), INVALID_REQUEST, "id: expected a string, an integer or null"),
        (req(id=2**53, method="m"), INVALID_REQUEST, "id: an integer id must be within"),
        (req(id="i" * 257, method="m"), INVALID_REQUEST, "id: a string id is at most 256"),
        (req(id=1, method="m", params=[1]), INVALID_PARAMS, "params: expected an object"),
        (req(id=1, method="m", params=None), INVALID_PARAMS, "params: expected an object"),
        (req(id=1, method="m", params="x"), INVALID_PARAMS, "params: expected an object"),
    ],
)
def test_bad_lines_are_refused_naming_the_problem(line, code, message):
    e = refused(line)
    assert e.code == code
    assert e.message.startswith(message), e.message


def test_the_id_to_answer_with_is_kept_when_it_is_usable():
    assert refused(req(id=7, method=1)).id == 7
    assert refused(req(id="a", method="m", params=[])).id == "a"
    assert refused(req(id=2**60, method="m")).id is None  # the id itself is unusable
    assert refused(b"[" * 100).id is None


def test_good_requests_are_read():
    assert read_request(req(id=1, method="m", params={"a": [1, {"b": None}]})) == Request(
        "m", {"a": [1, {"b": None}]}, 1
    )
    assert read_request(req(method="m")) == Request("m", {}, None, notification=True)
    assert read_request(req(id=None, method="m")) == Request("m", {}, None, notification=False)
    edge = read_request(req(id=-MAX_SAFE_INTEGER, method="m", params={"x": 1.5e300}))
    assert edge.id == -MAX_SAFE_INTEGER and edge.params == {"x": 1.5e300}
    # Brackets and quotes inside strings are text, not structure.
    text = '"[[[[' * 100 + "\\\\"
    assert read_request(req(id="x", method="m", params={"t": text})).params["t"] == text
    assert read_request(req(id=1, method="m", params={"smile": "\U0001f600"})).params == {
        "smile": "\U0001f600"
    }


def nested(depth: int) -> object:
    value: object = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def test_a_request_may_nest_32_levels_in_all():
    # The request object and params are two of them.
    assert read_request(req(id=1, method="m", params={"p": nested(30)})).params["p"] == nested(30)
    assert refused(req(id=1, method="m", params={"p": nested(31)})).message == (
        "parse error: nested deeper than 32 levels"
    )


@given(st.integers(min_value=0, max_value=80))
def test_the_depth_bound_is_exact_for_json(depth):
    line = json.dumps(nested(depth)).encode()
    if depth <= 32:
        assert load_bounded(line) == nested(depth)
    else:
        with pytest.raises(RequestRefused, match="nested deeper than 32"):
            load_bounded(line)


def depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


@settings(max_examples=500)
@given(st.text(alphabet='[]{}",:0 \\ax', max_size=400))
def test_bracket_soup_is_read_as_json_reads_it_up_to_the_depth_bound(text):
    try:
        plain = json.loads(text)
    except ValueError:
        expected = None
    else:
        expected = plain if depth(plain) <= 4 else None
    try:
        got = load_bounded(text.encode(), Limits(max_depth=4))
    except RequestRefused as e:
        assert e.code == PARSE_ERROR and e.message.startswith("parse error: ")
        assert expected is None, f"refused valid JSON within the bound: {e.message}"
    else:
        assert expected is not None and got == expected
