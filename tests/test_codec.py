"""icn_node.codec on its own: every annotation it understands, variants, hooks, field options,
and errors that name the path to the bad part."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from icn_node import codec
from icn_node.codec import BASE64, OMIT_DEFAULT, Default, Document, from_doc, to_doc
from icn_node.errors import CodecError, ResourceError


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True)
class Inner:
    name: str
    weight: float = 1.0


@dataclass(frozen=True)
class Everything:
    flag: bool
    count: int
    ratio: float
    text: str
    raw: Any
    blob: bytes
    output: Annotated[bytes, BASE64]
    colour: Colour
    level: Level
    path: Path
    maybe: int | None
    inner: Inner
    maybe_inner: Inner | None
    items: tuple[Inner, ...]
    names: list[str]
    seq: Sequence[int]
    it: Iterable[bytes]
    pair: tuple[str, int]
    tags: frozenset[str]
    scores: Mapping[str, float]
    plain: dict[str, int]
    by_hash: Mapping[bytes, str]
    nested: Mapping[str, tuple[Inner, ...]]


EVERYTHING = Everything(
    flag=True,
    count=3,
    ratio=0.5,
    text="hi",
    raw={"anything": [1, 2]},
    blob=b"\x00\xff",
    output=b"out",
    colour=Colour.BLUE,
    level=Level.HIGH,
    path=Path("/o/a"),
    maybe=None,
    inner=Inner("a"),
    maybe_inner=Inner("b", 2.0),
    items=(Inner("c"), Inner("d", 0.0)),
    names=["x", "y"],
    seq=(1, 2),
    it=(b"\x01",),
    pair=("p", 7),
    tags=frozenset({"z", "a"}),
    scores={"b": 2.0, "a": 1.0},
    plain={"k": 1},
    by_hash={b"\x02": "two", b"\x01": "one"},
    nested={"n": (Inner("e"),)},
)
EVERYTHING_DOC = {
    "flag": True,
    "count": 3,
    "ratio": 0.5,
    "text": "hi",
    "raw": {"anything": [1, 2]},
    "blob": b"\x00\xff",
    "output": b"out",
    "colour": "blue",
    "level": 2,
    "path": "/o/a",
    "maybe": None,
    "inner": {"name": "a", "weight": 1.0},
    "maybe_inner": {"name": "b", "weight": 2.0},
    "items": [{"name": "c", "weight": 1.0}, {"name": "d", "weight": 0.0}],
    "names": ["x", "y"],
    "seq": [1, 2],
    "it": [b"\x01"],
    "pair": ["p", 7],
    "tags": ["a", "z"],
    "scores": {"a": 1.0, "b": 2.0},
    "plain": {"k": 1},
    "by_hash": [[b"\x01", "one"], [b"\x02", "two"]],
    "nested": {"n": [{"name": "e", "weight": 1.0}]},
}


def test_every_annotation_in_the_cbor_form():
    doc = to_doc(EVERYTHING)
    assert doc == EVERYTHING_DOC
    assert list(doc["scores"]) == ["a", "b"]  # maps are sorted by key
    back = from_doc(Everything, cbor2.loads(cbor2.dumps(doc)))
    assert back == EVERYTHING
    assert isinstance(back.items, tuple) and isinstance(back.names, list)
    assert isinstance(back.seq, tuple) and isinstance(back.tags, frozenset)
    assert isinstance(back.path, Path) and back.level is Level.HIGH


def test_every_annotation_in_the_json_form():
    doc = to_doc(EVERYTHING, json=True)
    assert doc == EVERYTHING_DOC | {
        "blob": "00ff",
        "output": "b3V0",  # base64, by the field's mark
        "it": ["01"],
        "by_hash": [["01", "one"], ["02", "two"]],
    }
    text = json.dumps(doc)
    assert from_doc(Everything, json.loads(text), json=True) == EVERYTHING
    # The CBOR form's reader takes the JSON form too (one from_dict for both)...
    assert from_doc(Everything, json.loads(text)) == EVERYTHING
    # ...but the JSON reader takes no bytes: a JSON document cannot hold them.
    with pytest.raises(CodecError, match=r"^everything\.blob: expected hex text, got bytes$"):
        from_doc(Everything, EVERYTHING_DOC, json=True)


def test_numbers_as_json_gives_them():
    d = dict(EVERYTHING_DOC, count=3.0, ratio=1)
    v = from_doc(Everything, d)
    assert type(v.count) is int and v.count == 3
    assert type(v.ratio) is float and v.ratio == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"flag": 1}, "everything.flag: expected a bool, got int"),
        ({"count": True}, "everything.count: expected an integer, got bool"),
        ({"count": 1.5}, "everything.count: expected an integer, got 1.5"),
        ({"ratio": "1"}, "everything.ratio: expected a number, got str"),
        ({"ratio": 10**400}, "everything.ratio: number out of range"),
        ({"text": b"x"}, "everything.text: expected a string, got bytes"),
        ({"blob": "xyz"}, "everything.blob: not a hex string"),
        ({"blob": 5}, "everything.blob: expected bytes or hex text, got int"),
        ({"output": "!!"}, "everything.output: not a base64 string"),
        ({"colour": "green"}, "everything.colour: expected one of 'red', 'blue', got 'green'"),
        ({"path": 3}, "everything.path: expected a string, got int"),
        ({"maybe": "x"}, "everything.maybe: expected an integer, got str"),
        ({"inner": []}, "everything.inner: expected a map, got list"),
        ({"inner": {}}, "everything.inner.name: missing"),
        ({"maybe_inner": {"name": 1}}, "everything.maybe_inner.name: expected a string"),
        ({"items": {"name": "a"}}, "everything.items: expected a list, got dict"),
        ({"items": [{"name": "a"}, {"weight": 1}]}, r"everything.items[1].name: missing"),
        ({"names": "ab"}, "everything.names: expected a list, got str"),
        ({"pair": ["p"]}, "everything.pair: expected a list of 2 items, got list"),
        ({"pair": ["p", "q"]}, r"everything.pair[1]: expected an integer, got str"),
        ({"tags": [1]}, r"everything.tags[0]: expected a string, got int"),
        ({"scores": [1]}, "everything.scores: expected a map, got list"),
        ({"scores": {"a": "x"}}, r"everything.scores[a]: expected a number, got str"),
        ({"scores": {1: 1.0}}, r"everything.scores[1]: expected a string, got int"),
        ({"by_hash": {"01": "one"}}, "everything.by_hash: expected a list of [key, value] pairs"),
        ({"by_hash": [["01"]]}, r"everything.by_hash[0]: expected a [key, value] pair"),
        ({"by_hash": [["zz", "x"]]}, r"everything.by_hash[0]: not a hex string"),
        ({"nested": {"n": [{}]}}, r"everything.nested[n][0].name: missing"),
    ],
)
def test_shape_errors_name_the_path(change, message):
    with pytest.raises(CodecError) as e:
        from_doc(Everything, EVERYTHING_DOC | change)
    assert str(e.value).startswith(message)


def test_missing_fields_and_unknown_keys():
    doc = {k: v for k, v in EVERYTHING_DOC.items() if k != "text"}
    with pytest.raises(CodecError, match=r"^everything\.text: missing$"):
        from_doc(Everything, doc)
    # A newer peer's extra keys are ignored; a missing field with a default takes it.
    assert from_doc(Inner, {"name": "a", "colour": "red", "v2": [1]}) == Inner("a", 1.0)
    with pytest.raises(CodecError, match=r"^inner: expected a map, got list$"):
        from_doc(Inner, ["a"])


def test_a_bare_annotation_decodes_and_is_named_value():
    assert from_doc(tuple[Inner, ...], [{"name": "a"}]) == (Inner("a"),)
    assert from_doc(int | None, None) is None
    with pytest.raises(CodecError, match=r"^value\[0\]\.name: missing$"):
        from_doc(tuple[Inner, ...], [{}])


# -- the type's own validation passes through ---------------------------------------------------


@dataclass(frozen=True)
class Checked:
    size: int

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ResourceError(f"checked.size: must be at least 0, got {self.size}")


def test_domain_errors_pass_through_unchanged():
    with pytest.raises(ResourceError, match=r"^checked\.size: must be at least 0, got -1$"):
        from_doc(Checked, {"size": -1})
    with pytest.raises(ResourceError):
        from_doc(tuple[Checked, ...], [{"size": 1}, {"size": -1}])


# -- field options -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    required: Annotated[str, Default("")]
    runtime: Annotated[str, OMIT_DEFAULT] = "wasm"
    hidden: int = field(default=0, init=False)
    _private: int = 0
    note: str | None = None
    extra: dict[str, int] = field(default_factory=dict)


def test_default_omit_default_and_skipped_fields():
    assert to_doc(Options("r")) == {"required": "r", "note": None, "extra": {}}
    assert to_doc(Options("r", "exec")) == {
        "required": "r",
        "note": None,
        "extra": {},
        "runtime": "exec",
    }
    assert from_doc(Options, {}) == Options("")
    assert from_doc(Options, {"runtime": "exec", "hidden": 5, "_private": 3}) == Options("", "exec")


def test_omit_default_needs_a_default():
    @dataclass
    class Bad:
        x: Annotated[int, OMIT_DEFAULT]

    with pytest.raises(TypeError, match="OMIT_DEFAULT needs a default"):
        to_doc(Bad(1))


# -- variants --------------------------------------------------------------------------------------


class Shape(Document):
    __slots__ = ()
    __codec_tag__: ClassVar[str] = "kind"
    __codec_variants__: ClassVar[dict[str, type[Shape]]] = {}
    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Shape.__codec_variants__[cls.kind] = cls


@dataclass(frozen=True, slots=True)
class Circle(Shape):
    radius: float
    kind: ClassVar[str] = "circle"


@dataclass(frozen=True, slots=True)
class Square(Shape):
    side: float
    kind: ClassVar[str] = "square"


@dataclass(frozen=True)
class Drawing:
    shapes: tuple[Shape, ...]
    main: Shape | None = None


def test_variants_carry_their_tag_first():
    d = Drawing((Circle(1.0), Square(2.0)), Square(3.0))
    doc = to_doc(d)
    assert doc == {
        "shapes": [{"kind": "circle", "radius": 1.0}, {"kind": "square", "side": 2.0}],
        "main": {"kind": "square", "side": 3.0},
    }
    assert list(doc["shapes"][0]) == ["kind", "radius"]
    assert from_doc(Drawing, doc) == d
    assert Shape.from_dict({"kind": "circle", "radius": 1}) == Circle(1.0)
    assert Circle.from_dict({"kind": "circle", "radius": 1}).to_dict() == {
        "kind": "circle",
        "radius": 1.0,
    }


@pytest.mark.parametrize(
    ("tp", "doc", "message"),
    [
        (Shape, {"radius": 1}, "shape.kind: missing"),
        (Shape, {"kind": "hexagon"}, "shape.kind: unknown kind 'hexagon'"),
        (Shape, {"kind": 3}, "shape.kind: unknown kind 3"),
        (Shape, "circle", "shape: expected a map, got str"),
        (Circle, {"kind": "square", "side": 1}, "circle.kind: expected 'circle', got 'square'"),
        (Circle, {"radius": 1}, "circle.kind: missing"),
        (Shape, {"kind": "circle"}, "shape.radius: missing"),
        (Drawing, {"shapes": [{"kind": "circle", "radius": "x"}]}, "drawing.shapes[0].radius"),
    ],
)
def test_variant_errors(tp, doc, message):
    with pytest.raises(CodecError) as e:
        from_doc(tp, doc)
    assert str(e.value).startswith(message)


def test_the_base_alone_has_no_document():
    with pytest.raises(TypeError, match="no document form"):
        to_doc(Shape())


# -- hooks and __codec_fields__ --------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """A scalar: encoded as its text, decoded from text or from the old map form."""

    major: int
    minor: int

    def __codec_encode__(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def __codec_decode__(cls, doc: object) -> Version:
        if isinstance(doc, str) and doc.count(".") == 1:
            a, b = doc.split(".")
            if a.isdigit() and b.isdigit():
                return cls(int(a), int(b))
        if isinstance(doc, Mapping):
            return cls(doc["major"], doc["minor"])
        raise ValueError(f"expected a version like '1.2', got {doc!r}")


@dataclass(slots=True)
class _BagDoc:
    entries: tuple[tuple[str, int], ...] = ()


class Bag:
    """Not a dataclass; encoded through a stand-in dataclass."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self.counts = dict(counts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bag) and self.counts == other.counts

    def __codec_encode__(self) -> _BagDoc:
        return _BagDoc(tuple(sorted(self.counts.items())))

    @classmethod
    def __codec_decode__(cls, doc: _BagDoc) -> Bag:
        return cls(dict(doc.entries))


