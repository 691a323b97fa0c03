"""Documents derived from annotations: the one codec for icnd's value types.

A *document* is the plain form of a value: maps with text keys, lists, text, numbers, bools,
None and, in the CBOR form, bytes. :func:`to_doc` turns a value into its document and
:func:`from_doc` turns a document into a value of a given type. Both read the type's
annotations, so a value type declares its fields once and its document follows from them; no
hand-kept ``to_dict``/``from_dict`` twin has to be kept in step. Classes whose callers use
those two names inherit :class:`Document`, which derives them from this module.

Two forms. The CBOR form (``json=False``) keeps ``bytes`` as bytes. The JSON form
(``json=True``) writes them as lowercase hex, or as base64 where the annotation says
``Annotated[bytes, BASE64]`` (a task's output). Decoding the CBOR form also accepts the JSON
form's text for bytes, so one ``from_dict`` reads both; decoding with ``json=True`` accepts text
only, as a JSON document cannot hold bytes.

What is understood:

- ``bool``, ``int``, ``float``, ``str``, ``None``; ``Any``/``object``, passed through as they
  are; ``bytes`` (above); enums, by value; ``os.PathLike`` classes such as ``Path``, as text.
- ``X | None``.
- ``tuple[X, ...]``, ``list[X]``, ``Sequence[X]`` and ``Iterable[X]`` as lists (decoded to a
  tuple, or a list for ``list[X]``); a fixed ``tuple[X, Y]`` as a list of that length;
  ``frozenset[X]`` as a sorted list.
- ``Mapping[str, V]`` and ``dict[str, V]`` as a map sorted by key. A mapping with other keys
  (``Mapping[bytes, str]``) is a list of ``[key, value]`` pairs sorted by key: a JSON map has
  text keys only, and one shape for both forms keeps the two documents alike.
- Dataclasses, by their ``init`` fields whose names do not start with ``_``, in field order.
- Any other class that names its fields in ``__codec_fields__``: each name is both a keyword of
  ``__init__`` (whose annotations and defaults are used) and an attribute read when encoding.
  That is all :class:`~icn_node.scheduler.NodeCapacity` needs: a mutable class whose
  constructor takes exactly the figures it announces. It is simpler than the hooks below,
  which would need a stand-in dataclass repeating all nine fields.
- A class with hooks, ``__codec_encode__(self) -> R`` and a classmethod
  ``__codec_decode__(cls, doc: D)``: the value is encoded as ``R`` and decoded from a ``D``
  (both read from the hooks' annotations; ``object`` hands the raw document over). A scalar
  such as ``ComputeCapability`` (``-> str``) or a class whose document is not its constructor
  (``BlobRegistry``, through a small private dataclass) uses them. A decode hook raises
  ``ValueError`` for a malformed document, which becomes a :class:`CodecError` at its path.
- Variant families: a base class with ``__codec_variants__`` (tag value -> subclass) and
  ``__codec_tag__`` (the key, e.g. ``"kind"``). A subclass's document is its fields with the tag
  first; decoding the base picks the subclass by the tag, decoding a subclass checks it.

Field options go in ``Annotated``: :data:`BASE64`, :data:`OMIT_DEFAULT` (leave the key out
while the field holds its default) and :class:`Default` (a document without the key decodes to
that value, for a field the constructor requires). ``Annotated`` rather than dataclass field
metadata, because it also works inside a container (``tuple[Annotated[bytes, BASE64], ...]``)
and on the ``__init__`` annotations ``__codec_fields__`` reads.

Errors. A document of the wrong shape (a wrong type, a missing required field, an unknown tag,
text that is not hex) raises :class:`~icn_node.errors.CodecError` whose message starts with
the path to the bad part, ``type_name.field[index].sub`` (for example
``placement_request.locality_hints[0].did: missing``). Errors raised by a class's own
validation (``__post_init__`` or ``__init__``) pass through unchanged: the codec checks shapes,
the types check their values. Keys a type does not know are ignored, so a newer peer's
document still parses, and a missing field takes the constructor's default.

Speed. Each (type, form) is compiled once, on first use, and cached. Records are compiled to
generated source, as :mod:`dataclasses` builds ``__init__``, so encoding one is a single dict
display with the field reads inline, as a hand-written ``to_dict`` would be. Nothing is
validated when encoding: a value was validated when it was built.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import inspect
import re
import types
from collections import abc
from collections.abc import Callable
from typing import Annotated, Any, Self, Union, get_args, get_origin, get_type_hints

from icn_node.errors import CodecError

__all__ = ["BASE64", "OMIT_DEFAULT", "Default", "Document", "Mark", "from_doc", "to_doc"]


class Mark(enum.Enum):
    """Field options without a value, given as ``Annotated[T, mark]``."""

    BASE64 = "base64"
    """``bytes`` as base64 text (not hex) in the JSON form."""
    OMIT_DEFAULT = "omit_default"
    """Leave the key out of the document while the field holds its default."""


BASE64 = Mark.BASE64
OMIT_DEFAULT = Mark.OMIT_DEFAULT


@dataclasses.dataclass(frozen=True, slots=True)
class Default:
    """``Annotated[T, Default(x)]``: a document without this key decodes as ``x``. For a field
    the constructor requires but a document may leave out."""

    value: Any


class Document:
    """Gives a class ``to_dict``/``from_dict``, derived from this codec, for the callers that
    use those names: ``to_dict(json_safe=...)`` is :func:`to_doc` and ``from_dict`` is
    :func:`from_doc` in the CBOR form, which also reads the JSON form."""

    __slots__ = ()

    def to_dict(self, *, json_safe: bool = False) -> Any:
        return to_doc(self, json=json_safe)

    @classmethod
    def from_dict(cls, d: Any) -> Self:
        value: Self = from_doc(cls, d)
        return value


def to_doc(value: Any, *, json: bool = False) -> Any:
    """The document of ``value``, by its class; ``json=True`` for the JSON form."""
    tp = type(value)
    enc = _ENCODERS[json].get(tp) or _encoder(tp, json)
    return enc(value)


def from_doc(tp: Any, doc: Any, *, json: bool = False) -> Any:
    """A value of type ``tp`` (a class or any annotation listed above) read from ``doc``.

    Raises :class:`CodecError` naming the path when ``doc`` has the wrong shape; errors from the
    type's own validation pass through.
    """
    dec = _DECODERS[json].get(tp) or _decoder(tp, json)
    try:
        return dec(doc)
    except _Bad as e:
        raise CodecError(f"{_type_name(tp)}{''.join(reversed(e.path))}: {e.problem}") from None


# -- shape errors --------------------------------------------------------------------------


class _Bad(Exception):
    """A shape error on its way out; each level it passes adds its step to ``path``
    (innermost first), and :func:`from_doc` turns it into a :class:`CodecError`."""

    def __init__(self, problem: str, step: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = [step] if step else []

    def at(self, step: str) -> _Bad:
        self.path.append(step)
        return self


_MISSING = object()


def _tname(v: Any) -> str:
    return type(v).__name__


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _type_name(tp: Any) -> str:
    return _snake(tp.__name__) if isinstance(tp, type) else "value"


# -- what a type is --------------------------------------------------------------------------

_UNIONS = (Union, types.UnionType)
_SEQUENCES = (tuple, list, abc.Sequence, abc.Iterable)
_SETS = (frozenset, abc.Set)
_MAPPINGS = (dict, abc.Mapping)
_PLAIN = (bool, int, float, str, types.NoneType)
_RAW = (Any, object)


def _strip(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """``Annotated[T, *marks]`` -> ``(T, marks)``; anything else -> ``(tp, ())``."""
    if get_origin(tp) is Annotated:
        return tp.__origin__, tp.__metadata__
    return tp, ()


def _optional(tp: Any) -> Any | None:
    """``X`` for ``X | None``; None for anything else."""
    if get_origin(tp) not in _UNIONS:
        return None
    args = get_args(tp)
    rest = [a for a in args if a is not types.NoneType]
    if len(rest) != 1 or len(args) != 2:
        raise TypeError(f"codec: only X | None is supported among unions, not {tp!r}")
    return rest[0]


def _is_record(cls: type) -> bool:
    return dataclasses.is_dataclass(cls) or hasattr(cls, "__codec_fields__")


def _kind(tp: Any) -> str | None:
    """``"hook"``, ``"record"``, ``"variants"`` (a variant family's base) or None."""
    if not isinstance(tp, type):
        return None
    if hasattr(tp, "__codec_encode__"):
        return "hook"
    if _is_record(tp):
        return "record"
    if hasattr(tp, "__codec_variants__"):
        return "variants"
    return None


def _tag(cls: type) -> tuple[str, str] | None:
    """``(key, value)`` of a variant subclass's tag, or None for a plain record."""
    if not hasattr(cls, "__codec_variants__"):
        return None
    key: str = getattr(cls, "__codec_tag__")  # noqa: B009 (a class attribute by convention)
    return key, getattr(cls, key)


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    tp: Any  # as annotated, marks included
    marks: tuple[Any, ...]
    required: bool
    default: Any


def _fields(cls: type) -> list[_Field]:
    if dataclasses.is_dataclass(cls):
        hints = get_type_hints(cls, include_extras=True)
        out = []
        for f in dataclasses.fields(cls):
            if not f.init or f.name.startswith("_"):
                continue
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            out.append(_Field(f.name, hints[f.name], _strip(hints[f.name])[1], required, f.default))
        return out
    init = cls.__dict__.get("__init__") or getattr(cls, "__init__")  # noqa: B009
    hints = get_type_hints(init, include_extras=True)
    params = inspect.signature(init).parameters
    out = []
    for name in getattr(cls, "__codec_fields__"):  # noqa: B009
        p = params[name]
        out.append(
            _Field(name, hints[name], _strip(hints[name])[1], p.default is p.empty, p.default)
        )
    return out


def _hook_types(cls: type) -> tuple[Any, Any]:
    """The representation a hooked class encodes to, and the one it decodes from."""
    enc = get_type_hints(getattr(cls, "__codec_encode__")).get("return", Any)  # noqa: B009
    fn = getattr(cls, "__codec_decode__")  # noqa: B009
    (param,) = inspect.signature(fn).parameters
    dec = get_type_hints(fn.__func__).get(param, Any)
    return enc, dec


# -- compiling ---------------------------------------------------------------------------------

# Compiled functions by type: [0] for the CBOR form, [1] for the JSON form (``cache[json]``).
_Cache = tuple[dict[Any, Callable[[Any], Any]], dict[Any, Callable[[Any], Any]]]
_ENCODERS: _Cache = ({}, {})
_DECODERS: _Cache = ({}, {})


def _cached(
    caches: _Cache, compile_: Callable[[Any, bool], Callable[[Any], Any]], tp: Any, json: bool
) -> Callable[[Any], Any]:
    cache = caches[json]
    fn = cache.get(tp)
    if fn is None:
        # A forwarder first, so that a type which contains itself can compile.
        cache[tp] = lambda v: cache[tp](v)
        try:
            fn = compile_(tp, json)
        except BaseException:
            del cache[tp]
            raise
        cache[tp] = fn
    return fn


def _encoder(tp: Any, json: bool) -> Callable[[Any], Any]:
    return _cached(_ENCODERS, _compile_encoder, tp, json)


def _decoder(tp: Any, json: bool) -> Callable[[Any], Any]:
    return _cached(_DECODERS, _compile_decoder, tp, json)


class _Source:
    """Generated source for one function, with the objects it names."""

    def __init__(self, json: bool) -> None:
        self.json = json
        self.ns: dict[str, Any] = {"_Bad": _Bad, "_MISSING": _MISSING, "_Mapping": abc.Mapping}
        self.inside: list[type] = []  # the records being written out, innermost last
        self._n = 0

    def fresh(self, prefix: str = "v") -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def ref(self, obj: Any) -> str:
        name = self.fresh("_f")
        self.ns[name] = obj
        return name

    def build(self, lines: list[str], qualname: str) -> Callable[[Any], Any]:
        exec("\n".join(lines), self.ns)  # generated from annotations, as dataclasses does
        fn: Callable[[Any], Any] = self.ns["_fn"]
        fn.__qualname__ = fn.__name__ = qualname
        return fn


def _unsupported(tp: Any) -> TypeError:
    return TypeError(f"codec: no document form for {tp!r}")


# -- encoding ----------------------------------------------------------------------------------


def _compile_encoder(tp: Any, json: bool) -> Callable[[Any], Any]:
    src = _Source(json)
    cls = _strip(tp)[0]
    kind = _kind(cls)
    if kind == "record":
        body = _record_encoder(cls, src)
    elif kind == "hook":
        rep, _ = _hook_types(cls)
        body = [f"    return {_enc_expr(rep, 'o.__codec_encode__()', src)}"]
    elif kind == "variants":
        # A field typed as the base holds some subclass: encode by the value's own class.
        def by_class(v: Any) -> Any:
            if type(v) is cls:
                raise _unsupported(cls)
            return (_ENCODERS[json].get(type(v)) or _encoder(type(v), json))(v)

        return by_class
    else:
        body = [f"    return {_enc_expr(tp, 'o', src)}"]
    return src.build(["def _fn(o):", *body], f"encode_{_type_name(cls)}")


def _record_parts(cls: type, o: str, cx: _Source) -> tuple[str, list[str]]:
    """A record's document as a dict display over the variable ``o``, and the statements that
    add its OMIT_DEFAULT fields to ``d``."""
    items, tail = [], []
    tag = _tag(cls)
    if tag is not None:
        items.append(f"{tag[0]!r}: {tag[1]!r}")
    cx.inside.append(cls)
    for f in _fields(cls):
        expr = _enc_expr(f.tp, f"{o}.{f.name}", cx)
        if OMIT_DEFAULT in f.marks:
            if f.required or f.default is dataclasses.MISSING:
                raise TypeError(f"codec: {cls.__name__}.{f.name}: OMIT_DEFAULT needs a default")
            tail.append(f"    if {o}.{f.name} != {cx.ref(f.default)}: d[{f.name!r}] = {expr}")
        else:
            items.append(f"{f.name!r}: {expr}")
    cx.inside.pop()
    return "{" + ", ".join(items) + "}", tail


def _record_encoder(cls: type, cx: _Source) -> list[str]:
    head, tail = _record_parts(cls, "o", cx)
    if not tail:
        return [f"    return {head}"]
    return [f"    d = {head}", *tail, "    return d"]


def _b64encode(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _enc_expr(tp: Any, src: str, cx: _Source) -> str:
    """An expression that encodes the value of ``src``, which it evaluates once."""
    tp, marks = _strip(tp)
    if tp in _PLAIN or tp in _RAW:
        return src
    inner_tp = _optional(tp)
    if inner_tp is not None:
        v = cx.fresh()
        inner = _enc_expr(inner_tp, v, cx)
        return src if inner == v else f"(None if ({v} := {src}) is None else {inner})"
    if tp is bytes:
        if not cx.json:
            return src
        return f"{cx.ref(_b64encode)}({src})" if BASE64 in marks else f"{src}.hex()"
    origin, args = get_origin(tp), get_args(tp)
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        t = cx.fresh()
        parts = [_enc_expr(a, f"{t}[{i}]", cx) for i, a in enumerate(args)]
        return f"(lambda {t}: [{', '.join(parts)}])({src})"
    if origin in _SEQUENCES or origin in _SETS:
        x = cx.fresh()
        inner = _enc_expr(args[0], x, cx)
        items = f"sorted({src})" if origin in _SETS else src
        return f"list({items})" if inner == x else f"[{inner} for {x} in {items}]"
    if origin in _MAPPINGS:
        k, v = cx.fresh(), cx.fresh()
        ek, ev = _enc_expr(args[0], k, cx), _enc_expr(args[1], v, cx)
        items = f"sorted({src}.items())"
        if _strip(args[0])[0] is str:
            return f"dict({items})" if ev == v else f"{{{k}: {ev} for {k}, {v} in {items}}}"
        return f"[[{ek}, {ev}] for {k}, {v} in {items}]"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return f"{src}.value"
    if isinstance(tp, type) and hasattr(tp, "__fspath__"):
        return f"str({src})"
    kind = _kind(tp)
    if kind == "hook":
        return _enc_expr(_hook_types(tp)[0], f"{src}.__codec_encode__()", cx)
    if kind == "record" and src.isidentifier() and tp not in cx.inside:
        # A record held in a variable (a list item, an optional's value): its display inline,
        # which saves a call per item.
        head, tail = _record_parts(tp, src, cx)
        if not tail:
            return head
    if kind is not None:
        return f"{cx.ref(_encoder(tp, cx.json))}({src})"
    raise _unsupported(tp)


# -- decoding ----------------------------------------------------------------------------------


def _dec_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    raise _Bad(f"expected a string, got {_tname(v)}")


def _dec_bool(v: Any) -> bool:
    if v is True or v is False:
        return v
    raise _Bad(f"expected a bool, got {_tname(v)}")


def _dec_int(v: Any) -> int:
    """An int; a float with an integral value is accepted (JSON has no int)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        if v.is_integer():
            return int(v)
        raise _Bad(f"expected an integer, got {v!r}")
    raise _Bad(f"expected an integer, got {_tname(v)}")


def _dec_float(v: Any) -> float:
    if isinstance(v, float):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        try:
            return float(v)
        except OverflowError:
            raise _Bad(f"number out of range: {v}") from None
    raise _Bad(f"expected a number, got {_tname(v)}")


def _dec_none(v: Any) -> None:
    if v is not None:
        raise _Bad(f"expected null, got {_tname(v)}")


def _dec_raw(v: Any) -> Any:
    return v


_PLAIN_DECODERS: dict[Any, Callable[[Any], Any]] = {
    str: _dec_str,
    bool: _dec_bool,
    int: _dec_int,
    float: _dec_float,
    types.NoneType: _dec_none,
}


def _compile_decoder(tp: Any, json: bool) -> Callable[[Any], Any]:
    tp, marks = _strip(tp)
    if tp in _RAW:
        return _dec_raw
    if tp in _PLAIN_DECODERS:
        return _PLAIN_DECODERS[tp]
    inner_tp = _optional(tp)
    if inner_tp is not None:
        inner = _decoder(inner_tp, json)
        return lambda v: None if v is None else inner(v)
    if tp is bytes:
        return _bytes_decoder(BASE64 in marks, json)
    origin, args = get_origin(tp), get_args(tp)
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return _fixed_decoder(tuple(_decoder(a, json) for a in args))
    if origin in _SEQUENCES or origin in _SETS:
        make = list if origin is list else frozenset if origin in _SETS else tuple
        return _seq_decoder(_decoder(args[0], json), make)
    if origin in _MAPPINGS:
        kdec, vdec = _decoder(args[0], json), _decoder(args[1], json)
        if _strip(args[0])[0] is str:
            return _map_decoder(kdec, vdec)
        return _pairs_decoder(kdec, vdec)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_decoder(tp)
    if isinstance(tp, type) and hasattr(tp, "__fspath__"):
        return lambda v: tp(_dec_str(v))
    kind = _kind(tp)
    if kind == "record":
        return _record_decoder(tp, json)
    if kind == "hook":
        return _hook_decoder(tp, json)
    if kind == "variants":
        return _variants_decoder(tp, json)
    raise _unsupported(tp)


def _bytes_decoder(b64: bool, json: bool) -> Callable[[Any], bytes]:
    text: Callable[[str], bytes]
    if b64:
        what = "base64"

        def b64text(s: str) -> bytes:
            return base64.b64decode(s, validate=True)

        text = b64text
    else:
        what, text = "hex", bytes.fromhex
    wanted = f"{what} text" if json else f"bytes or {what} text"

    def dec(v: Any) -> bytes:
        if type(v) is bytes and not json:
            return v
        if isinstance(v, str):
            try:
                return text(v)
            except ValueError:
                raise _Bad(f"not a {what} string") from None
        if not json and isinstance(v, bytes | bytearray | memoryview):
            return bytes(v)
        raise _Bad(f"expected {wanted}, got {_tname(v)}")

    return dec


_Dec = Callable[[Any], Any]


def _seq_decoder(
    elem: Callable[[Any], Any], make: Callable[[list[Any]], Any]
) -> Callable[[Any], Any]:
    def dec(v: Any) -> Any:
        if not isinstance(v, list | tuple):
            raise _Bad(f"expected a list, got {_tname(v)}")
        out = []
        for i, x in enumerate(v):
            try:
                out.append(elem(x))
            except _Bad as e:
                raise e.at(f"[{i}]") from None
        return make(out)

    return dec


def _fixed_decoder(elems: tuple[Callable[[Any], Any], ...]) -> Callable[[Any], tuple[Any, ...]]:
    n = len(elems)

    def dec(v: Any) -> tuple[Any, ...]:
        if not isinstance(v, list | tuple) or len(v) != n:
            raise _Bad(f"expected a list of {n} items, got {_tname(v)}")
        out = []
        for i, (d, x) in enumerate(zip(elems, v, strict=True)):
            try:
                out.append(d(x))
            except _Bad as e:
                raise e.at(f"[{i}]") from None
        return tuple(out)

    return dec


def _map_decoder(
    kdec: Callable[[Any], Any], vdec: Callable[[Any], Any]
) -> Callable[[Any], dict[Any, Any]]:
    def dec(v: Any) -> dict[Any, Any]:
        if not isinstance(v, abc.Mapping):
            raise _Bad(f"expected a map, got {_tname(v)}")
        out = {}
        for k, x in v.items():
            try:
                out[kdec(k)] = vdec(x)
            except _Bad as e:
                raise e.at(f"[{k}]") from None
        return out

    return dec


def _pairs_decoder(
    kdec: Callable[[Any], Any], vdec: Callable[[Any], Any]
) -> Callable[[Any], dict[Any, Any]]:
    def dec(v: Any) -> dict[Any, Any]:
        if not isinstance(v, list | tuple):
            raise _Bad(f"expected a list of [key, value] pairs, got {_tname(v)}")
        out = {}
        for i, p in enumerate(v):
            try:
                if not isinstance(p, list | tuple) or len(p) != 2:
                    raise _Bad("expected a [key, value] pair")
                out[kdec(p[0])] = vdec(p[1])
            except _Bad as e:
                raise e.at(f"[{i}]") from None
        return out

    return dec


def _enum_decoder(cls: type[enum.Enum]) -> Callable[[Any], enum.Enum]:
    values = ", ".join(repr(m.value) for m in cls)

    def dec(v: Any) -> enum.Enum:
        try:
            return cls(v)
        except (ValueError, TypeError):
            raise _Bad(f"expected one of {values}, got {v!r}") from None

    return dec


def _hook_decoder(cls: type, json: bool) -> Callable[[Any], Any]:
    _, rep = _hook_types(cls)
    rep_dec = _decoder(rep, json)
    hook = getattr(cls, "__codec_decode__")  # noqa: B009

    def dec(v: Any) -> Any:
        r = rep_dec(v)
        try:
            return hook(r)
        except ValueError as e:
            raise _Bad(str(e)) from None

    return dec


def _variants_decoder(base: type, json: bool) -> Callable[[Any], Any]:
    key = getattr(base, "__codec_tag__")  # noqa: B009
    variants = getattr(base, "__codec_variants__")  # noqa: B009

    def dec(v: Any) -> Any:
        if not isinstance(v, abc.Mapping):
            raise _Bad(f"expected a map, got {_tname(v)}")
        t = v.get(key, _MISSING)
        if t is _MISSING:
            raise _Bad("missing", f".{key}")
        sub = variants.get(t) if isinstance(t, str) else None
        if sub is None or not issubclass(sub, base):
            raise _Bad(f"unknown {key} {t!r}", f".{key}")
        return (_DECODERS[json].get(sub) or _decoder(sub, json))(v)

    return dec


def _wrong_tag(key: str, want: str, got: Any) -> _Bad:
    return _Bad("missing" if got is _MISSING else f"expected {want!r}, got {got!r}", f".{key}")


def _dec_expr(tp: Any, v: str, cx: _Source) -> str:
    """An expression that decodes the local variable ``v`` (named as often as it likes)."""
    base, _ = _strip(tp)
    if base in _RAW:
        return v
    if base is float or base is int or base is str:
        return f"({v} if type({v}) is {base.__name__} else {cx.ref(_PLAIN_DECODERS[base])}({v}))"
    if base is bool:
        return f"({v} if {v} is True or {v} is False else {cx.ref(_dec_bool)}({v}))"
    inner_tp = _optional(base)
    if inner_tp is not None:
        return f"(None if {v} is None else {_dec_expr(inner_tp, v, cx)})"
    return f"{cx.ref(_decoder(tp, cx.json))}({v})"


def _record_decoder(cls: type, json: bool) -> Callable[[Any], Any]:
    src = _Source(json)
    src.ns["_cls"] = cls
    lines = [
        "def _fn(d):",
        "    if type(d) is not dict and not isinstance(d, _Mapping):",
        "        raise _Bad(f'expected a map, got {type(d).__name__}')",
    ]
    tag = _tag(cls)
    if tag is not None:
        key, want = tag
        lines += [
            f"    t = d.get({key!r}, _MISSING)",
            f"    if t != {want!r}:",
            f"        raise {src.ref(_wrong_tag)}({key!r}, {want!r}, t)",
        ]
    lines += ["    kw = {}", "    at = ''", "    try:"]
    for f in _fields(cls):
        n = repr(f.name)
        expr = _dec_expr(f.tp, "v", src)
        default = next((m for m in f.marks if isinstance(m, Default)), None)
        lines += [f"        at = {n}", f"        v = d.get({n}, _MISSING)"]
        if default is not None:
            lines.append(f"        kw[{n}] = {src.ref(default.value)} if v is _MISSING else {expr}")
        elif f.required:
            lines += [
                "        if v is _MISSING:",
                "            raise _Bad('missing')",
                f"        kw[{n}] = {expr}",
            ]
        else:
            lines += ["        if v is not _MISSING:", f"            kw[{n}] = {expr}"]
    lines += [
        "        pass",
        "    except _Bad as e:",
        "        raise e.at('.' + at) from None",
        "    return _cls(**kw)",
    ]
    return src.build(lines, f"decode_{_type_name(cls)}")
