"""Generators for the fuzz targets: documents from annotations, hostile values, TOML-ish text.

Message documents are derived from annotations (a wire message's fields, and the codec's view of
the scheduler types they carry), so a new message type is fuzzed with no code here. Mutations
(wrong types, huge numbers, deep nesting, huge lists and strings, NaN, unknown fields, CBOR
tags, malformed CBOR) follow.

Hypothesis drives every target: it picks the message type, the frame limit, the cut points
and any raw bytes itself, and draws a ``random.Random`` that builds the rest. A hypothesis
draw costs about 15 µs, and a document drawn field by field from strategies took ~26 of
them; the seeded Random keeps a case under a millisecond, which a million cases need. What
is lost is shrinking inside a document; a failing case is printed whole, and replays from
its seed.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import math
import random
import struct
import types
import typing
from collections import abc
from typing import Any

import cbor2
from hypothesis import strategies as st

from icn_node import codec, wire
from icn_node.config import SECTIONS, describe_keys
from icn_node.identity import NodeIdentity

DIDS = tuple(NodeIdentity.generate().did for _ in range(3))
WORDS = (
    *("", "a", "icn/compute", "icn/blob", "eu", "eu-west", "127.0.0.1:7946", "[::1]:7946"),
    *("wasm", "exec", "sm_80", "8.6", "completed", "failed", "pending", "low_trust"),
    *("/bin/true", "out.txt", "../etc/passwd", "did:key:z6Mk", "\x00", "é", "\u202e", "日本"),
)
EDGE_INTS = (0, 1, -1, 1000, 1001, 2**31 - 1, 2**31, 2**53, 2**63 - 1, 2**63, 2**64 - 1, -(2**64))
EDGE_FLOATS = (0.0, -0.0, 0.5, 1.0, 1.5, math.nan, math.inf, -math.inf, 1e308, 5e-324, -1.0)


def seeded(draw: st.DrawFn) -> random.Random:
    """A Random from a drawn seed (``st.randoms()`` routes every call through hypothesis, at
    several times the cost)."""
    return random.Random(draw(st.integers(0, 2**64 - 1)))


# --- documents from annotations -----------------------------------------------------------------


def random_text(r: random.Random) -> str:
    roll = r.random()
    if roll < 0.3:
        return r.choice(DIDS)
    if roll < 0.7:
        return r.choice(WORDS)
    top = r.choice((0x7F, 0x800, 0xD7FF))  # below the surrogates: always encodable
    return "".join(chr(r.randrange(32, top)) for _ in range(r.randrange(12)))


def random_int(r: random.Random) -> int:
    roll = r.random()
    if roll < 0.4:
        return r.randrange(9)
    if roll < 0.6:
        return r.choice(EDGE_INTS)
    if roll < 0.8:
        return r.randrange(-(2**16), 2**16)
    return r.randrange(-(2**64), 2**64)


def random_float(r: random.Random) -> float:
    roll = r.random()
    if roll < 0.4:
        return r.random()
    if roll < 0.6:
        return r.uniform(0, 1e5)
    if roll < 0.8:
        return r.choice(EDGE_FLOATS)
    value: float = struct.unpack(">d", r.randbytes(8))[0]
    return value


def random_bytes(r: random.Random) -> bytes:
    return r.randbytes(r.choice((32, 32, 16, 64, r.randrange(40))))


def random_plain(r: random.Random, depth: int = 0) -> Any:
    """Any plain CBOR document (what an ``Any``/``object`` field may hold)."""
    roll = r.randrange(8 if depth < 3 else 6)
    if roll == 6:
        return [random_plain(r, depth + 1) for _ in range(r.randrange(4))]
    if roll == 7:
        return {random_text(r): random_plain(r, depth + 1) for _ in range(r.randrange(4))}
    return _SCALARS[(str, int, float, bytes, bool, types.NoneType)[roll]](r)


_SCALARS: dict[Any, typing.Callable[[random.Random], Any]] = {
    str: random_text,
    int: random_int,
    float: random_float,
    bytes: random_bytes,
    bool: lambda r: r.random() < 0.5,
    types.NoneType: lambda r: None,
}
_SEQUENCES = (tuple, list, abc.Sequence, abc.Iterable, frozenset, abc.Set)


def random_document(r: random.Random, tp: Any) -> Any:
    """A valid-ish document for an annotation: the right shape, values anywhere in their type
    (often the values a valid one holds: DIDs, 32-byte hashes, small numbers)."""
    base, _marks = codec._strip(tp)
    if base in (Any, object):
        return random_plain(r)
    if base in _SCALARS:
        return _SCALARS[base](r)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not types.NoneType]
        return None if r.random() < 0.3 else random_document(r, r.choice(inner))
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return [random_document(r, a) for a in args]
    if origin in _SEQUENCES:
        return [random_document(r, args[0]) for _ in range(r.choice((0, 1, 1, 2, 3)))]
    if origin in (dict, abc.Mapping):
        n = r.choice((0, 1, 2))
        if codec._strip(args[0])[0] is str:
            return {random_text(r): random_document(r, args[1]) for _ in range(n)}
        return [[random_document(r, a) for a in args] for _ in range(n)]
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return r.choice([m.value for m in base]) if r.random() < 0.9 else random_text(r)
    kind = codec._kind(base)
    if kind == "record":
        fields = codec._fields(base)
        doc = {f.name: random_document(r, f.tp) for f in fields if f.required or r.random() < 0.5}
        tag = codec._tag(base)
        if tag is not None:
            doc[tag[0]] = tag[1]
        return doc
    if kind == "hook":
        return random_document(r, r.choice(codec._hook_types(base)))
    if kind == "variants":
        return random_document(r, r.choice(list(base.__codec_variants__.values())))
    if isinstance(base, type) and hasattr(base, "__fspath__"):
        return random_text(r)
    raise TypeError(f"fuzz: no document generator for {tp!r}")


def random_fields(r: random.Random, cls: type[wire.Message]) -> dict[str, Any]:
    """The ``fields`` map of a message, from the class's annotations."""
    return {
        name: random_document(r, hint)
        for name, hint in cls._FIELDS
        if name in cls._REQUIRED or r.random() < 0.5
    }