class Meter(Document):
    """Mutable, not a dataclass: its constructor takes what it announces."""

    __codec_fields__ = ("total", "used", "versions")

    def __init__(
        self, *, total: int, used: int = 0, versions: Iterable[Version] = (), note: str = ""
    ) -> None:
        if used > total:
            raise ResourceError("meter.used: exceeds total")
        self.total, self.used, self.versions, self.note = total, used, tuple(versions), note

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Meter) and to_doc(self) == to_doc(other)


@dataclass(frozen=True)
class Holder:
    version: Version
    bag: Bag
    meter: Meter
    versions: Mapping[str, Version] = field(default_factory=dict)


def test_hooks_and_codec_fields():
    v = Holder(
        Version(1, 2),
        Bag({"b": 2, "a": 1}),
        Meter(total=5, versions=[Version(3, 4)]),
        {"x": Version(0, 1)},
    )
    doc = to_doc(v)
    assert doc == {
        "version": "1.2",
        "bag": {"entries": [["a", 1], ["b", 2]]},
        "meter": {"total": 5, "used": 0, "versions": ["3.4"]},
        "versions": {"x": "0.1"},
    }
    assert from_doc(Holder, doc) == v
    assert from_doc(Version, {"major": 1, "minor": 2}) == Version(1, 2)
    assert Meter.from_dict({"total": 3}).to_dict() == {"total": 3, "used": 0, "versions": []}


