"""The mesh's two state machines, each a table. Every transition lives here.

A *link* is one authenticated TLS connection; a *candidate* is an address the node may dial.
An event with no entry for the current state is a :class:`LocalProtocolError` naming the
machine, event and state (the core misused itself); the core turns a peer's frame that arrives in
the wrong state into a closed link before it gets here.
"""

from __future__ import annotations

import enum

from ..errors import LocalProtocolError


class LinkState(enum.Enum):
    HELLO_WAIT = "hello-wait"  # authenticated; our Hello sent, the peer's not yet received
    ACTIVE = "active"  # Hello exchanged: gossip and control frames flow
    CLOSED = "closed"  # closing or closed; frames from it are ignored


class LinkEvent(enum.Enum):
    HELLO = "hello"  # the peer's Hello with a version we speak
    FRAME = "frame"  # any other frame
    CLOSE = "close"  # we close it, the peer closed it, or the stream broke


LINK_TRANSITIONS: dict[tuple[LinkState, LinkEvent], LinkState] = {
    (LinkState.HELLO_WAIT, LinkEvent.HELLO): LinkState.ACTIVE,
    (LinkState.HELLO_WAIT, LinkEvent.CLOSE): LinkState.CLOSED,
    (LinkState.ACTIVE, LinkEvent.FRAME): LinkState.ACTIVE,
    (LinkState.ACTIVE, LinkEvent.CLOSE): LinkState.CLOSED,
    (LinkState.CLOSED, LinkEvent.CLOSE): LinkState.CLOSED,
}


class DialState(enum.Enum):
    WAITING = "waiting"  # dial when ``next_at`` has passed (first dial or backoff)
    DIALING = "dialing"  # a dial is under way
    CONNECTED = "connected"  # an active link to the candidate's DID exists


class DialEvent(enum.Enum):
    DIAL = "dial"
    DIAL_FAILED = "dial-failed"
    LINK_UP = "link-up"  # a link to this DID became active (either direction)
    LINK_DOWN = "link-down"  # the last active link to this DID closed


DIAL_TRANSITIONS: dict[tuple[DialState, DialEvent], DialState] = {
    (DialState.WAITING, DialEvent.DIAL): DialState.DIALING,
    (DialState.WAITING, DialEvent.LINK_UP): DialState.CONNECTED,
    (DialState.WAITING, DialEvent.LINK_DOWN): DialState.WAITING,
    (DialState.DIALING, DialEvent.DIAL_FAILED): DialState.WAITING,
    (DialState.DIALING, DialEvent.LINK_UP): DialState.CONNECTED,
    (DialState.DIALING, DialEvent.LINK_DOWN): DialState.WAITING,
    (DialState.CONNECTED, DialEvent.LINK_UP): DialState.CONNECTED,
    (DialState.CONNECTED, DialEvent.LINK_DOWN): DialState.WAITING,
    (DialState.CONNECTED, DialEvent.DIAL_FAILED): DialState.CONNECTED,
}


def next_link_state(state: LinkState, event: LinkEvent) -> LinkState:
    try:
        return LINK_TRANSITIONS[(state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"link: event {event.value} has no transition in state {state.value}"
        ) from None


def next_dial_state(state: DialState, event: DialEvent) -> DialState:
    try:
        return DIAL_TRANSITIONS[(state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"dial: event {event.value} has no transition in state {state.value}"
        ) from None
