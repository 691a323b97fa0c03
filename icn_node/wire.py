"""The wire: every message type icnd sends between nodes, and the one codec for them.

Nothing else in icnd builds or parses bytes that travel between nodes. This module is pure: it
imports no trio and reads no clock (a test enforces both).

Layout on a link (see docs/PROTOCOL.md for the full description):

* **Frame** — a 4-byte big-endian unsigned length, then that many bytes of body. A frame longer
  than the link's ``max_frame_bytes`` is refused as soon as its header is read.
* **Body** — one CBOR array ``[tag, fields]``: ``tag`` is the message type's text tag and
  ``fields`` a map from field name to value. Missing, unknown or ill-typed fields, an unknown tag
  or trailing bytes raise :class:`~icn_node.errors.CodecError` naming what is wrong.
* **Signed gossip** — :class:`Gossip` carries an Ed25519 signature by its origin over
  :meth:`Gossip.signing_bytes`, the canonical CBOR encoding (RFC 8949 §4.2.1) of a fixed array
  of its fields under a domain label.

Adding a message type (for example the placement messages)::

    @message("placement_offer")
    @dataclass(frozen=True, slots=True)
    class PlacementOffer(Message):
        task: bytes
        executor: str
        score: float
        resources: tuple[tuple[str, int], ...] = ()

        def validate(self) -> None:          # optional: checks beyond the field types
            check_did(self.executor)

The decorator registers the tag; construction checks every field against its annotation
(``str``, ``int``, ``float``, ``bool``, ``bytes``, ``X | None``, ``tuple[X, ...]`` and fixed
``tuple[X, Y]``, nested freely) and then calls ``validate()``; :func:`encode_message` /
:func:`decode_message` then handle it with no further code. A tag, once used on the wire, is
never reused for a different shape; a new field needs a new tag or a protocol version bump.
Application messages that ride inside gossip or direct messages are encoded the same way and
carried as the ``payload`` bytes, so they share this registry and its checks.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import math
import struct
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import cbor2

from .errors import CodecError, IcnError, IdentityError
from .identity import NodeIdentity, validate_did, verify_signature
from .scheduler.coordinates import Coordinate
from .scheduler.executors import ExecutorInfo
from .scheduler.policy import PlacementOffer, PlacementRequest
from .scheduler.tasks import TaskResult, TaskSpec

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME_BYTES = 1 << 20
HEADER = struct.Struct(">I")
NONCE_BYTES = 32
SIGNATURE_BYTES = 64
MAX_TOPIC_LEN = 128
MAX_LIST_LEN = 256
MAX_TEXT_LEN = 1024
MAX_DEPTH = 32
"""Deepest nesting of arrays and maps in a body (the messages defined so far need 5)."""
INT_RANGE = range(-(2**64), 2**64)
"""Integers CBOR holds without a tag: every int field must be one (bignum tags are refused)."""

# Domain labels: a signature made for one purpose can never be replayed as another.
LINK_AUTH_LABEL = b"icn-link-auth-v1"
GOSSIP_LABEL = "icn-gossip-v1"

M = TypeVar("M", bound="Message")


# --- field checking -----------------------------------------------------------------------


def check_did(did: str) -> str:
    if not isinstance(did, str) or not _valid_did(did):
        try:
            validate_did(did)
        except IdentityError as e:
            raise ValueError(str(e)) from None
    return did


@functools.lru_cache(maxsize=4096)
def _valid_did(did: str) -> bool:
    """Cached: a cooperative has few DIDs and every gossip message names one or two."""
    try:
        validate_did(did)
    except IdentityError:
        return False
    return True


def check_topic(topic: str) -> str:
    if not topic or len(topic) > MAX_TOPIC_LEN or not topic.isprintable():
        raise ValueError(f"a topic is 1-{MAX_TOPIC_LEN} printable characters, got {topic!r}")
    return topic


def _check(value: Any, hint: Any, path: str) -> Any:
    """``value`` converted to ``hint`` (lists become tuples) or ValueError naming ``path``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported annotation {hint!r}")
        return _check(value, inner[0], path)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            if len(value) > MAX_LIST_LEN:
                raise ValueError(f"{path}: at most {MAX_LIST_LEN} items, got {len(value)}")
            return tuple(_check(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{path}: expected {len(args)} items, got {len(value)}")
        return tuple(
            _check(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path}: expected true/false, got {type(value).__name__}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{path}: expected an integer, got {type(value).__name__}")
        if value not in INT_RANGE:
            raise ValueError(f"{path}: integer out of the range -2**64 .. 2**64-1")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: expected a number, got {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{path}: expected a finite number")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{path}: expected text, got {type(value).__name__}")
        return value
    if hint is bytes:
        if not isinstance(value, (bytes, bytearray)):
            raise ValueError(f"{path}: expected bytes, got {type(value).__name__}")
        return bytes(value)
    if hint in DOCUMENT_TYPES:
        # A domain value (a scheduler type): itself when a message is built, its ``to_dict()``
        # document when one is decoded, parsed and validated here, at the receive boundary.
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"{path}: expected a map with text keys, got {type(value).__name__}")
        try:
            return hint.from_dict(value)
        except (IcnError, ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{path}: {e}") from None
    raise TypeError(f"unsupported annotation {hint!r} for {path}")


DOCUMENT_TYPES: frozenset[type] = frozenset(
    {Coordinate, ExecutorInfo, PlacementOffer, PlacementRequest, TaskResult, TaskSpec}
)
"""Domain values a message may carry as a field: sent as their ``to_dict()`` document."""


# --- the registry -------------------------------------------------------------------------


class Message:
    """Base of every wire message: a frozen dataclass registered under a text tag."""

    TAG: ClassVar[str] = ""
    _FIELDS: ClassVar[tuple[tuple[str, Any], ...]] = ()
    _DOCUMENTS: ClassVar[frozenset[str]] = frozenset()
    _REQUIRED: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        for name, hint in self._FIELDS:
            value = getattr(self, name)
            checked = _check(value, hint, f"{self.TAG}.{name}")
            if checked is not value:
                object.__setattr__(self, name, checked)
        self.validate()

    def validate(self) -> None:
        """Checks beyond the field types; raise ValueError naming the field."""

    def to_fields(self) -> dict[str, Any]:
        docs = self._DOCUMENTS
        return {
            name: getattr(self, name).to_dict() if name in docs else getattr(self, name)
            for name, _ in self._FIELDS
        }


REGISTRY: dict[str, type[Message]] = {}


def message(tag: str) -> Callable[[type[M]], type[M]]:
    """Class decorator registering a frozen dataclass as the wire message ``tag``."""

    def register(cls: type[M]) -> type[M]:
        if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:
            raise TypeError(f"{cls.__name__} must be a frozen dataclass")
        if tag in REGISTRY:
            raise TypeError(f"wire tag {tag!r} already used by {REGISTRY[tag].__name__}")
        hints = typing.get_type_hints(cls)
        cls.TAG = tag
        cls._FIELDS = tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))
        cls._DOCUMENTS = frozenset(n for n, h in cls._FIELDS if h in DOCUMENT_TYPES)
        cls._REQUIRED = frozenset(
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        REGISTRY[tag] = cls
        return cls

    return register


def _construct(cls: type[M], fields: dict[str, Any]) -> M:
    try:
        return cls(**fields)
    except ValueError as e:
        raise CodecError(_clip(f"invalid {cls.TAG}: {e}")) from None


def _clip(text: str, limit: int = 300) -> str:
    """An error message of bounded length: it names what a peer sent, and ends up in logs."""
    if len(text) <= limit:
        return text
    tail = f"... ({len(text)} characters)"
    return text[: limit - len(tail)] + tail


# --- body codec ---------------------------------------------------------------------------


class _TagRefused(ValueError):
    pass


def _refuse_tag(tag: int) -> Callable[..., Any]:
    def refuse(*_: Any) -> Any:
        raise _TagRefused(f"CBOR tag {tag} (the protocol uses no tags)")

    return refuse


def _refuse_unknown_tag(tag: cbor2.CBORTag, *_: Any) -> Any:
    raise _TagRefused(f"CBOR tag {tag.tag} (the protocol uses no tags)")


# cbor2 decodes these tags itself (bignums, dates, shared references, regular expressions,
# MIME messages, ...), bypassing tag_hook; each is overridden to refuse. A test checks that
# every tag is refused, so a cbor2 upgrade that decodes a new one fails there.
_BUILTIN_TAGS = (
    *(0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100),
    *(256, 258, 260, 261, 1004, 43000, 55799),
)
_NO_TAGS = {tag: _refuse_tag(tag) for tag in _BUILTIN_TAGS}


def encode_message(msg: Message) -> bytes:
    """A message's body bytes (no frame header)."""
    return cbor2.dumps([msg.TAG, msg.to_fields()])


def decode_cbor(body: bytes) -> Any:
    """One plain CBOR item, the whole of ``body``; CodecError otherwise.

    Plain: arrays, maps with text or byte-string keys (no duplicates), text, bytes, integers
    within 64 bits, floats, booleans and null, nested at most MAX_DEPTH deep. Tags (bignums,
    dates, shared references, ...) are refused: the protocol uses none, and decoding some of
    them costs far more than their size.
    """
    fp = io.BytesIO(body)
    decoder = cbor2.CBORDecoder(
        fp,
        tag_hook=_refuse_unknown_tag,
        semantic_decoders=_NO_TAGS,
        max_depth=MAX_DEPTH,
        allow_duplicate_keys=False,
        strict_hashable_types=True,
    )
    try:
        obj = decoder.decode()
    except Exception as e:  # cbor2 raises several types for malformed input
        if isinstance(e.__cause__, _TagRefused):
            raise CodecError(f"body has a {e.__cause__}") from None
        raise CodecError(_clip(f"body is not valid CBOR ({type(e).__name__}: {e})")) from None
    if fp.tell() != len(body):
        raise CodecError(f"{len(body) - fp.tell()} bytes after the CBOR body")
    return obj


def decode_message(body: bytes) -> Message:
    """One body back into its message; CodecError names the problem."""
    obj = decode_cbor(body)
    if not isinstance(obj, list) or len(obj) != 2:
        raise CodecError("body must be a CBOR array [tag, fields]")
    tag, fields = obj
    if not isinstance(tag, str):
        raise CodecError(f"message tag must be text, got {type(tag).__name__}")
    cls = REGISTRY.get(tag)
    if cls is None:
        raise CodecError(_clip(f"unknown message type {tag!r}"))
    if not isinstance(fields, dict):
        raise CodecError(f"{tag}: fields must be a map")
    names = {name for name, _ in cls._FIELDS}
    unknown = set(fields) - names
    if unknown:
        raise CodecError(_clip(f"{tag}: unknown fields {sorted(map(str, unknown))}"))
    missing = cls._REQUIRED - set(fields)
    if missing:
        raise CodecError(f"{tag}: missing fields {sorted(missing)}")
    return _construct(cls, fields)


def decode_as(cls: type[M], body: bytes) -> M:
    """Decode ``body`` and insist on one message type (for payloads of a known kind)."""
    msg = decode_message(body)
    if not isinstance(msg, cls):
        raise CodecError(f"expected {cls.TAG}, got {msg.TAG}")
    return msg


# --- framing ------------------------------------------------------------------------------


def frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


def encode_frame(msg: Message) -> bytes:
    """A whole frame: length header and body."""
    return frame(encode_message(msg))


class FrameDecoder:
    """Sans-IO frame splitter: ``feed(bytes)``, then iterate complete frame bodies.

    Raises CodecError as soon as a header announces more than ``max_frame_bytes`` (the body is
    never buffered).
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_body(self) -> bytes | None:
        if len(self._buf) < HEADER.size:
            return None
        (length,) = HEADER.unpack_from(self._buf)
        if length > self.max_frame_bytes:
            raise CodecError(f"frame of {length} bytes exceeds the limit of {self.max_frame_bytes}")
        end = HEADER.size + length
        if len(self._buf) < end:
            return None
        body = bytes(self._buf[HEADER.size : end])
        del self._buf[:end]
        return body

    def __iter__(self) -> Iterator[bytes]:
        while (body := self.next_body()) is not None:
            yield body


# --- link messages ------------------------------------------------------------------------


@message("challenge")
@dataclass(frozen=True, slots=True)
class Challenge(Message):
    """Listener → dialer, first frame inside TLS: a fresh nonce to sign."""

    nonce: bytes

    def validate(self) -> None:
        if len(self.nonce) != NONCE_BYTES:
            raise ValueError(f"nonce must have {NONCE_BYTES} bytes, got {len(self.nonce)}")


@message("auth")
@dataclass(frozen=True, slots=True)
class Auth(Message):
    """Dialer → listener: the dialer's DID and its signature over :func:`link_auth_bytes`."""

    did: str
    signature: bytes

    def validate(self) -> None:
        check_did(self.did)
        if len(self.signature) != SIGNATURE_BYTES:
            raise ValueError(f"signature must have {SIGNATURE_BYTES} bytes")


def link_auth_bytes(nonce: bytes, listener_cert_der: bytes) -> bytes:
    """What a dialer signs: label, the listener's nonce, SHA-256 of the listener's certificate."""
    return LINK_AUTH_LABEL + nonce + hashlib.sha256(listener_cert_der).digest()


@message("hello")
@dataclass(frozen=True, slots=True)
class Hello(Message):
    """Both ways, once, after authentication."""

    version: int
    listen: tuple[str, ...] = ()
    region: str = ""
    features: tuple[str, ...] = ()

    def validate(self) -> None:
        if len(self.region) > MAX_TEXT_LEN:
            raise ValueError("region too long")


@message("close")
@dataclass(frozen=True, slots=True)
class Close(Message):
    """The sender is closing the link; ``reason`` is a short code, ``detail`` free text."""

    reason: str
    detail: str = ""

    def validate(self) -> None:
        if len(self.reason) > 64 or len(self.detail) > MAX_TEXT_LEN:
            raise ValueError("reason or detail too long")


@message("heartbeat")
@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    """Sent on an otherwise idle link so the peer knows we are alive."""


@message("ping")
@dataclass(frozen=True, slots=True)
class Ping(Message):
    """Keepalive that measures round-trip time: answer at once with ``pong`` (same nonce)."""

    nonce: int

    def validate(self) -> None:
        if not 0 <= self.nonce < 2**63:
            raise ValueError("ping.nonce: out of range")


@message("pong")
@dataclass(frozen=True, slots=True)
class Pong(Message):
    """The answer to ``ping``."""

    nonce: int

    def validate(self) -> None:
        if not 0 <= self.nonce < 2**63:
            raise ValueError("pong.nonce: out of range")


@message("peers")
@dataclass(frozen=True, slots=True)
class Peers(Message):
    """Peer exchange: (DID, address) of peers the sender is connected to."""

    peers: tuple[tuple[str, str], ...]

    def validate(self) -> None:
        for did, addr in self.peers:
            check_did(did)
            if not addr or len(addr) > 256:
                raise ValueError(f"bad address {addr!r}")


@message("subscribe")
@dataclass(frozen=True, slots=True)
class Subscribe(Message):
    """The sender's topic subscriptions changed (``on``: subscribed or left)."""

    topics: tuple[str, ...]
    on: bool = True

    def validate(self) -> None:
        for t in self.topics:
            check_topic(t)


@message("graft")
@dataclass(frozen=True, slots=True)
class Graft(Message):
    """Add the link to the sender's mesh for ``topic``."""

    topic: str

    def validate(self) -> None:
        check_topic(self.topic)


@message("prune")
@dataclass(frozen=True, slots=True)
class Prune(Message):
    """Remove the link from the sender's mesh for ``topic``."""

    topic: str

    def validate(self) -> None:
        check_topic(self.topic)


@message("direct")
@dataclass(frozen=True, slots=True)
class Direct(Message):
    """A message for the neighbour itself; authenticated by the link, so unsigned."""

    topic: str
    payload: bytes

    def validate(self) -> None:
        check_topic(self.topic)


@message("gossip")
@dataclass(frozen=True, slots=True)
class Gossip(Message):
    """A message published by ``origin``, relayed by others, signed by the origin.

    ``to`` empty: for every subscriber of ``topic``. ``to`` a DID: a direct message routed
    through the mesh, delivered only there.
    """

    topic: str
    origin: str
    seq: int
    ts_ms: int
    payload: bytes
    signature: bytes
    to: str = ""

    def validate(self) -> None:
        check_topic(self.topic)
        check_did(self.origin)
        if self.to:
            check_did(self.to)
        if self.seq < 0 or self.ts_ms < 0:
            raise ValueError("seq and ts_ms must not be negative")
        if len(self.signature) != SIGNATURE_BYTES:
            raise ValueError(f"signature must have {SIGNATURE_BYTES} bytes")

    def signing_bytes(self) -> bytes:
        return gossip_signing_bytes(
            self.topic, self.origin, self.seq, self.ts_ms, self.payload, self.to
        )

    @property
    def msg_id(self) -> bytes:
        """Identity of the signed content (signature excluded, so a forgery cannot evict it)."""
        return hashlib.sha256(self.signing_bytes()).digest()[:20]

    def verify(self) -> bool:
        return verify_signature(self.origin, self.signature, self.signing_bytes())

    @classmethod
    def sign(
        cls,
        identity: NodeIdentity,
        topic: str,
        seq: int,
        ts_ms: int,
        payload: bytes,
        to: str = "",
    ) -> Gossip:
        data = gossip_signing_bytes(topic, identity.did, seq, ts_ms, payload, to)
        return cls(topic, identity.did, seq, ts_ms, payload, identity.sign(data), to)


def gossip_signing_bytes(
    topic: str, origin: str, seq: int, ts_ms: int, payload: bytes, to: str
) -> bytes:
    return cbor2.dumps([GOSSIP_LABEL, topic, origin, seq, ts_ms, to, payload], canonical=True)


# --- compute: placement, tasks, results --------------------------------------------------
#
# These ride as the payload of Gossip (topic COMPUTE_TOPIC) or of direct messages (topic
# COMPUTE_DIRECT_TOPIC); the sender is the payload's authenticated origin, never a field.
# Domain values (requests, offers, specs, results, announcements) travel as their
# ``to_dict()`` documents and are parsed with ``from_dict`` on decode, so a malformed one is
# refused at the receive boundary and the cores only ever see validated values.

COMPUTE_TOPIC = "icn/compute"
COMPUTE_DIRECT_TOPIC = "icn/compute/direct"
BLOB_TOPIC = "icn/blob"
MAX_BLOB_CHUNK = 256 * 1024


def _hash32(name: str, value: bytes) -> None:
    if len(value) != 32:
        raise ValueError(f"{name}: expected 32 bytes, got {len(value)}")


def _attempt(value: int) -> None:
    if not 0 <= value <= 1000:
        raise ValueError(f"attempt: out of range 0-1000, got {value}")


class _TaskMessage(Message):
    """Shared checks for messages about one task attempt."""

    def validate(self) -> None:
        _hash32(f"{self.TAG}.task", self.task)  # type: ignore[attr-defined]
        _attempt(self.attempt)  # type: ignore[attr-defined]


@message("placement_request")
@dataclass(frozen=True, slots=True)
class PlacementRequestMsg(Message):
    """Gossip: place a task with a resource profile. ``window_s``: how long the submitter
    collects offers (executors hold tentative reservations that long)."""

    request: PlacementRequest
    attempt: int
    window_s: float
    excluded: tuple[str, ...] = ()
    released: tuple[tuple[bytes, int], ...] = ()
    """(task hash, round) of this submitter's placements that went elsewhere and for which the
    executor may still hold a tentative reservation: the outcome riding on the next request
    instead of a ``task_claimed`` each."""

    def validate(self) -> None:
        _attempt(self.attempt)
        if not 0 < self.window_s <= 600:
            raise ValueError(f"placement_request.window_s: out of range, got {self.window_s}")


@message("task_submitted")
@dataclass(frozen=True, slots=True)
class TaskSubmittedMsg(Message):
    """Gossip: a task without a resource profile (legacy first-claim protocol)."""

    spec: TaskSpec
    attempt: int
    window_s: float
    excluded: tuple[str, ...] = ()

    def validate(self) -> None:
        _attempt(self.attempt)


@message("task_claimed")
@dataclass(frozen=True, slots=True)
class TaskClaimedMsg(_TaskMessage):
    """Gossip: the submitter chose ``winner``; the others release their reservations."""

    task: bytes
    winner: str
    attempt: int


@message("task_cancel")
@dataclass(frozen=True, slots=True)
class TaskCancelMsg(_TaskMessage):
    """Gossip (drop reservations) or direct to the executor (stop the run)."""

    task: bytes
    attempt: int


@message("executor_announce")
@dataclass(frozen=True, slots=True)
class ExecutorAnnounceMsg(Message):
    """Gossip: an executor's capacity, reservations, queue, load and region."""

    info: ExecutorInfo


@message("placement_offer")
@dataclass(frozen=True, slots=True)
class PlacementOfferMsg(Message):
    """Direct to the submitter: an offer (the executor's own score and its components)."""

    offer: PlacementOffer
    attempt: int

    def validate(self) -> None:
        _attempt(self.attempt)


@message("decline")
@dataclass(frozen=True, slots=True)
class DeclineMsg(_TaskMessage):
    """Direct to the submitter: this executor will not offer, and why."""

    task: bytes
    attempt: int
    reason: str
    detail: str = ""


@message("claim")
@dataclass(frozen=True, slots=True)
class ClaimMsg(_TaskMessage):
    """Direct to the chosen executor: run this task (the full spec travels with the claim)."""

    task: bytes
    attempt: int
    spec: TaskSpec


@message("claim_reply")
@dataclass(frozen=True, slots=True)
class ClaimReplyMsg(_TaskMessage):
    task: bytes
    attempt: int
    accepted: bool
    reason: str = ""


@message("claim_request")
@dataclass(frozen=True, slots=True)
class ClaimRequestMsg(_TaskMessage):
    """Direct to the submitter (legacy): may I run it?"""

    task: bytes
    attempt: int


@message("grant")
@dataclass(frozen=True, slots=True)
class GrantMsg(_TaskMessage):
    """Direct to the first legacy claimant: yes, here is the spec."""

    task: bytes
    attempt: int
    spec: TaskSpec


@message("refuse")
@dataclass(frozen=True, slots=True)
class RefuseMsg(_TaskMessage):
    task: bytes
    attempt: int


@message("task_heartbeat")
@dataclass(frozen=True, slots=True)
class TaskHeartbeatMsg(_TaskMessage):
    """Direct to the submitter while the task runs: renews the lease."""

    task: bytes
    attempt: int


@message("task_result")
@dataclass(frozen=True, slots=True)
class TaskResultMsg(_TaskMessage):
    """Direct to the submitter: the final result; re-sent until acknowledged."""

    task: bytes
    attempt: int
    result: TaskResult


@message("result_ack")
@dataclass(frozen=True, slots=True)
class ResultAckMsg(_TaskMessage):
    task: bytes
    attempt: int


@message("abandon")
@dataclass(frozen=True, slots=True)
class AbandonMsg(_TaskMessage):
    """Direct to the submitter: this executor lost the task (e.g. it restarted); re-place it."""

    task: bytes
    attempt: int
    reason: str


# --- blobs ---------------------------------------------------------------------------------


@message("blob_request")
@dataclass(frozen=True, slots=True)
class BlobRequestMsg(Message):
    """Direct: send me ``length`` bytes of ``blob`` from ``offset``."""

    request_id: int
    blob: bytes
    offset: int
    length: int

    def validate(self) -> None:
        _hash32("blob_request.blob", self.blob)
        if self.offset < 0 or not 0 < self.length <= MAX_BLOB_CHUNK:
            raise ValueError(f"blob_request: bad range offset={self.offset} length={self.length}")


@message("blob_chunk")
@dataclass(frozen=True, slots=True)
class BlobChunkMsg(Message):
    """Direct: a piece of a blob (``size`` is the whole blob's), or ``error`` when the sender
    does not have it."""

    request_id: int
    blob: bytes
    offset: int
    size: int
    data: bytes
    error: str = ""

    def validate(self) -> None:
        _hash32("blob_chunk.blob", self.blob)
        if len(self.data) > MAX_BLOB_CHUNK or self.offset < 0 or self.size < 0:
            raise ValueError("blob_chunk: bad range or oversized chunk")


@message("blob_announce")
@dataclass(frozen=True, slots=True)
class BlobAnnounceMsg(Message):
    """Gossip (older builds): blobs the origin holds, as (hash, size) pairs (batched). Still
    accepted, as a ``blob_have`` from a holder that refreshes every ``LEGACY_REFRESH_S``."""

    blobs: tuple[tuple[bytes, int], ...]

    def validate(self) -> None:
        _holdings(self.TAG, self.blobs)


def _holdings(tag: str, blobs: tuple[tuple[bytes, int], ...]) -> None:
    for i, (h, size) in enumerate(blobs):
        _hash32(f"{tag}.blobs[{i}]", h)
        if size < 0:
            raise ValueError(f"{tag}.blobs[{i}]: negative size")


def _hashes(tag: str, blobs: tuple[bytes, ...], most: int) -> None:
    if not 1 <= len(blobs) <= most:
        raise ValueError(f"{tag}.blobs: 1-{most} blob hashes, got {len(blobs)}")
    for i, h in enumerate(blobs):
        _hash32(f"{tag}.blobs[{i}]", h)


LEGACY_REFRESH_S = 300.0
"""How often a builder of ``blob_announce`` (no ``refresh_s`` on the wire) re-announced."""
MAX_REFRESH_S = 86_400.0
MAX_QUERY_BLOBS = 64
MAX_HASHES = MAX_BLOB_CHUNK // 32
"""Chunk hashes in one ``blob_hashes`` reply: 8,192 (256 KiB of hashes, 2 GiB of blob)."""
MAX_CAUSE_LEN = 32


@message("blob_fetch")
@dataclass(frozen=True, slots=True)
class BlobFetchMsg(Message):
    """Direct: send me ``length`` bytes of ``blob`` from ``offset`` (answered with
    ``blob_chunk``). ``cause`` says why the requester wants it (``task_input``, ``module``,
    ``user_get``, ``replica``, …), for the holder's count of bytes served."""

    request_id: int
    blob: bytes
    offset: int
    length: int
    cause: str = "other"

    def validate(self) -> None:
        _hash32("blob_fetch.blob", self.blob)
        if self.offset < 0 or not 0 < self.length <= MAX_BLOB_CHUNK:
            raise ValueError(f"blob_fetch: bad range offset={self.offset} length={self.length}")
        if not 0 < len(self.cause) <= MAX_CAUSE_LEN or not self.cause.isprintable():
            raise ValueError(f"blob_fetch.cause: 1-{MAX_CAUSE_LEN} printable characters")


@message("blob_hashes_request")
@dataclass(frozen=True, slots=True)
class BlobHashesRequestMsg(Message):
    """Direct: send me the SHA-256 of each ``MAX_BLOB_CHUNK`` piece of ``blob``, from piece
    ``first`` on (answered with ``blob_hashes``)."""

    request_id: int
    blob: bytes
    first: int = 0

    def validate(self) -> None:
        _hash32("blob_hashes_request.blob", self.blob)
        if self.first < 0:
            raise ValueError("blob_hashes_request.first: negative")


@message("blob_hashes")
@dataclass(frozen=True, slots=True)
class BlobHashesMsg(Message):
    """Direct: the blob's size and the hashes of its pieces ``first`` … (32 bytes each,
    concatenated, at most ``MAX_HASHES``), or ``error`` ("not found")."""

    request_id: int
    blob: bytes
    size: int
    first: int
    hashes: bytes
    error: str = ""

    def validate(self) -> None:
        _hash32("blob_hashes.blob", self.blob)
        if self.size < 0 or self.first < 0:
            raise ValueError("blob_hashes: negative size or index")
        if len(self.hashes) % 32 or len(self.hashes) > MAX_HASHES * 32:
            raise ValueError(f"blob_hashes.hashes: a multiple of 32 bytes, at most {MAX_HASHES}")
        if len(self.error) > MAX_TEXT_LEN:
            raise ValueError("blob_hashes.error: too long")

    def hash_list(self) -> list[bytes]:
        return [self.hashes[i : i + 32] for i in range(0, len(self.hashes), 32)]


@message("blob_have")
@dataclass(frozen=True, slots=True)
class BlobHaveMsg(Message):
    """Gossip (announcement) or direct (the answer to ``blob_query``/``blob_sync``): blobs the
    origin holds, with sizes. ``refresh_s``: how often the origin re-announces everything, so a
    receiver expires the locations after three missed refreshes."""

    blobs: tuple[tuple[bytes, int], ...]
    refresh_s: float

    def validate(self) -> None:
        _holdings(self.TAG, self.blobs)
        if not 1.0 <= self.refresh_s <= MAX_REFRESH_S:
            raise ValueError(f"blob_have.refresh_s: 1-{MAX_REFRESH_S:g}, got {self.refresh_s}")


@message("blob_withdraw")
@dataclass(frozen=True, slots=True)
class BlobWithdrawMsg(Message):
    """Gossip: the origin no longer holds these blobs."""

    blobs: tuple[bytes, ...]

    def validate(self) -> None:
        _hashes(self.TAG, self.blobs, MAX_LIST_LEN)


@message("blob_query")
@dataclass(frozen=True, slots=True)
class BlobQueryMsg(Message):
    """Gossip: who holds these? Each holder answers for itself, directly, with ``blob_have``."""

    blobs: tuple[bytes, ...]

    def validate(self) -> None:
        _hashes(self.TAG, self.blobs, MAX_QUERY_BLOBS)


@message("blob_sync")
@dataclass(frozen=True, slots=True)
class BlobSyncMsg(Message):
    """Gossip: the origin has just come online; each node answers, directly and rate-limited,
    with ``blob_have`` messages listing what it holds."""


# --- network map: coordinates and bandwidth probes ------------------------------------------
#
# Direct messages on NETMAP_TOPIC between linked peers (docs/PROTOCOL.md §9). New message types
# rather than new fields on ping/pong: a peer without the netmap never subscribes to the topic,
# so these never reach it, and its ping/pong stay as they were.

NETMAP_TOPIC = "icn/netmap"
MAX_PROBE_BYTES = 100 * 1024
MAX_PROBE_ID = 2**63


def _probe_id(tag: str, value: int) -> None:
    if not 0 <= value < MAX_PROBE_ID:
        raise ValueError(f"{tag}.probe: out of range")


@message("netmap_coord")
@dataclass(frozen=True, slots=True)
class NetmapCoordMsg(Message):
    """Direct to a linked peer: the sender's network coordinate (sent after an RTT sample,
    at most every few seconds), so the peer's next samples can update against it, and
    ``probe_room``: how many probe bytes the sender could serve now within its budget (a peer
    probes it only when a whole round fits)."""

    coordinate: Coordinate
    probe_room: int = 0

    def validate(self) -> None:
        if self.probe_room < 0:
            raise ValueError("netmap_coord.probe_room: negative")


@message("netmap_probe")
@dataclass(frozen=True, slots=True)
class NetmapProbeMsg(Message):
    """Direct: a bandwidth probe; answer at once with ``size`` bytes of payload."""

    probe: int
    size: int

    def validate(self) -> None:
        _probe_id(self.TAG, self.probe)
        if not 0 <= self.size <= MAX_PROBE_BYTES:
            raise ValueError(f"netmap_probe.size: 0-{MAX_PROBE_BYTES}, got {self.size}")


@message("netmap_probe_reply")
@dataclass(frozen=True, slots=True)
class NetmapProbeReplyMsg(Message):
    """Direct: the answer to ``netmap_probe`` (same ``probe``): the payload asked for and the
    sender's coordinate, or ``error`` (``budget``: the sender's probe budget is spent)."""

    probe: int
    coordinate: Coordinate
    payload: bytes = b""
    error: str = ""

    def validate(self) -> None:
        _probe_id(self.TAG, self.probe)
        if len(self.payload) > MAX_PROBE_BYTES:
            raise ValueError(f"netmap_probe_reply.payload: more than {MAX_PROBE_BYTES} bytes")
        if len(self.error) > 64:
            raise ValueError("netmap_probe_reply.error: longer than 64 characters")


__all__ = [
    "BLOB_TOPIC",
    "MAX_PROBE_BYTES",
    "NETMAP_TOPIC",
    "NetmapCoordMsg",
    "NetmapProbeMsg",
    "NetmapProbeReplyMsg",
    "COMPUTE_DIRECT_TOPIC",
    "COMPUTE_TOPIC",
    "AbandonMsg",
    "Auth",
    "BlobAnnounceMsg",
    "BlobChunkMsg",
    "BlobFetchMsg",
    "BlobHashesMsg",
    "BlobHashesRequestMsg",
    "BlobHaveMsg",
    "BlobQueryMsg",
    "BlobRequestMsg",
    "BlobSyncMsg",
    "BlobWithdrawMsg",
    "ClaimMsg",
    "ClaimReplyMsg",
    "ClaimRequestMsg",
    "DeclineMsg",
    "ExecutorAnnounceMsg",
    "GrantMsg",
    "PlacementOfferMsg",
    "PlacementRequestMsg",
    "RefuseMsg",
    "ResultAckMsg",
    "TaskCancelMsg",
    "TaskClaimedMsg",
    "TaskHeartbeatMsg",
    "TaskResultMsg",
    "TaskSubmittedMsg",
    "Challenge",
    "Close",
    "Direct",
    "FrameDecoder",
    "Gossip",
    "Graft",
    "Heartbeat",
    "Hello",
    "Message",
    "PROTOCOL_VERSION",
    "Peers",
    "Ping",
    "Pong",
    "Prune",
    "REGISTRY",
    "Subscribe",
    "check_did",
    "check_topic",
    "decode_as",
    "decode_cbor",
    "decode_message",
    "encode_frame",
    "encode_message",
    "frame",
    "link_auth_bytes",
    "message",
]
