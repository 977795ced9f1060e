"""Leaving root at start, keeping only the group that owns the Docker socket. Standard library only.

The group owning ``/var/run/docker.sock`` differs between hosts (999 on Docker's packages, 105 on
this CI machine, a dynamic id from Debian's docker.io), and Compose cannot look it up. So the
Compose files start the agent as root with nothing but CAP_SETUID, CAP_SETGID and CAP_SETPCAP;
the agent reads the socket's group, empties its capability bounding set, and switches to the
unprivileged user with that group added. From then on it holds no capability (the kernel clears
them when the last root uid goes) and cannot regain one (empty bounding set, no-new-privileges).
Started as a non-root user (``docker run --user``, Kubernetes), it changes nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SOCKET = Path("/var/run/docker.sock")
_PR_CAPBSET_DROP = 24


class PrivilegeError(RuntimeError):
    """Running as root without the capabilities to leave it: a configuration error."""


@dataclass(frozen=True, slots=True)
class Dropped:
    """What the process became: the user, its group, and the socket's group (None: no socket seen)."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    socket_gid: int | None


def socket_path(docker_host: str | None) -> Path | None:
    """The socket ``DOCKER_HOST`` names (default the standard one); None for a TCP endpoint."""
    if not docker_host:
        return DEFAULT_SOCKET
    if docker_host.startswith("unix://"):
        return Path(docker_host.removeprefix("unix://"))
    return None


def parse_user(text: str) -> tuple[int, int]:
    """``uid:gid`` (numeric, neither 0) as a pair; ValueError otherwise."""
    uid_text, _, gid_text = text.partition(":")
    uid, gid = int(uid_text), int(gid_text or uid_text)
    if uid <= 0 or gid <= 0:
        raise ValueError("the agent's user must not be root (uid and gid above 0)")
    return uid, gid


def capabilities() -> dict[str, int]:
    """This process's capability sets from /proc/self/status (CapInh, CapPrm, CapEff, CapBnd, CapAmb)."""
    sets = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Cap"):
            name, _, value = line.partition(":")
            sets[name] = int(value.strip(), 16)
    return sets


def _empty_bounding_set() -> None:
    """Drop every capability from the bounding set (nothing without CAP_SETPCAP: the first call fails)."""
    libc = ctypes.CDLL(None, use_errno=True)
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            return


def drop_root(uid: int, gid: int, socket: Path | None) -> Dropped | None:
    """Become ``uid:gid`` with the socket's group when running as root; None when not root."""
    if os.geteuid() != 0:
        return None
    socket_gid: int | None = None
    if socket is not None:
        with contextlib.suppress(OSError):  # no socket mounted: container metrics will say so
            socket_gid = socket.stat().st_gid
    groups = {g for g in os.getgroups() if g != 0}  # Compose's group_add (e.g. the secrets' group)
    if socket_gid is not None:
        groups.add(socket_gid)  # even 0, on a host whose socket is root:root 0660
    try:
        _empty_bounding_set()
        os.setgroups(sorted(groups))
        os.setgid(gid)
        os.setuid(uid)
    except PermissionError:
        raise PrivilegeError(
            "started as root without CAP_SETUID and CAP_SETGID, so it cannot switch to its own user: "
            "add `cap_add: [SETUID, SETGID, SETPCAP]` (as compose.yaml does) or run it as a non-root user "
            "with the Docker socket's group (--user 10001:10001 --group-add $(stat -c %g /var/run/docker.sock))"
        ) from None
    left = capabilities()
    if left.get("CapEff", 0) or left.get("CapPrm", 0) or left.get("CapAmb", 0):
        raise PrivilegeError(f"capabilities left after leaving root: {left}")  # pragma: no cover (kernel rule)
    return Dropped(os.getuid(), os.getgid(), tuple(os.getgroups()), socket_gid)
