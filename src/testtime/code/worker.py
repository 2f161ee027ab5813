"""The candidate's side of the sandbox: loads the candidate's program and answers calls.

Runs inside the sandbox as ``python -I -S -c <wire.py + this file>``. The first line on
stdin says what to do:

- ``{"op": "load", "program", "guard"}`` (channel mode, the default): load the program, then
  answer ``{"op": "call", "id", "name", "args", "kwargs"}`` lines with the plain value the
  named function returned (or the exception it raised), until ``{"op": "exit"}`` or EOF. The
  tests and their expected values stay in the harness process; nothing here can see them.
- ``{"nonce", "program", "steps", "guard"}`` (shared mode, the fallback for tests that cannot
  be split into calls): run the program and the test steps here, one result line per step,
  led by the nonce.

The channel is the process's original stdin/stdout, moved to private descriptors before the
candidate runs; the candidate's own prints go to stderr. An audit hook is installed before
the candidate's code runs, as a second layer behind the operating system's isolation.
"""

import contextlib
import os
import resource
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # at run time wire.py's text comes first
    from testtime.code.wire import Unplain, dumps, from_plain, loads, to_plain

_ROOT = os.path.realpath(os.getcwd())
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_DENIED = frozenset({
    "socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo",
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
    "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill", "os.setuid",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.addressof",
    "gc.get_referrers", "gc.get_objects", "gc.get_referents", "os.putenv", "os.unsetenv",
    "mmap.__new__", "sys._current_frames",
})
_PATH_EVENTS = frozenset({
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink",
    "os.link", "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move",
    "os.chdir", "os.chroot",
})


def _inside(path: object) -> bool:
    if isinstance(path, int):
        return True
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return False
    full = os.path.realpath(os.path.join(_ROOT, path))
    return full == _ROOT or full.startswith(_ROOT + os.sep)


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event in _DENIED:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open" and len(args) >= 3:
        path, mode, flags = args[0], args[1], args[2]
        writes = (isinstance(mode, str) and any(ch in mode for ch in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS)
        if writes and not _inside(path):
            raise PermissionError(f"sandbox: writing {path!r} is not allowed")
    elif event == "sqlite3.connect" and args and args[0] != ":memory:" and not _inside(args[0]):
        raise PermissionError("sandbox: sqlite3 outside the sandbox is not allowed")
    elif event in _PATH_EVENTS and not all(_inside(a) for a in args[:2] if a is not None
                                           and not isinstance(a, int | bool)):
        raise PermissionError(f"sandbox: {event} outside the sandbox is not allowed")


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _limit(spec: dict) -> None:
    processes = spec.get("processes")
    if isinstance(processes, int) and processes > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


class _Line:
    """One end of the channel: JSON lines on private descriptors."""

    def __init__(self) -> None:
        self.rfile = os.fdopen(os.dup(0), "rb")
        self.wfile = os.fdopen(os.dup(1), "wb")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)

    def read(self) -> object:
        line = self.rfile.readline()
        return loads(line) if line else None

    def write(self, record: dict) -> None:
        self.wfile.write(dumps(record).encode() + b"\n")
        self.wfile.flush()


def _main() -> None:
    line = _Line()
    first = line.read()
    if not isinstance(first, dict):
        os._exit(2)
    _limit(first)
    try:
        if first.get("op") == "load":
            _serve(line, str(first["program"]), bool(first.get("guard", True)))
        else:
            _steps(line, first)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
    os._exit(0)


def _load(program: str, guard: bool) -> tuple[dict, str | None]:
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    if guard:
        sys.addaudithook(_hook)
    try:
        exec(compile(program, "<candidate>", "exec"), namespace)
    except BaseException as exc:
        return namespace, _error(exc)
    return namespace, None


def _serve(line: _Line, program: str, guard: bool) -> None:
    namespace, error = _load(program, guard)
    if error is not None:
        line.write({"loaded": False, "error": error})
        return
    callables, values = [], {}
    for name, value in list(namespace.items()):
        if name.startswith("__"):
            continue
        if callable(value) and not isinstance(value, type(os)):
            callables.append(name)
            continue
        with contextlib.suppress(Unplain, RecursionError):
            values[name] = to_plain(value)
    line.write({"loaded": True, "callables": callables, "values": values})
    while True:
        msg = line.read()
        if not isinstance(msg, dict) or msg.get("op") != "call":
            return
        line.write(_call(namespace, msg))


def _call(namespace: dict, msg: dict) -> dict:
    reply: dict = {"id": msg.get("id")}
    try:
        fn = namespace[str(msg["name"])]
        args = from_plain(msg["args"])
        kwargs = from_plain(msg["kwargs"])
        value = fn(*args, **kwargs)
        reply["value"] = to_plain(value)
        if any(type(a) in (list, dict, set) for a in args):
            with contextlib.suppress(Unplain, RecursionError):
                reply["args"] = to_plain(args)
    except Unplain as exc:
        reply.update({"raise": "UnplainValue", "error": str(exc)[:500]})
    except BaseException as exc:
        reply.update({"raise": type(exc).__name__, "error": str(exc)[:500]})
    return reply


def _steps(line: _Line, spec: dict) -> None:
    nonce = str(spec["nonce"])

    def emit(record: dict) -> None:
        line.wfile.write((nonce + dumps(record) + "\n").encode())
        line.wfile.flush()

    steps = [(str(src), bool(is_test)) for src, is_test in spec["steps"]]
    namespace, error = _load(str(spec["program"]), bool(spec.get("guard", True)))
    if error is not None:
        emit({"step": -1, "ok": False, "error": error})
        return
    emit({"step": -1, "ok": True})
    for i, (src, is_test) in enumerate(steps):
        try:
            exec(compile(src, f"<test {i}>", "exec"), namespace)
        except BaseException as exc:
            emit({"step": i, "ok": False, "error": _error(exc)})
            if not is_test:
                return
        else:
            emit({"step": i, "ok": True})


if __name__ == "__main__":
    _main()