def _samples() -> dict[str, list[dict[str, Any]]]:
    """Fields documents of the hand-written samples (one or more per type): valid to start from."""
    from tests.mesh.test_wire import SAMPLES
    from tests.test_wire_compute import COMPUTE_SAMPLES

    out: dict[str, list[dict[str, Any]]] = {}
    for msg in [*SAMPLES, *COMPUTE_SAMPLES]:
        out.setdefault(msg.TAG, []).append(cbor2.loads(wire.encode_message(msg))[1])
    return out


SAMPLE_FIELDS = _samples()


# --- hostile values --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Raw:
    """Bytes written into a CBOR document verbatim: what cbor2 itself would never encode."""

    data: bytes


_U64 = (2**64 - 1).to_bytes(8, "big")
RAW_SNIPPETS = (
    b"\xa2\x61a\x01\x61a\x02",  # duplicate map keys
    b"\x18\x01",  # non-minimal integer
    b"\x1c",  # reserved additional information
    b"\xff",  # break outside an indefinite item
    b"\x7f\x41a\xff",  # indefinite text with a byte-string chunk
    b"\x9b" + _U64,  # array of 2**64-1 items
    b"\x5b" + _U64,  # byte string of 2**64-1 bytes
    b"\xbb" + _U64,  # map of 2**64-1 pairs
    b"\x7a\xff\xff\xff\xff",  # text of 4 GiB
    b"\xf8\x10",  # simple value in two bytes below 32 (invalid)
    b"\xf9\x7e\x00",  # half-float NaN
    b"\xf9\x7c\x00",  # half-float infinity
    b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x01",  # NaN with a payload
    b"\xf7",  # undefined
    b"\xf0",  # simple value 16
    b"\xc2\x4a" + b"\xff" * 10,  # bignum
    b"\xc3\x59\x10\x00" + b"\xff" * 4096,  # a 32 kbit negative bignum
    b"\xd8\x1c\x81\xd8\x1d\x00",  # a list containing itself (shared reference)
    b"\xd8\x1d\x05",  # a shared reference to nothing
    b"\xc1\xfb\x7f\xf0\x00\x00\x00\x00\x00\x00",  # datetime at infinity
    b"\xd8\x23\x65(a*)*",  # a regular expression
    b"\xd8\x1e\x82\x01\x00",  # rational with denominator 0
    b"\xc4\x82\x3b" + _U64 + b"\x01",  # decimal fraction with exponent -2**64
    b"\xd9\xd9\xf7\x01",  # self-described CBOR
    b"\xdb" + _U64 + b"\x01",  # tag 2**64-1
    b"\xd9\x01\x00\x82\x61a\xd8\x19\x00",  # string reference namespace
    b"\x62\xc3\x28",  # invalid UTF-8 in text
    b"\x81" * 600 + b"\x00",  # 600 nested arrays
    b"\xa1\x80\x01",  # array as a map key
    b"\xa1\xf9\x00\x00\x01",  # float as a map key
    b"\xa1\x41k\x01",  # byte string as a map key
    b"",  # nothing at all where an item belongs
)

