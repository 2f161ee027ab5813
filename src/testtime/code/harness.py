"""The tests' side of the sandbox: runs the tests and calls the candidate over the channel.

Runs as ``python -I -S -c <wire.py + this file>``, outside the candidate's sandbox, and reads
a JSON spec on stdin: ``program`` (sent to the candidate to load), ``rfd``/``wfd`` (the
channel's descriptors), and either ``steps`` (test code, ``[source, is_test]`` pairs) or
``calls`` (``[name, args, kwargs]`` to run and report the plain values of), and optionally
``trusted`` (the problem's own code, e.g. a prompt's helper functions the tests use: run here,
so a candidate that redefines them changes nothing) with its ``entry_point``. In the steps,
every other function the candidate's program defines is a proxy that sends its arguments as plain
data and returns the plain data the candidate sent back, so each assert compares built-in
values in this process; the candidate never sees a test or an expected value. Results go to
stdout, one JSON line each. A test that needs more than plain data (a function passed as an
argument, an attribute of the candidate) cannot be split: the harness says so and stops.
"""

import builtins
import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # at run time wire.py's text comes first
    from testtime.code.wire import Unplain, dumps, from_plain, loads, to_plain


class Unsplittable(BaseException):
    """The tests need the candidate's objects themselves, not plain data."""


class CandidateError(Exception):
    """The candidate raised an exception that is not a built-in one, or broke the protocol."""


class CandidateGone(CandidateError):
    """The candidate's process ended (an exit, a crash, a kill) before it answered."""


MAX_REPLY = 64 * 1024 * 1024
_PROBES = frozenset({"__deepcopy__", "__copy__", "__length_hint__", "__getstate__",
                     "__setstate__", "__reduce__", "__reduce_ex__", "__getnewargs_ex__"})


class _Channel:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfile = os.fdopen(rfd, "rb")
        self.wfile = os.fdopen(wfd, "wb")
        self.gone = ""
        self.next_id = 0

    def send(self, record: dict) -> None:
        if self.gone:
            raise CandidateGone(self.gone)
        try:
            self.wfile.write(dumps(record).encode() + b"\n")
            self.wfile.flush()
        except OSError:
            self.gone = "the candidate's process ended"
            raise CandidateGone(self.gone) from None

    def recv(self) -> dict:
        if self.gone:
            raise CandidateGone(self.gone)
        line = self.rfile.readline(MAX_REPLY)
        if not line.endswith(b"\n"):
            self.gone = ("the candidate's process ended" if len(line) < MAX_REPLY
                         else "the candidate's reply was too long")
            raise CandidateGone(self.gone)
        try:
            msg = loads(line)
        except Unplain as exc:
            self.gone = f"the candidate broke the protocol ({exc})"
            raise CandidateGone(self.gone) from None
        if type(msg) is not dict:
            self.gone = "the candidate broke the protocol"
            raise CandidateGone(self.gone)
        return msg


def _raise(name: object, message: object) -> None:
    kind = getattr(builtins, name, None) if type(name) is str else None
    text = message if type(message) is str else ""
    if isinstance(kind, type) and issubclass(kind, Exception):
        raise kind(text)
    raise CandidateError(f"{name}: {text}")


def _update(arg: object, new: object) -> None:
    if type(arg) is list and type(new) is list:
        arg[:] = new
    elif (type(arg) is dict and type(new) is dict) or (type(arg) is set and type(new) is set):
        arg.clear()
        arg.update(new)


