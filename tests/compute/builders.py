"""Builders and effect helpers for the compute core tests.

The builders (``SUB``, ``PROFILE``, ``h``, ``did``, ``spec``, ``capacity``, ``result``) make
the values every compute test needs; the network harness (``harness.py``) uses them too.

The effect helpers read the :mod:`icn_node.compute.effects` a core returns:

- :func:`kinds` renders each effect as a short string: ``Send:claim`` /
  ``Publish:placement_request`` (the wire message's tag), ``Count:wins`` /
  ``Observe:score`` (the metric), else the class name (``Persist``, ``StateChanged``, ...).
- :func:`of` / :func:`one`: effects of a class.
- :func:`sent` / :func:`one_sent`: the ``Send`` and ``Publish`` effects carrying a message class.
- :func:`fanouts` / :func:`one_fanout`: one logical message sent to several peers (the same
  message in consecutive ``Send`` effects) or gossiped (one ``Publish``), as ``(msg, to)`` with
  ``to`` the set of recipients, or None for gossip.
- :func:`counted` / :func:`observed`: the ``Count`` / ``Observe`` effects of a metric.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

from icn_node.compute.effects import Count, Effect, Observe, Publish, Send
from icn_node.scheduler import NodeCapacity, ResourceProfile
from icn_node.scheduler.tasks import TaskResult, TaskSpec, TaskState
from icn_node.wire import Message

# -- builders ---------------------------------------------------------

SUB = "did:key:z6MkSubmitter"
PROFILE = ResourceProfile.compute_heavy(2.0, 4096)


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def did(name: str) -> str:
    return f"did:key:z6Mk{name}"


def spec(
    name: str = "task",
    *,
    profile: ResourceProfile | None = PROFILE,
    submitter: str = SUB,
    **kw: Any,
) -> TaskSpec:
    """A task spec named ``name`` (the name picks the nonce, so names give distinct hashes)."""
    return TaskSpec(
        code_blob=h("code"),
        submitter=submitter,
        fuel=kw.pop("fuel", 20_000_000_000),  # 200 s at the slowest rate a deadline allows,
        nonce=h(name)[:16],
        profile=profile,
        **kw,
    )


def capacity(cores: float = 8, mem: int = 16384) -> NodeCapacity:
    return NodeCapacity.from_totals(cores, mem, 100_000, 1000.0)


def result(
    executor: str,
    attempt: int = 1,
    state: TaskState = TaskState.COMPLETED,
    *,
    fuel: int = 42,
    t0: float = 0.0,
    t1: float = 1.0,
) -> TaskResult:
    return TaskResult(
        state=state,
        executor=executor,
        fuel_used=fuel,
        exit_code=0 if state is TaskState.COMPLETED else None,
        started_at=t0,
        finished_at=t1,
        attempt=attempt,
        stdout=b"ok\n",
    )


# -- effects -----------------------------------------------------------------------------------


def kind(effect: Effect) -> str:
    """``Send:<tag>`` / ``Publish:<tag>``, ``Count:<metric>`` / ``Observe:<metric>``, else the
    class name."""
    name = type(effect).__name__
    if isinstance(effect, Send | Publish):
        return f"{name}:{effect.msg.TAG}"
    if isinstance(effect, Count | Observe):
        return f"{name}:{effect.metric}"
    return name


def kinds(effects: list[Effect]) -> list[str]:
    return [kind(e) for e in effects]


def of(effects: list[Effect], cls: type | Any) -> list[Any]:
    """The effects that are instances of ``cls`` (a class or a union)."""
    return [e for e in effects if isinstance(e, cls)]


def one(effects: list[Effect], cls: type) -> Any:
    found = of(effects, cls)
    assert len(found) == 1, f"expected one {cls.__name__} in {kinds(effects)}"
    return found[0]


def sent(effects: list[Effect], msg_cls: type[Message] = Message) -> list[Send | Publish]:
    """The ``Send`` and ``Publish`` effects whose message is a ``msg_cls``, in order."""
    return [e for e in effects if isinstance(e, Send | Publish) and isinstance(e.msg, msg_cls)]


def one_sent(effects: list[Effect], msg_cls: type[Message]) -> Send | Publish:
    """The only ``Send`` or ``Publish`` carrying a ``msg_cls``."""
    found = sent(effects, msg_cls)
    assert len(found) == 1, f"expected one {msg_cls.TAG} sent or published in {kinds(effects)}"
    return found[0]


class Fanout(NamedTuple):
    """One message and where it went: ``to`` the set of direct recipients, None when gossiped."""

    msg: Any
    to: frozenset[str] | None


def fanouts(effects: list[Effect], msg_cls: type[Message]) -> list[Fanout]:
    """The ``msg_cls`` messages, each once: consecutive ``Send`` effects of the same message are
    one fan-out; a ``Publish`` is one on its own."""
    out: list[Fanout] = []
    last_send: Message | None = None
    for e in sent(effects, msg_cls):
        if isinstance(e, Publish):
            out.append(Fanout(e.msg, None))
            last_send = None
        elif last_send is not None and e.msg == last_send:
            assert out[-1].to is not None
            assert e.to not in out[-1].to, f"{e.msg.TAG} sent twice to {e.to}"
            out[-1] = Fanout(e.msg, out[-1].to | {e.to})
        else:
            out.append(Fanout(e.msg, frozenset({e.to})))
            last_send = e.msg
    return out


def one_fanout(effects: list[Effect], msg_cls: type[Message]) -> Fanout:
    """The only ``msg_cls`` message, sent to a set of peers or gossiped."""
    found = fanouts(effects, msg_cls)
    assert len(found) == 1, f"expected one {msg_cls.TAG} fan-out in {kinds(effects)}"
    return found[0]


def counted(effects: list[Effect], metric: str) -> list[Count]:
    """The ``Count`` effects of ``metric``, in order."""
    return [e for e in effects if isinstance(e, Count) and e.metric == metric]


def observed(effects: list[Effect], metric: str) -> list[Observe]:
    """The ``Observe`` effects of ``metric``, in order."""
    return [e for e in effects if isinstance(e, Observe) and e.metric == metric]