_TAGS = (0, 1, 2, 3, 4, 5, 21, 24, 25, 28, 29, 30, 32, 35, 36, 37, 100, 256, 258, 1004, 55799)
UNKNOWN_KEYS = ("x", "", "kind", "TAG", "__class__", "_hash", "to_dict", "\x00", "did")
ODD_KEYS = (*UNKNOWN_KEYS, 1, -1, 10**5000, b"k", None, 1.5, (1, 2), True)
"""Map keys of every type (the protocol's maps have text keys only)."""


def _nest(depth: int, leaf: Any, as_map: bool) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf} if as_map else [leaf]
    return leaf


def chaos(r: random.Random) -> Any:
    """One hostile value: the wrong type, a number or size at or beyond a limit, or bad CBOR."""
    roll = r.randrange(12)
    if roll == 0:
        return r.choice((2**64, -(2**64) - 1, 2**64 - 1, 10**30, 2**1000, -(2**63), 10**5000))
    if roll == 1:
        return r.choice(EDGE_FLOATS)
    if roll == 2:
        return _nest(r.choice((31, 33, 200, 2000)), r.choice((0, "x", [])), r.random() < 0.5)
    if roll == 3:
        n = r.choice((255, 256, 257, 1000, 100_000))
        return [r.choice((0, "x", b"", None))] * n
    if roll == 4:
        n = r.choice((64, 65, 129, 257, 1025, 70_000, 300_000))
        return r.choice(("x" * n, "z" * n, "did:key:z" + "z" * n, b"\x00" * n))
    if roll == 5:
        return cbor2.CBORTag(r.choice(_TAGS + (r.randrange(2**16), 2**63)), r.choice((0, b"", "")))
    if roll == 6:
        return r.choice((cbor2.CBORSimpleValue(r.choice((0, 19, 32, 255))), cbor2.undefined))
    if roll == 7:
        return Raw(r.choice(RAW_SNIPPETS))
    if roll == 8:
        return {r.choice(ODD_KEYS): r.choice((0, "x")) for _ in range(r.randrange(1, 3))}
    if roll == 9:
        return r.choice((b"\x00" * 32, b"\x00" * 64, bytes(range(16)), bytearray(b"ab")))
    if roll == 10:
        return r.choice(DIDS) if r.random() < 0.5 else r.choice(WORDS)
    return r.choice((None, True, False, 0, -1, 1.5, "", b"", [], {}))


def mutate(r: random.Random, doc: Any, rate: float) -> Any:
    """``doc`` with each part replaced by :func:`chaos` with probability ``rate``; maps may
    lose a key or gain an unknown one, lists may lose or repeat an item."""
    if rate and r.random() < rate:
        return chaos(r)
    if isinstance(doc, dict):
        out = {k: mutate(r, v, rate) for k, v in doc.items()}
        if out and r.random() < rate:
            del out[r.choice(list(out))]
        if r.random() < rate:
            out[r.choice(ODD_KEYS if r.random() < 0.2 else UNKNOWN_KEYS)] = chaos(r)
        return out
    if isinstance(doc, list):
        items = [mutate(r, v, rate) for v in doc]
        roll = r.random()
        if items and roll < rate / 2:
            items.append(r.choice(items))
        elif items and roll < rate:
            items.pop(r.randrange(len(items)))
        return items
    return doc


def _write_raw(encoder: Any, value: Any) -> None:
    if isinstance(value, Raw):
        encoder.write(value.data)
        return
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode(r: random.Random, doc: Any) -> bytes:
    """``doc`` as CBOR, with cbor2's options picked at random (canonical, indefinite lengths,
    shared values, string references)."""
    return cbor2.dumps(
        doc,
        default=_write_raw,
        canonical=r.random() < 0.2,
        indefinite_containers=r.random() < 0.05,
        value_sharing=r.random() < 0.05,
        string_referencing=r.random() < 0.05,
    )


def damage(r: random.Random, data: bytes) -> bytes:
    """``data`` cut, flipped, extended or spliced at a random place."""
    pos = r.randrange(len(data) + 1)
    roll = r.randrange(5)
    if roll == 0:
        return data[:pos]
    if roll == 1 and data:
        i = min(pos, len(data) - 1)
        return data[:i] + bytes([data[i] ^ (1 << r.randrange(8))]) + data[i + 1 :]
    if roll == 2:
        return data[:pos] + r.randbytes(r.randrange(1, 9)) + data[pos:]
    if roll == 3:
        return data + r.choice((b"\x00", b"\xff", data[:8]))
    return data[:pos] + r.choice(RAW_SNIPPETS) + data[pos:]


