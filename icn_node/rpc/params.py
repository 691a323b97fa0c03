"""Parameters of a JSON-RPC method, declared once as a dataclass and checked in one step.

:func:`parse` reads ``params`` into a parameter class with :mod:`icn_node.codec` (its JSON form),
so the shape of every parameter (types, lists, nested resource profiles and locality hints,
unknown or missing keys) is checked by the same code that checks wire documents, and the class's
own ``__post_init__`` checks the values. Either way the caller gets one
:class:`~icn_node.rpc.protocol.InvalidParams` whose message starts with the parameter's name
(``fuel: expected an integer, got str``, ``profile.cpu_cores: must be greater than 0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from ..codec import from_doc
from ..errors import CodecError, IcnError
from .request import InvalidParams

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class NoParams:
    """The parameters of a method that takes none (``node.status``, ``mesh.peers``): any
    object is accepted, as the codec ignores keys a class does not know."""


def parse(cls: type[P], params: Any) -> P:
    """``params`` as a ``cls``, or :class:`InvalidParams` naming the parameter at fault."""
    if not isinstance(params, dict):
        raise InvalidParams(f"params: expected an object, got {type(params).__name__}")
    try:
        value: P = from_doc(cls, params, json=True)
    except CodecError as e:
        # "submit_params.fuel: ..." -> "fuel: ...": the caller names parameters, not our class.
        raise InvalidParams(str(e).split(".", 1)[-1]) from None
    except InvalidParams:
        raise
    except (IcnError, ValueError) as e:
        raise InvalidParams(_as_param(str(e))) from None
    return value


def _as_param(message: str) -> str:
    """A value type's error (``resource_profile.cpu_cores: ...``) as the parameter's."""
    for prefix, param in (("resource_profile.", "profile."), ("locality_hint.", "hints: ")):
        if message.startswith(prefix):
            return param + message[len(prefix) :]
    return message


__all__ = ["NoParams", "parse"]