class _Candidate:
    """Stands for one of the candidate's functions; every call goes over the channel."""

    def __init__(self, channel: _Channel, name: str) -> None:
        self._channel = channel
        self._name = name

    def __repr__(self) -> str:
        return f"<candidate {self._name}>"

    def __getattr__(self, attr: str) -> object:
        if attr in _PROBES:
            raise AttributeError(attr)
        raise Unsplittable(f"the tests use {self._name}.{attr}")

    def __call__(self, *args: object, **kwargs: object) -> object:
        try:
            plain_args, plain_kwargs = to_plain(list(args)), to_plain(dict(kwargs))
        except (Unplain, RecursionError) as exc:
            raise Unsplittable(f"the tests pass {self._name}() a value that is not plain "
                               f"data ({exc})") from None
        channel = self._channel
        channel.next_id += 1
        ident = channel.next_id
        channel.send({"op": "call", "id": ident, "name": self._name, "args": plain_args,
                      "kwargs": plain_kwargs})
        reply = channel.recv()
        if reply.get("id") != ident:
            channel.gone = "the candidate broke the protocol (a reply out of turn)"
            raise CandidateGone(channel.gone)
        if "raise" in reply:
            _raise(reply.get("raise"), reply.get("error"))
        try:
            value = from_plain(reply.get("value"))
            after = from_plain(reply["args"]) if "args" in reply else None
        except (Unplain, RecursionError) as exc:
            raise CandidateError(f"the candidate returned something that is not plain data "
                                 f"({exc})") from None
        if type(after) is list and len(after) == len(args):
            for arg, new in zip(args, after, strict=True):
                _update(arg, new)
        return value


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


class _Out:
    def __init__(self) -> None:
        self.file = os.fdopen(os.dup(1), "w", encoding="utf-8")
        os.dup2(2, 1)

    def emit(self, record: dict) -> None:
        self.file.write(dumps(record) + "\n")
        self.file.flush()


def _main() -> None:
    import json
    import sys

    spec = json.loads(sys.stdin.read())
    out = _Out()
    channel = _Channel(int(spec["rfd"]), int(spec["wfd"]))
    try:
        _run(out, channel, spec)
    except Unsplittable as exc:
        out.emit({"unsplittable": str(exc)[:500]})
    except CandidateGone:
        pass
    finally:
        with contextlib.suppress(BaseException):
            channel.send({"op": "exit"})
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        out.file.close()
    os._exit(0)


def _run(out: _Out, channel: _Channel, spec: dict) -> None:
    channel.send({"op": "load", "program": spec["program"], "guard": spec.get("guard", True),
                  "processes": spec.get("processes")})
    hello = channel.recv()
    if hello.get("loaded") is not True:
        out.emit({"step": -1, "ok": False, "error": str(hello.get("error", ""))[:500]})
        return
    out.emit({"step": -1, "ok": True})
    namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
    trusted: set = set()
    if spec.get("trusted"):
        try:
            exec(compile(spec["trusted"], "<problem>", "exec"), namespace)
            trusted = set(namespace) - {"__name__", "__builtins__", spec.get("entry_point")}
        except Exception:
            namespace = {"__name__": "__main__", "__builtins__": builtins}
    values = hello.get("values")
    if type(values) is dict:
        for name, value in values.items():
            if str(name) not in trusted:
                with contextlib.suppress(Unplain, RecursionError):
                    namespace[str(name)] = from_plain(value)
    callables = hello.get("callables")
    for name in callables if type(callables) is list else []:
        if str(name) not in trusted:
            namespace[str(name)] = _Candidate(channel, str(name))
    for i, call in enumerate(spec.get("calls") or []):
        name, args, kwargs = call
        try:
            value = _Candidate(channel, str(name))(*from_plain(args), **from_plain(kwargs))
            out.emit({"call": i, "value": to_plain(value)})
        except Unsplittable:
            raise
        except BaseException as exc:
            out.emit({"call": i, "error": _error(exc)})
    for i, (src, is_test) in enumerate(spec.get("steps") or []):
        try:
            exec(compile(src, f"<test {i}>", "exec"), namespace)
        except Unsplittable:
            raise
        except BaseException as exc:
            out.emit({"step": i, "ok": False, "error": _error(exc)})
            if not is_test:
                return
        else:
            out.emit({"step": i, "ok": True})


if __name__ == "__main__":
    _main()
