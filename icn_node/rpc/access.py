"""Who may use the RPC socket: the peer's credentials (SO_PEERCRED) against icnd's user.

The socket file is mode 0660, so the kernel already keeps out anyone who is neither its owner
nor in its group. icnd checks again on every accepted connection, with the credentials the
kernel recorded when the client connected, so the rule holds whatever the file's mode or
group becomes (a umask, a ``chmod`` by hand, a directory shared with other services):

* icnd's own (effective) uid and root are always allowed;
* so is a member of ``rpc.allowed_group`` when it is set: the peer's primary gid or one of
  its supplementary groups (``SO_PEERGROUPS``, Linux 4.13 and later; elsewhere the group's
  member list in the group database), and the socket file is given to that group;
* anyone else gets one error line (``-32001``, "permission denied: uid 1001 (alice) is not
  icnd's user …") and the connection is closed.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
import sys
from dataclasses import dataclass

from ..errors import IcnError

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59 if sys.platform.startswith("linux") else None)
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_GID_BYTES = struct.calcsize("I")
_MAX_GROUPS_READ = 256  # getsockopt reads at most 1,024 bytes; more groups: the group database


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """What the kernel recorded about a client when it connected. ``groups``: its
    supplementary groups, None where the kernel could not say."""

    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class AllowedGroup:
    """``rpc.allowed_group`` resolved on this host: its name, gid and listed members."""

    name: str
    gid: int
    members: frozenset[str] = frozenset()

    @classmethod
    def resolve(cls, spec: str) -> AllowedGroup:
        """The group named (or numbered) ``spec``; IcnError naming the key if there is none."""
        try:
            entry = grp.getgrgid(int(spec)) if spec.isdigit() else grp.getgrnam(spec)
        except (KeyError, ValueError, OverflowError):
            raise IcnError(f"rpc.allowed_group: no group {spec!r} on this host") from None
        return cls(entry.gr_name, entry.gr_gid, frozenset(entry.gr_mem))


@dataclass(frozen=True, slots=True)
class Access:
    """Whom icnd serves: ``uid`` (its own), root, and members of ``group``."""

    uid: int
    group: AllowedGroup | None = None

    @classmethod
    def for_daemon(cls, allowed_group: str = "") -> Access:
        group = AllowedGroup.resolve(allowed_group) if allowed_group else None
        return cls(os.geteuid(), group)

    def refusal(self, peer: PeerCredentials) -> str | None:
        """Why ``peer`` may not use the socket; None when it may."""
        if peer.uid in (self.uid, 0):
            return None
        group = self.group
        if group is not None and self._member(peer, group):
            return None
        who = f"uid {peer.uid}{_user_name(peer.uid)} is not icnd's user (uid {self.uid})"
        if group is None:
            return f"permission denied: {who}, and rpc.allowed_group is not set"
        return f"permission denied: {who} nor in group {group.name} (rpc.allowed_group)"

    @staticmethod
    def _member(peer: PeerCredentials, group: AllowedGroup) -> bool:
        if peer.gid == group.gid:
            return True
        if peer.groups is not None:
            return group.gid in peer.groups
        try:
            return pwd.getpwuid(peer.uid).pw_name in group.members
        except KeyError:
            return False


def _user_name(uid: int) -> str:
    try:
        return f" ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return ""


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """The credentials of the process at the other end of the Unix socket ``sock``."""
    pid, uid, gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    groups: tuple[int, ...] | None = None
    if SO_PEERGROUPS is not None:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _MAX_GROUPS_READ * _GID_BYTES)
        except OSError:  # an old kernel, or more groups than we read: ask the group database
            pass
        else:
            n = len(raw) // _GID_BYTES
            groups = struct.unpack(f"{n}I", raw[: n * _GID_BYTES])
    return PeerCredentials(pid, uid, gid, groups)


__all__ = ["Access", "AllowedGroup", "PeerCredentials", "peer_credentials"]
