"""The program run inside the sandbox: guards itself with an audit hook, then runs the steps.

It is executed as ``python -I -c <this file's text>`` and reads a JSON spec on stdin:
``{"nonce", "program", "steps": [[source, is_test], ...]}``. Each result is written to
stdout as one line, ``nonce`` followed by JSON, so candidate prints cannot pass as results.
Only the standard library is used; nothing here is imported by testtime itself.
"""

import contextlib
import json
import os
import sys

_ROOT = os.path.realpath(os.getcwd())
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_DENIED = frozenset({
    "socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo",
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
    "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill", "os.setuid",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.addressof",
    "gc.get_referrers", "gc.get_objects", "gc.get_referents", "os.putenv", "os.unsetenv",
    "mmap.__new__",
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
    elif event in _PATH_EVENTS and not all(_inside(a) for a in args[:2] if a is not None
                                           and not isinstance(a, int | bool)):
        raise PermissionError(f"sandbox: {event} outside the sandbox is not allowed")


class _Channel:
    """Where results go: a private copy of stdout, each line led by the run's nonce."""

    def __init__(self, nonce: str) -> None:
        self.nonce = nonce
        self.out = os.fdopen(os.dup(1), "w", encoding="utf-8")

    def emit(self, record: dict[str, object]) -> None:
        self.out.write(self.nonce + json.dumps(record) + "\n")
        self.out.flush()


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _main() -> None:
    spec = json.loads(sys.stdin.read())
    os.close(0)
    channel = _Channel(str(spec.pop("nonce")))
    try:
        _run(channel, str(spec["program"]),
             [(str(src), bool(is_test)) for src, is_test in spec["steps"]],
             guard=bool(spec.get("guard", True)))
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        channel.out.close()
    os._exit(0)


def _run(channel: _Channel, program: str, steps: list[tuple[str, bool]], guard: bool) -> None:
    _emit = channel.emit
    namespace: dict[str, object] = {"__name__": "__main__", "__builtins__": __builtins__}
    if guard:
        sys.addaudithook(_hook)
    try:
        exec(compile(program, "<candidate>", "exec"), namespace)
    except BaseException as exc:
        _emit({"step": -1, "ok": False, "error": _error(exc)})
        return
    _emit({"step": -1, "ok": True})
    for i, (src, is_test) in enumerate(steps):
        try:
            exec(compile(src, f"<test {i}>", "exec"), namespace)
        except BaseException as exc:
            _emit({"step": i, "ok": False, "error": _error(exc)})
            if not is_test:
                return
        else:
            _emit({"step": i, "ok": True})


if __name__ == "__main__":
    _main()