# --- message bodies ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Body:
    """One message body for the decoder, with the tag it was made for (for the report)."""

    tag: str
    data: bytes

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 200 else self.data[:200] + b"..."
        return f"Body(tag={self.tag!r}, {len(self.data)} bytes: {shown!r})"


_ENVELOPES = (
    lambda tag, f: [tag],
    lambda tag, f: [tag, f, 1],
    lambda tag, f: {tag: f},
    lambda tag, f: [1, f],
    lambda tag, f: ["no_such_message", f],
    lambda tag, f: [tag, [f]],
    lambda tag, f: [tag.encode(), f],
    lambda tag, f: tag,
)


def random_body(r: random.Random, tag: str | None = None, fields: Any = None) -> Body:
    """A body from ``fields`` (default: a sample's), mutated at a random rate, sometimes in a
    broken envelope or with its bytes damaged."""
    if tag is None:
        tag = r.choice(sorted(SAMPLE_FIELDS))
    if fields is None:
        fields = copy.deepcopy(r.choice(SAMPLE_FIELDS.get(tag) or [{}]))
    rate = r.choice((0.0, 0.0, 0.02, 0.1, 0.3))
    doc: Any = [tag, mutate(r, fields, rate)]
    if r.random() < 0.03:
        doc = r.choice(_ENVELOPES)(tag, doc[1])
    data = encode(r, doc)
    if r.random() < 0.1:
        data = damage(r, data)
    return Body(tag, data)


@st.composite
def bodies(draw: st.DrawFn) -> Body:
    """A body for every registered message type: fields from a sample (when the type has one)
    or from the annotations, then :func:`random_body`'s mutations."""
    tag = draw(st.sampled_from(tuple(sorted(wire.REGISTRY))))
    r = seeded(draw)
    samples = SAMPLE_FIELDS.get(tag, [])
    if samples and r.random() < 0.5:
        fields = copy.deepcopy(r.choice(samples))
    else:
        fields = random_fields(r, wire.REGISTRY[tag])
    return random_body(r, tag, fields)


# --- frame streams -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stream:
    """Bytes for a FrameDecoder of ``max_frame_bytes``, fed in the pieces ``cuts`` makes."""

    max_frame_bytes: int
    data: bytes
    cuts: tuple[int, ...]

    def pieces(self) -> list[bytes]:
        edges = [0, *sorted(c % (len(self.data) + 1) for c in self.cuts), len(self.data)]
        return [self.data[a:b] for a, b in zip(edges, edges[1:], strict=False)]

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 300 else self.data[:300] + b"..."
        size = len(self.data)
        return f"Stream(max={self.max_frame_bytes}, cuts={self.cuts}, {size} bytes: {shown!r})"


def _segment(r: random.Random, limit: int, body: bytes) -> bytes:
    roll = r.randrange(6)
    if roll == 0:  # a whole frame
        return wire.frame(body)
    if roll == 1:  # a header and part of its body
        return wire.frame(body)[: r.randrange(len(body) + 5)]
    if roll == 2:  # a header announcing more than the limit
        return wire.HEADER.pack(r.choice((limit + 1, 2 * limit, 2**32 - 1)))
    if roll == 3:  # a frame exactly at the limit
        return wire.HEADER.pack(limit) + r.randbytes(min(limit, 70_000))
    if roll == 4:  # an empty frame
        return wire.frame(b"")
    return r.randbytes(r.randrange(0, 24))


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    """A byte stream of frames, partial frames, oversized headers and noise, with cut points."""
    limit = draw(st.sampled_from((1, 5, 64, 1024, 4096, wire.DEFAULT_MAX_FRAME_BYTES)))
    r = seeded(draw)
    segments = [_segment(r, limit, random_body(r).data) for _ in range(r.randrange(6))]
    cuts = draw(st.lists(st.integers(0, 2**20), max_size=12))
    return Stream(limit, b"".join(segments), tuple(cuts))


# --- config files ------------------------------------------------------------------------------

