"""Leaving root at start with the Docker socket's group: run for real in a child process (as root)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.privileges import DEFAULT_SOCKET, parse_user, socket_path
from tests.support.agent_process import REPO

CHILD = """
import json, os, sys
from pathlib import Path
from agent.privileges import capabilities, drop_root
dropped = drop_root(10001, 10001, Path(sys.argv[1]))
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                  "socket_gid": dropped.socket_gid, "caps": capabilities()}))
"""


def test_socket_path_and_user() -> None:
    assert socket_path(None) == socket_path("") == DEFAULT_SOCKET
    assert socket_path("unix:///run/user/1000/docker.sock") == Path("/run/user/1000/docker.sock")
    assert socket_path("tcp://dockerproxy:2375") is None
    assert parse_user("10001:10002") == (10001, 10002)
    assert parse_user("10001") == (10001, 10001)
    for bad in ("0:10001", "10001:0", "root", ""):
        with pytest.raises(ValueError):  # noqa: PT011 (int() and our own check raise different messages)
            parse_user(bad)


@pytest.mark.skipif(os.geteuid() != 0, reason="leaving root needs root (CI runs as root)")
def test_root_becomes_the_user_with_the_sockets_group_and_no_capability(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    os.chown(sock, 0, 4242)  # a host whose docker group is 4242
    os.chmod(sock, 0o660)
    tmp_path.chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(sock)], cwd=REPO, capture_output=True, text=True, check=False, timeout=30
    )
    listener.close()
    assert result.returncode == 0, result.stderr
    child = json.loads(result.stdout)
    assert (child["uid"], child["gid"], child["socket_gid"]) == (10001, 10001, 4242)
    assert 4242 in child["groups"]
    assert 0 not in child["groups"]
    assert {name: child["caps"][name] for name in ("CapPrm", "CapEff", "CapAmb", "CapBnd")} == dict.fromkeys(
        ("CapPrm", "CapEff", "CapAmb", "CapBnd"), 0
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop capabilities first")
def test_root_without_setuid_is_a_clear_configuration_error() -> None:
    # capsh is not everywhere: drop CAP_SETUID/SETGID from the bounding set and the effective set
    # with prctl + capset in the child itself, then try to leave root.
    child = """
import ctypes, sys
from agent.privileges import PrivilegeError, drop_root
libc = ctypes.CDLL(None, use_errno=True)
class Header(ctypes.Structure): _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
u32 = ctypes.c_uint32
class Data(ctypes.Structure): _fields_ = [("effective", u32), ("permitted", u32), ("inheritable", u32)]
header, data = Header(0x20080522, 0), (Data * 2)()
assert libc.capget(ctypes.byref(header), data) == 0
for word in data: word.effective = word.permitted = word.inheritable = 0
assert libc.capset(ctypes.byref(header), data) == 0
try:
    drop_root(10001, 10001, None)
except PrivilegeError as exc:
    print(exc); sys.exit(3)
"""
    result = subprocess.run(
        [sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 3, result.stderr
    assert "cap_add: [SETUID, SETGID, SETPCAP]" in result.stdout