def test_hook_and_codec_fields_errors():
    doc = to_doc(Holder(Version(1, 2), Bag({}), Meter(total=1)))
    with pytest.raises(CodecError, match=r"^holder\.version: expected a version like '1\.2'"):
        from_doc(Holder, doc | {"version": "one"})
    with pytest.raises(CodecError, match=r"^holder\.bag\.entries\[0\]: expected a list of 2"):
        from_doc(Holder, doc | {"bag": {"entries": [["a"]]}})
    with pytest.raises(CodecError, match=r"^holder\.meter\.total: missing$"):
        from_doc(Holder, doc | {"meter": {"used": 1}})
    with pytest.raises(CodecError, match=r"^holder\.versions\[x\]: expected a version"):
        from_doc(Holder, doc | {"versions": {"x": 1}})
    with pytest.raises(ResourceError, match=r"^meter\.used: exceeds total$"):
        from_doc(Holder, doc | {"meter": {"total": 1, "used": 2}})


# -- compiling -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    label: str
    children: tuple[Tree, ...] = ()


def test_a_type_that_contains_itself():
    t = Tree("root", (Tree("a", (Tree("b"),)), Tree("c")))
    doc = to_doc(t)
    assert doc["children"][0]["children"][0] == {"label": "b", "children": []}
    assert from_doc(Tree, doc) == t
    with pytest.raises(CodecError, match=r"^tree\.children\[0\]\.children\[0\]\.label: missing$"):
        from_doc(Tree, {"label": "r", "children": [{"label": "a", "children": [{}]}]})