_KEYS = {name: [(k, d) for s, k, d, _doc in describe_keys() if s == name] for name in SECTIONS}
_ODD_NAMES = ("x", "mesh-2", "Mesh", "a.b", '"quoted key"', "''", "node.sub", "1", "trust.peers")
_HEADERS = ("[{}]", "[{}]", "[{}]", "[[{}]]", "[{}.sub]", "{} = 1", "{}")
_ODD_LITERALS = (
    "1979-05-27T07:32:00Z", "1979-05-27", "07:32:00", "0x7fffffff", "0o777", "0b101", "1_000",
    "+inf", "-nan", "1e999", "'''multi\nline'''", '"""a\\\nb"""', "'literal'", "9" * 5000,
    "[" * 3000, "{a = " * 200, "[[1], [[2]]]", "{}", "[]", '"\\uD800"', '"\\U0010FFFF"', "",
    "true false", '"unterminated', "[1, 'a']", "{a = 1, a = 2}",
)  # fmt: skip
_ODD_TEXTS = (
    "localhost:7946", "not a host:1", "10.0.0.1:0", "[::1]:7946", "::1:7946", "h:8_0", "h:\u0663",
    "debug", "json", "/abs", "rel", "", " ", "\x7f", "x" * 300, "did:key:z" + "z" * 200,
)  # fmt: skip


def _toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    """A Python value as a TOML literal (tables inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(type(value))


def _random_value(r: random.Random, like: Any = None, depth: int = 0) -> Any:
    """A value of ``like``'s type (near it) three times in four, else of any TOML type."""
    if like is not None and r.random() < 0.75:
        if isinstance(like, bool):
            return r.random() < 0.5
        if isinstance(like, int):
            return r.choice((0, 1, -1, 3, 7, 100, 1024, 2**31, 2**63 - 1, -(2**63), 10**20))
        if isinstance(like, float):
            return r.choice((0.0, 0.5, 1.0, 1.5, -0.5, 1e-9, 1e9, 1e300, math.nan, math.inf))
        if isinstance(like, str):
            return r.choice((*_ODD_TEXTS, *DIDS, *WORDS))
        if isinstance(like, list):
            return [_random_value(r, "", depth + 1) for _ in range(r.randrange(4))]
        if isinstance(like, dict):
            return {r.choice(DIDS + WORDS): _random_value(r, 0.5) for _ in range(r.randrange(3))}
    roll = r.randrange(6)
    if depth < 3 and roll == 0:
        return [_random_value(r, None, depth + 1) for _ in range(r.randrange(4))]
    if depth < 3 and roll == 1:
        keys = [r.choice(WORDS + _ODD_NAMES) for _ in range(r.randrange(4))]
        return {k: _random_value(r, None, depth + 1) for k in keys}
    return r.choice((*EDGE_INTS, *EDGE_FLOATS, *WORDS, True, False, 10**400))


def toml_text(r: random.Random) -> bytes:
    """A config file: sections (known or not) of keys (known or not) with values of the right
    type or not, sometimes damaged."""
    lines = []
    for _ in range(r.randrange(5)):
        name = r.choice(list(SECTIONS)) if r.random() < 0.85 else r.choice(_ODD_NAMES)
        lines.append(r.choice(_HEADERS).format(name))
        keys = _KEYS.get(name) or [("x", None)]
        for _ in range(r.randrange(5)):
            key, default = r.choice(keys) if r.random() < 0.9 else (r.choice(_ODD_NAMES), None)
            roll = r.randrange(6)
            if roll == 0:
                value = _toml_value(default) if default is not None else "1"
            elif roll == 1:
                value = r.choice(_ODD_LITERALS)
            else:
                value = _toml_value(_random_value(r, default))
            lines.append(f"{key} = {value}")
    data = ("\n".join(lines) + "\n").encode()
    return damage(r, data) if r.random() < 0.2 else data


_ENV_KEYS = [f"ICN_{s.upper()}_{k.upper()}" for s, k, _d, _doc in describe_keys()]
_ENV_ODD = ("ICN_", "ICN_MESH", "ICN_MESH_", "ICN_SOCKET", "ICN_CONFIG", "ICN_X_Y", "ICN_MESH_X")
_ENV_TEXTS = ("", "0", "1", "yes", "maybe", "nan", "-inf", "1e999", "-5", "a, b", "9" * 5000)


def environment(r: random.Random) -> dict[str, str]:
    """``ICN_*`` overrides: known and unknown variables with texts of any type."""
    env = {}
    for _ in range(r.choice((0, 0, 1, 2, 3))):
        var = r.choice(_ENV_KEYS) if r.random() < 0.9 else r.choice(_ENV_ODD)
        env[var] = str(r.choice((*_ENV_TEXTS, *_ODD_TEXTS, _random_value(r))))
    return env
