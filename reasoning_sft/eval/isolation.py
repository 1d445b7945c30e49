"""Keeping a sample off the network without a container. Standard library only.

enter_network_namespace() moves the calling process into a new unprivileged user namespace
(its uid and gid mapped to themselves, so its files stay its own) and, inside it, a new
network namespace whose only interface is a loopback that is down: no route anywhere, not even
to the 127.0.0.1 of the machine. The sandbox runner calls it first, while it is still
single-threaded (the kernel requires that for a new user namespace).

It needs no privilege, but a kernel or a container may forbid unprivileged user namespaces
(kernel.unprivileged_userns_clone=0, user.max_user_namespaces=0, AppArmor's
restrict_unprivileged_userns, a seccomp profile). Then it raises OSError, and the evaluator
says so and runs samples with the network of the machine. `python -I isolation.py` is the probe
that execution.py runs once: it enters a namespace and prints "ok", or the reason it cannot.
"""

import ctypes
import errno
import os
import socket

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PROBE_OK = "ok"


def _write(path, text):
    with open(path, "w", encoding="ascii") as f:
        f.write(text)


def enter_network_namespace():
    """New user + network namespace for this process; OSError (with the reason) when the kernel refuses."""
    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter is linked with: no lookup that spawns
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"unshare(CLONE_NEWUSER | CLONE_NEWNET) failed: {os.strerror(code)} "
                            f"({errno.errorcode.get(code, code)})")
    try:
        _write("/proc/self/setgroups", "deny")  # required before an unprivileged gid_map
    except FileNotFoundError:  # kernels before 3.19 have no such file and no such requirement
        pass
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")


def probe():
    """PROBE_OK when this process could enter a namespace that has only a loopback interface, else why not."""
    try:
        enter_network_namespace()
        names = [name for _, name in socket.if_nameindex()]
    except OSError as err:
        return err.strerror or str(err)
    return PROBE_OK if names == ["lo"] else f"the new network namespace has interfaces {names}"


if __name__ == "__main__":
    print(probe())
