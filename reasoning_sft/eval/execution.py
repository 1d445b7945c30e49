"""Running model-written programs: each in its own process, temporary directory and limits.

run_program(source, entry_point=...) starts `python -I reasoning_sft/eval/sandbox_runner.py program.py ENTRY`:
  - where the kernel allows it, its own unprivileged user + network namespace (isolation.py):
    no network at all, only a loopback that is down; network_isolation() says whether it holds;
  - a fresh temporary directory as the working directory (removed afterwards), HOME and TMPDIR in it;
  - a scrubbed environment (no tokens, keys or proxies of the caller; one thread per math library);
  - stdin closed (/dev/null), stdout and stderr discarded;
  - its own session (process group), killed as a whole on the wall-clock timeout;
  - RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_FSIZE, no core files — set by the runner;
  - the guard (sandbox_runner.install_guard): process spawning, os.system, kill, file removal,
    renaming and permission changes raise PermissionError;
  - with an entry point, the runner calls the program's check(ENTRY) with a candidate whose
    return values reach the test as plain data (plain_data.py): no object that equals anything.
It passes only when the runner reports, on a private pipe, a random token that it writes
after the program ran to its end: exiting early with status 0 is a failure.

This keeps an honest program from hurting the machine or another sample, and a program from
reaching the network where namespaces are allowed. It is not a container: code that means harm
can still read and write the files this user can, or undo the guard through ctypes. Evaluate
untrusted models inside a container or VM.
"""

import functools
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed

from reasoning_sft.eval import isolation, sandbox_runner

PASSED, FAILED, TIMED_OUT = "passed", "failed", "timed out"
RUNNER = os.path.abspath(sandbox_runner.__file__)
ISOLATION = os.path.abspath(isolation.__file__)
NO_NETWORK = "no network (user+net namespace)"
DEFAULT_TIMEOUT = 5.0
DEFAULT_MEMORY_MB = 2048
FILE_LIMIT_BYTES = 64 << 20   # what one program may write to a single file
RESULT_BYTES = 4096


def default_workers():
    """All the cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def scrubbed_env(workdir):
    """The whole environment of a program: nothing of the caller's (credentials, proxies, PYTHON*)."""
    return {
        "PATH": os.defpath, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        # numpy's import sets these with os.putenv (guarded) unless they are set already
        "OPENBLAS_MAIN_FREE": "1", "GOTOBLAS_MAIN_FREE": "1",
    }


@functools.lru_cache(maxsize=None)
def network_isolation():
    """(True, NO_NETWORK) when a child can enter a user + network namespace here, else (False, why not).

    Probed once per process, in a child started as the runner is (isolation.py's probe)."""
    try:
        probe = subprocess.run([sys.executable, "-I", ISOLATION], capture_output=True, text=True, timeout=30,
                               env={"PATH": os.defpath, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"the namespace probe did not run: {err}"
    answer = probe.stdout.strip()
    if probe.returncode == 0 and answer == isolation.PROBE_OK:
        return True, NO_NETWORK
    lines = (answer or probe.stderr.strip() or f"the probe exited with status {probe.returncode}").splitlines()
    return False, lines[-1]


def isolation_line():
    """The line evaluate.py starts with: which isolation from the network holds on this machine."""
    isolated, detail = network_isolation()
    if isolated:
        return f"isolation: {detail}"
    return f"isolation: none from the network (samples can open connections): no user+net namespace here: {detail}"


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)  # the session's group: the program and anything it started
    except (ProcessLookupError, PermissionError):
        pass


def _read_result(fd):
    os.set_blocking(fd, False)  # never wait on a writer that escaped the process group
    chunks = []
    try:
        while sum(map(len, chunks)) < RESULT_BYTES:
            chunk = os.read(fd, RESULT_BYTES)
            if not chunk:
                break
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks)[:RESULT_BYTES]


def run_program(source, timeout=DEFAULT_TIMEOUT, memory_mb=DEFAULT_MEMORY_MB, entry_point=None):
    """Run one program; returns (status, excerpt): status is "passed", "failed" or "timed out".

    Given entry_point, the program defines check() and that function, and passing means that
    check(entry_point) ran to its end with plain-data return values (sandbox_runner.run_tests)."""
    token = secrets.token_hex(16)
    cpu_seconds = max(1, math.ceil(timeout))  # a backstop: the wall-clock timeout normally comes first
    workdir = tempfile.mkdtemp(prefix="rsft-exec-")
    read_fd, write_fd = os.pipe()
    try:
        with open(os.path.join(workdir, sandbox_runner.PROGRAM_NAME), "w", encoding="utf-8") as f:
            f.write(source)
        env = scrubbed_env(workdir)
        env.update(RSFT_SANDBOX_TOKEN=token, RSFT_SANDBOX_FD=str(write_fd),
                   RSFT_SANDBOX_LIMITS=f"{memory_mb << 20} {cpu_seconds} {FILE_LIMIT_BYTES}",
                   RSFT_SANDBOX_NETNS="1" if network_isolation()[0] else "0")
        command = [sys.executable, "-I", RUNNER, sandbox_runner.PROGRAM_NAME] + ([entry_point] if entry_point else [])
        proc = subprocess.Popen(command, cwd=workdir, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                pass_fds=(write_fd,), start_new_session=True)
        os.close(write_fd)
        write_fd = None
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(proc.pid)
            proc.wait()
        result = _read_result(read_fd).decode("utf-8", "replace")
    finally:
        os.close(read_fd)
        if write_fd is not None:
            os.close(write_fd)
        shutil.rmtree(workdir, ignore_errors=True)
    if result == f"PASS {token}":
        return PASSED, None
    if timed_out:
        return TIMED_OUT, f"timed out after {timeout:g} s (wall clock)"
    if proc.returncode == -signal.SIGXCPU:
        return TIMED_OUT, f"CPU time limit ({cpu_seconds} s) reached"
    if result.startswith("FAIL "):
        return FAILED, result[5:]
    if proc.returncode < 0:
        return FAILED, f"killed by {signal.Signals(-proc.returncode).name}"
    return FAILED, f"exited with status {proc.returncode} before the tests ran to their end"


def run_programs(sources, timeout=DEFAULT_TIMEOUT, memory_mb=DEFAULT_MEMORY_MB, workers=None, desc="execute",
                 entry_points=None):
    """run_program on every source (with entry_points[i], when given), `workers` at a time; results in input order."""
    from reasoning_sft.progress import progress

    sources = list(sources)
    entry_points = list(entry_points) if entry_points is not None else [None] * len(sources)
    network_isolation()  # probed once, before the threads start
    results = [None] * len(sources)
    executor = ThreadPoolExecutor(max_workers=max(1, workers or default_workers()))
    try:
        futures = {executor.submit(run_program, s, timeout, memory_mb, e): i
                   for i, (s, e) in enumerate(zip(sources, entry_points))}
        for future in progress(as_completed(futures), total=len(futures), desc=desc, unit="program"):
            results[futures[future]] = future.result()
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)  # the running ones end within their timeout
        raise
    executor.shutdown(wait=True)
    return results
