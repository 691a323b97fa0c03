"""The fuzz targets: what each feeds icnd, and what counts as a clean rejection.

A check returns True when icnd accepted the input, False when it refused it with its own error
(CodecError, ConfigError) — a clean rejection — and raises anything else: a crash. Checks also
assert what must hold besides not crashing: frames come out as a reference splitter cuts them
and never buffer more than one frame; a decoded message encodes and decodes to the same bytes;
a config error names the file or the variable.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from icn_node import wire
from icn_node.config import load_config
from icn_node.errors import CodecError, ConfigError

from .generators import Body, Stream, bodies, environment, seeded, streams, toml_text

EXAMPLES = int(os.environ.get("ICN_FUZZ_EXAMPLES", "300"))
"""Cases per target in the short pass (``make test``)."""
DEADLINE_MS = int(os.environ.get("ICN_FUZZ_DEADLINE_MS", "2000"))
"""Longest a single case may take; a slower one is a failure (a hang, in the making)."""


def fuzz_settings(examples: int = EXAMPLES, deadline_ms: int = DEADLINE_MS) -> settings:
    return settings(
        max_examples=examples,
        deadline=timedelta(milliseconds=deadline_ms),
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


# --- frames ------------------------------------------------------------------------------------


def split_frames(data: bytes, limit: int) -> tuple[list[bytes], bool, int]:
    """The reference: the bodies in ``data``, whether an oversized header ends it, and how many
    bytes the bodies used."""
    bodies, pos = [], 0
    while len(data) - pos >= wire.HEADER.size:
        (length,) = wire.HEADER.unpack_from(data, pos)
        if length > limit:
            return bodies, True, pos
        end = pos + wire.HEADER.size + length
        if end > len(data):
            break
        bodies.append(data[pos + wire.HEADER.size : end])
        pos = end
    return bodies, False, pos


def check_stream(stream: Stream) -> bool:
    """Fed in any pieces, FrameDecoder yields what the reference does, raises CodecError exactly
    where it does, and never holds more than one incomplete frame; every body then decodes to a
    message or a CodecError."""
    limit = stream.max_frame_bytes
    expected, too_large, used = split_frames(stream.data, limit)
    decoder = wire.FrameDecoder(limit)
    got: list[bytes] = []
    try:
        for piece in stream.pieces():
            decoder.feed(piece)
            got.extend(decoder)
            assert decoder.buffered < wire.HEADER.size + limit, decoder.buffered
    except CodecError:
        assert too_large and got == expected, "frame error where the reference has none"
        return False
    assert not too_large, "an oversized header was not refused"
    assert got == expected, "bodies differ from the reference"
    assert decoder.buffered == len(stream.data) - used
    for body in got:
        check_body(Body("?", body))
    return True


# --- messages ----------------------------------------------------------------------------------


def check_body(body: Body) -> bool:
    """decode_message gives a message or a CodecError; a message encodes to bytes that decode
    to an equal message and encode to the same bytes."""
    try:
        msg = wire.decode_message(body.data)
    except CodecError:
        return False
    data = wire.encode_message(msg)
    try:
        back = wire.decode_message(data)
    except CodecError as e:
        raise AssertionError(f"{msg.TAG}: a decoded message does not decode again: {e}") from e
    assert type(back) is type(msg) and back == msg, (msg, back)
    assert wire.encode_message(back) == data, "encoding is not stable"
    return True


# --- config ------------------------------------------------------------------------------------

_DIR: list[Path] = []


def _config_path() -> Path:
    """A file to write each case to: in memory (/dev/shm) where there is one, as a write and
    open there costs a tenth of one on disk."""
    if not _DIR:
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        _DIR.append(Path(tempfile.mkdtemp(prefix="icn-fuzz-", dir=shm)))
        atexit.register(shutil.rmtree, _DIR[0], True)
    return _DIR[0] / "icnd.toml"


@dataclasses.dataclass(frozen=True)
class ConfigCase:
    data: bytes
    env: dict[str, str]

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 400 else self.data[:400] + b"..."
        env = {k: v if len(v) <= 80 else f"{v[:60]}... ({len(v)})" for k, v in self.env.items()}
        return f"ConfigCase(env={env!r}, {len(self.data)} bytes: {shown!r})"


@st.composite
def config_cases(draw: st.DrawFn) -> ConfigCase:
    """Generated TOML-ish text, or any bytes at all, with ``ICN_*`` variables."""
    r = seeded(draw)
    data = draw(st.binary(max_size=300)) if r.random() < 0.1 else toml_text(r)
    return ConfigCase(data, environment(r))


def check_config(case: ConfigCase) -> bool:
    """load_config gives a Config or a ConfigError that starts with the file or the variable
    and names the key it is about."""
    path = _config_path()
    path.write_bytes(case.data)
    try:
        load_config(path, env=case.env)
    except ConfigError as e:
        msg = str(e)
        assert msg.startswith((f"{path}: ", "environment ICN_")), msg
        assert e.key is None or f": {e.key}: " in msg, msg
        assert len(msg) < 1000, f"{len(msg)} characters"
        return False
    return True


# --- the list ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], bool]
    share: float
    """Its part of the long run's cases."""
    about: str


TARGETS = (
    Target("frames", streams(), check_stream, 0.3, "FrameDecoder: byte streams in any pieces"),
    Target("messages", bodies(), check_body, 0.45, "decode_message: every type, mutated"),
    Target("config", config_cases(), check_config, 0.25, "load_config: TOML-ish text, bytes, env"),
)
