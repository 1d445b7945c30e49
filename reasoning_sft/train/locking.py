"""One run per --output_dir: an OS file lock on OUTPUT_DIR/.lock.

Two jobs pointed at the same directory would delete each other's checkpoints (--overwrite) and
interleave their writes. The lock is flock(2) on a file inside the directory: the kernel drops it
when the process ends, however it ends (SIGKILL, OOM killer, a preempted node's processes), so a
killed run never blocks its own --resume and there is no stale lock to clean up by hand. The file
holds who has it (pid, host, start time, command), so a refused run can name the other one.

Under several processes only the main one takes the lock; the others learn its verdict by a
broadcast, so every rank stops together instead of waiting at a barrier for a rank that left.
(On NFS, Linux maps flock to the server's byte-range locks; a filesystem without locks is refused
with one line rather than silently unprotected.)
"""

import datetime
import errno
import fcntl
import json
import os
import socket
import sys

from reasoning_sft.errors import UserError

LOCK_NAME = ".lock"


class OutputDirLock:
    """Held while the object lives (or until release()); the kernel releases it when the process dies."""

    def __init__(self, output_dir):
        self.path = os.path.join(output_dir, LOCK_NAME)
        self.fd = None

    def acquire(self):
        output_dir = os.path.dirname(self.path)
        if os.path.exists(output_dir) and not os.path.isdir(output_dir):
            raise UserError(f"--output_dir {output_dir} is a file; give a directory")
        try:
            os.makedirs(output_dir, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:  # a file on the way to it, no permission, a read-only filesystem
            raise UserError(f"--output_dir {output_dir}: cannot create it or write {LOCK_NAME} in it "
                            f"({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_holder(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(f"{output_dir} is in use by another run ({holder}); wait for it to end, "
                                "or give this run another --output_dir") from None
            raise UserError(f"{output_dir}: cannot lock {LOCK_NAME} ({err.strerror}); "
                            "put --output_dir on a filesystem with file locks") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_this_process()).encode())
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor drops the lock; the file stays (harmless)
            self.fd = None

    def __del__(self):
        self.release()


def _this_process():
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "command": " ".join(sys.argv)[:300]}


def _read_holder(fd):
    """'pid N on HOST since T: COMMAND' from the lock file, as far as it can be read."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "pid unknown"  # the other run is between taking the lock and writing its name
    return f"pid {info['pid']} on {info.get('host', '?')} since {info.get('started', '?')}: {info.get('command', '')}"


def lock_output_dir(accelerator, output_dir):
    """Take the lock (main process) and stop every rank at once when another run holds it."""
    lock, refusal = None, None
    if accelerator.is_main_process:
        try:
            lock = OutputDirLock(output_dir).acquire()
        except UserError as err:
            refusal = str(err)
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list
        refusal = broadcast_object_list([refusal])[0]
    if refusal is not None:
        if not accelerator.is_main_process:
            raise SystemExit(2)  # the main process says why, in one line
        raise UserError(refusal)
    return lock