def test_each_type_and_form_compiles_once():
    to_doc(Inner("a"))
    to_doc(Inner("a"), json=True)
    enc, enc_json = codec._ENCODERS[False][Inner], codec._ENCODERS[True][Inner]
    to_doc(Inner("b"))
    assert codec._ENCODERS[False][Inner] is enc and enc is not enc_json
    from_doc(Inner, {"name": "a"})
    dec = codec._DECODERS[False][Inner]
    from_doc(Inner, {"name": "b"})
    assert codec._DECODERS[False][Inner] is dec


def test_unsupported_annotations_are_type_errors():
    @dataclass
    class Odd:
        x: int | str

    with pytest.raises(TypeError, match="only X | None"):
        to_doc(Odd(1))

    class Plain:
        pass

    with pytest.raises(TypeError, match="no document form"):
        to_doc(Plain())
    with pytest.raises(TypeError, match="no document form"):
        to_doc(1j)


@given(
    st.builds(
        Inner,
        st.text(max_size=5),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    st.binary(max_size=8),
)
def test_round_trips_through_bytes(inner, blob):
    v = dataclasses.replace(EVERYTHING, inner=inner, blob=blob)
    assert from_doc(Everything, cbor2.loads(cbor2.dumps(to_doc(v)))) == v
    assert from_doc(Everything, json.loads(json.dumps(to_doc(v, json=True))), json=True) == v


@dataclass(frozen=True)
class Chunks:
    parts: tuple[Annotated[bytes, BASE64], ...]


def test_marks_work_inside_containers():
    c = Chunks((b"ab", b"\xff"))
    assert to_doc(c, json=True) == {"parts": ["YWI=", "/w=="]}
    assert to_doc(c) == {"parts": [b"ab", b"\xff"]}
    assert from_doc(Chunks, {"parts": ["YWI=", b"\xff"]}) == c
