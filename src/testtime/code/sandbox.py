"""Run untrusted Python against tests with a verdict it cannot forge, isolated and limited.

Two processes per run (see docs/code-verification.md):

- the **harness** (:mod:`testtime.code.harness`) holds the tests and expected values and runs
  outside the candidate's sandbox; it calls the candidate's functions through a channel that
  carries plain data only (:mod:`testtime.code.wire`) and decides every verdict itself;
- the **candidate** (:mod:`testtime.code.worker`) runs in a *box*, strongest first:

  1. ``namespace`` (root, util-linux ``unshare`` + ``setpriv``): new mount, network, PID,
     IPC and UTS namespaces, every mount read-only, fresh tmpfs over /tmp, /var/tmp,
     /run/lock and /dev/shm, a fresh unprivileged uid, no capabilities, ``no_new_privs``,
     a clean environment;
  2. ``userns`` (any user where unprivileged user namespaces work): the same, inside a new
     user namespace (the caller's uid maps to root there, with every capability dropped
     before the candidate runs);
  3. ``process`` (no real isolation: a plain child process with rlimits, a scrubbed
     environment and an audit hook). ``auto`` never picks it: the operator opts in with
     ``TESTTIME_SANDBOX=process`` or by asking for it by name from Python.

Every box also gets rlimits (address space, CPU, processes, file size/output, open files),
a wall-clock limit, and the audit hook as a second layer. When a run ends, the box's PID
namespace dies with its first process, so nothing it started survives; ``process`` mode
kills the process group and removes its temporary directory (and those of dead owners).
Tests that cannot be split into plain-data calls run in the box with the candidate
(``verdict`` says ``shared``), still isolated, but with a verdict the candidate could forge.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["auto", "namespace", "userns", "process"]
Isolation = Literal["namespace", "userns", "process"]
_HERE = Path(__file__).parent
_WIRE = (_HERE / "wire.py").read_text(encoding="utf-8")
HARNESS = _WIRE + (_HERE / "harness.py").read_text(encoding="utf-8")
WORKER = _WIRE + (_HERE / "worker.py").read_text(encoding="utf-8")
BOX_PREFIX = "testtime-box-"
SETUP_FAILED = 97
_SETUP = r"""
fail() { echo "testtime-box: setup failed: $1" >&2; exit 97; }
mount --make-rprivate / || fail "mount --make-rprivate /"
while read -r _ _ _ _ mp _; do
  case "$mp" in
    *\\*) mp=$(printf '%b' "$(printf '%s' "$mp" | sed 's/\\\([0-7]\{3\}\)/\\0\1/g')");;
  esac
  case "$mp" in /proc|/proc/*) continue;; esac
  mount -o remount,bind,ro "$mp" 2>/dev/null || fail "cannot make $mp read-only"
done < /proc/self/mountinfo
for d in /tmp /var/tmp /run/lock /dev/shm; do
  if [ -d "$d" ]; then
    mount -t tmpfs -o size="$TT_DISK",mode=1777,nosuid,nodev tmpfs "$d" || fail "tmpfs on $d"
  fi
done
mkdir /tmp/.python /tmp/box || fail "mkdir"
mount --bind "$TT_PREFIX" /tmp/.python && mount -o remount,bind,ro /tmp/.python \
  || fail "cannot bind the interpreter"
ids=""
if [ -n "$TT_UID" ]; then
  chown "$TT_UID:$TT_UID" /tmp/box || fail "chown"
  ids="--reuid=$TT_UID --regid=$TT_UID --clear-groups"
fi
cd /tmp/box || fail "cd"
setpriv $ids --inh-caps=-all --bounding-set=-all --no-new-privs env -i HOME=/tmp/box \
  TMPDIR=/tmp/box PATH=/usr/bin:/bin LANG=C.UTF-8 "/tmp/.python/$TT_PYTHON" -I -S -c "$TT_SCRIPT"
exit $?
"""


class SandboxError(RuntimeError):
    """The sandbox itself could not run (not the candidate failing)."""


class Limits(BaseModel):
    """Resource limits for one sandboxed run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    wall_seconds: float = Field(default=10.0, gt=0, le=600)
    cpu_seconds: int = Field(default=5, ge=1, le=600)
    memory_mb: int = Field(default=1024, ge=64, le=65536)
    processes: int = Field(default=32, ge=1, le=4096)
    file_mb: int = Field(default=16, ge=1, le=4096)
    open_files: int = Field(default=64, ge=16, le=4096)
    output_kb: int = Field(default=256, ge=1, le=65536)


@dataclass(frozen=True)
class RunResult:
    """What one sandboxed run gave: which test steps passed, and how the candidate ended.

    ``status`` is ``exited``, ``timeout``, ``cpu limit``, ``memory limit``, ``killed
    (SIGKILL)``, ``crashed (SIGSEGV)`` or ``exit N``. ``verdict`` is ``channel`` (the tests
    ran in the harness and called the candidate with plain data) or ``shared: <why>`` (the
    tests could not be split and ran beside the candidate). ``values`` are the plain values
    of ``calls`` runs (None where a call failed).
    """

    loaded: bool
    passed: tuple[bool, ...]
    status: str
    seconds: float
    mode: str
    errors: dict[int, str] = field(default_factory=dict)
    output: str = ""
    verdict: str = "channel"
    cpu_seconds: float = 0.0
    values: tuple[Any, ...] = ()

    @property
    def fraction(self) -> float:
        """Share of test steps that passed (0 when the program did not even load)."""
        return sum(self.passed) / len(self.passed) if self.passed and self.loaded else 0.0

    @property
    def all_passed(self) -> bool:
        """Whether the program loaded and every test step passed."""
        return self.loaded and bool(self.passed) and all(self.passed)


def _python_layout() -> tuple[Path, str] | None:
    """The base interpreter's prefix and its executable relative to it, if it lives there."""
    prefix = Path(sys.base_prefix).resolve()
    exe = Path(sys.executable).resolve()
    try:
        return prefix, str(exe.relative_to(prefix))
    except ValueError:
        return None


def _tools() -> bool:
    return bool(shutil.which("unshare") and shutil.which("setpriv") and shutil.which("mount")
                and _python_layout() is not None)


@functools.lru_cache(maxsize=4)
def available(mode: Isolation) -> bool:
    """Whether ``mode`` works here: its requirements hold and a probe run passes.

    ``namespace`` needs root; ``userns`` needs a user other than root (mapped to root in its
    namespace, root would keep root's ownership of files and sysctls).
    """
    _libc()
    if mode == "process":
        return True
    if not _tools() or (mode == "namespace") != (os.geteuid() == 0):
        return False
    try:
        probe = _run(mode, "x = 1\n", [("assert x == 1", True)], None, Limits(), True)
    except (OSError, SandboxError):
        return False
    return probe.all_passed


def namespace_available() -> bool:
    """Whether the root-only namespace box works here."""
    return available("namespace")


def resolve_mode(mode: Mode = "auto") -> Isolation:
    """The isolation a run gets; ``TESTTIME_SANDBOX`` overrides ``auto``.

    ``auto`` takes the strongest box that works and refuses (a :class:`SandboxError`) where
    none does, unless the operator chose ``process`` by name.
    """
    if mode == "auto":
        env = os.environ.get("TESTTIME_SANDBOX", "auto")
        if env not in ("auto", "namespace", "userns", "process"):
            raise SandboxError(
                f"TESTTIME_SANDBOX must be auto, namespace, userns or process, not {env!r}")
        mode = env  # type: ignore[assignment]
    if mode == "auto":
        strong: Isolation
        for strong in ("namespace", "userns"):
            if available(strong):
                return strong
        raise SandboxError(
            "no real isolation is available here (needs util-linux unshare/setpriv and root "
            "or unprivileged user namespaces), so untrusted code is not run; set "
            "TESTTIME_SANDBOX=process to run it anyway with only rlimits and an audit hook")
    if not available(mode):
        raise SandboxError(f"the {mode} sandbox is unavailable here")
    return mode


def run_tests(program: str, steps: Sequence[tuple[str, bool]], limits: Limits | None = None,
              mode: Mode = "auto", *, guard: bool = True, trusted: str = "",
              entry_point: str | None = None) -> RunResult:
    """Run ``program`` in a box, and each step (``(source, is_test)``) in the harness.

    A test step passes when it raises nothing. A failing setup step (``is_test`` false) stops
    the run; every test not reported as passed (timeout, crash, kill) counts as failed. Steps
    that need more than plain data from the candidate are rerun beside it (``verdict``).
    ``guard=False`` leaves out the audit hook, to test what the OS layers hold on their own.
    ``trusted`` is the problem's own code (a prompt): its functions other than
    ``entry_point`` are run in the harness, so the tests use those, never the candidate's.
    """
    if trusted and not entry_point:
        raise ValueError("trusted code needs the entry point it must not stand in for")
    isolation = resolve_mode(mode)
    return _run(isolation, program, list(steps), None, limits or Limits(), guard,
                trusted, entry_point)


def run_calls(program: str, calls: Sequence[tuple[str, Sequence[Any], dict[str, Any]]],
              limits: Limits | None = None, mode: Mode = "auto") -> RunResult:
    """Call the program's functions with plain arguments; ``values`` holds what they returned.

    ``passed`` marks the calls that returned a value (rather than raising or not answering).
    """
    isolation = resolve_mode(mode)
    return _run(isolation, program, [], list(calls), limits or Limits(), True)


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a child before exec: be SIGKILLed when the thread that started it goes away."""
    _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _limit_resources(limits: Limits, processes: bool) -> None:
    _die_with_parent()
    mb = 1024 * 1024
    pairs = [
        (resource.RLIMIT_AS, limits.memory_mb * mb, limits.memory_mb * mb),
        (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),
        (resource.RLIMIT_FSIZE, limits.file_mb * mb, limits.file_mb * mb),
        (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if processes:
        pairs.append((resource.RLIMIT_NPROC, limits.processes, limits.processes))
    for which, soft, hard in pairs:
        resource.setrlimit(which, (soft, hard))


def _limit_harness(limits: Limits) -> None:
    _die_with_parent()
    mb = 1024 * 1024
    memory = max(limits.memory_mb, 1024) * mb
    cpu = int(limits.wall_seconds) + 2
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _clean_env(home: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8"}


def _box_command(mode: Isolation, workdir: str | None,
                 limits: Limits) -> tuple[list[str], dict[str, str]]:
    if mode == "process":
        assert workdir is not None
        return [sys.executable, "-I", "-S", "-c", WORKER], _clean_env(workdir)
    layout = _python_layout()
    if layout is None:
        raise SandboxError("the Python interpreter is not under its base prefix")
    prefix, python = layout
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TT_PREFIX": str(prefix),
           "TT_PYTHON": python, "TT_SCRIPT": WORKER, "TT_DISK": f"{limits.file_mb * 4}m",
           "TT_UID": str(200_000 + secrets.randbelow(60_000)) if mode == "namespace" else ""}
    user = ["--user", "--map-root-user"] if mode == "userns" else []
    cmd = ["unshare", *user, "--mount", "--net", "--pid", "--ipc", "--uts", "--fork",
           "--kill-child", "--mount-proc", "sh", "-c", _SETUP]
    return cmd, env


_SWEPT: set[str] = set()


def sweep_stale_dirs(root: str | None = None) -> list[str]:
    """Remove ``testtime-box-<pid>-*`` directories whose owner process is gone."""
    base = root or tempfile.gettempdir()
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            m = re.fullmatch(rf"{BOX_PREFIX}(\d+)-.*", entry.name)
            if not m or not entry.is_dir(follow_symlinks=False):
                continue
            owner = int(m[1])
            try:
                os.kill(owner, 0)
                continue
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


@contextlib.contextmanager
def _workdir(mode: Isolation) -> Any:
    if mode != "process":
        yield None
        return
    base = tempfile.gettempdir()
    if base not in _SWEPT:
        _SWEPT.add(base)
        sweep_stale_dirs(base)
    path = tempfile.mkdtemp(prefix=f"{BOX_PREFIX}{os.getpid()}-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _run(mode: Isolation, program: str, steps: list[tuple[str, bool]],
         calls: list[tuple[str, Sequence[Any], dict[str, Any]]] | None, limits: Limits,
         guard: bool, trusted: str = "", entry_point: str | None = None) -> RunResult:
    first = _run_channel(mode, program, steps, calls, limits, guard, trusted, entry_point)
    if first.verdict == "channel" or calls is not None:
        return first
    second = _run_shared(mode, program, steps, limits, guard)
    return RunResult(loaded=second.loaded, passed=second.passed, status=second.status,
                     seconds=first.seconds + second.seconds, mode=mode, errors=second.errors,
                     output=second.output, verdict=first.verdict,
                     cpu_seconds=first.cpu_seconds + second.cpu_seconds)


def _start_box(mode: Isolation, workdir: str | None, limits: Limits, stdin: Any,
               stdout: Any, stderr: Any) -> subprocess.Popen[bytes]:
    cmd, env = _box_command(mode, workdir, limits)
    try:
        return subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=stderr,
                                cwd=workdir or "/", env=env, start_new_session=True,
                                close_fds=True,
                                preexec_fn=lambda: _limit_resources(limits, mode != "userns"))
    except OSError as exc:
        raise SandboxError(f"cannot start the sandbox: {exc}") from exc


def _end_box(box: subprocess.Popen[bytes], grace: float) -> tuple[int, float, bool]:
    """Wait up to ``grace`` seconds for the box to end, then kill all of it.

    Returns its exit code, the CPU seconds it and its reaped children used, and whether it
    was still running at the deadline.
    """
    deadline = time.monotonic() + grace
    late = False
    while os.waitid(os.P_PID, box.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            late = True
            break
        time.sleep(0.005)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(box.pid, signal.SIGKILL)
    _, status, usage = os.wait4(box.pid, 0)
    box.returncode = os.waitstatus_to_exitcode(status)
    return box.returncode, usage.ru_utime + usage.ru_stime, late


def _run_channel(mode: Isolation, program: str, steps: list[tuple[str, bool]],
                 calls: list[tuple[str, Sequence[Any], dict[str, Any]]] | None,
                 limits: Limits, guard: bool, trusted: str = "",
                 entry_point: str | None = None) -> RunResult:
    started = time.monotonic()
    timed_out = False
    with _workdir(mode) as workdir, tempfile.TemporaryFile() as out:
        to_box_r, to_box_w = os.pipe()
        from_box_r, from_box_w = os.pipe()
        try:
            box = _start_box(mode, workdir, limits, to_box_r, from_box_w, out)
        finally:
            os.close(to_box_r)
            os.close(from_box_w)
        try:
            spec = json.dumps({"program": program, "guard": guard, "steps": steps,
                               "calls": [[n, _plain(a), _plain(dict(k))] for n, a, k in calls]
                               if calls is not None else None,
                               "rfd": from_box_r, "wfd": to_box_w, "trusted": trusted,
                               "entry_point": entry_point,
                               "processes": limits.processes})
            harness = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", HARNESS], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=out, cwd="/", env=_clean_env("/"),
                pass_fds=(from_box_r, to_box_w), start_new_session=True,
                preexec_fn=lambda: _limit_harness(limits))
        except BaseException:
            os.close(from_box_r)
            os.close(to_box_w)
            _end_box(box, 0)
            raise
        os.close(from_box_r)
        os.close(to_box_w)
        try:
            report, _ = harness.communicate(spec.encode(), timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(harness.pid, signal.SIGKILL)
            report, _ = harness.communicate()
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(harness.pid, signal.SIGKILL)
            harness.wait()
            code, cpu, _ = _end_box(box, 0 if timed_out else 2.0)
        out.seek(0)
        raw = out.read(limits.output_kb * 1024).decode("utf-8", "replace")
    seconds = time.monotonic() - started
    if code == SETUP_FAILED and "testtime-box: setup failed" in raw:
        raise SandboxError(raw.strip().splitlines()[-1])
    return _parse_channel(report.decode("utf-8", "replace"), steps, calls, mode, seconds,
                          code, cpu, timed_out, limits, raw)


def _plain(value: object) -> object:
    from testtime.code import wire

    return wire.to_plain(value)


def _status(mode: Isolation, code: int, cpu: float, timed_out: bool, limits: Limits,
            errors: Sequence[str]) -> str:
    if timed_out:
        return "timeout"
    sig = -code if code < 0 else code - 128 if mode != "process" and code > 128 else 0
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= limits.cpu_seconds):
        return "cpu limit"
    if any(e.startswith("MemoryError") for e in errors):
        return "memory limit"
    if sig:
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        return f"killed ({name})" if sig == signal.SIGKILL else f"crashed ({name})"
    return f"exit {code}" if code else "exited"


def _parse_channel(report: str, steps: list[tuple[str, bool]],
                   calls: list[Any] | None, mode: Isolation, seconds: float, code: int,
                   cpu: float, timed_out: bool, limits: Limits, raw: str) -> RunResult:
    from testtime.code import wire

    loaded = False
    ok: dict[int, bool] = {}
    errors: dict[int, str] = {}
    values: dict[int, Any] = {}
    verdict = "channel"
    for line in report.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        if "unsplittable" in rec:
            verdict = f"shared: {rec['unsplittable']}"
        elif "call" in rec:
            i = int(rec["call"])
            if "value" in rec:
                with contextlib.suppress(wire.Unplain, RecursionError):
                    values[i] = wire.from_plain(rec["value"])
                    ok[i] = True
            else:
                errors[i] = str(rec.get("error", ""))
        elif "step" in rec:
            step, good = int(rec["step"]), rec.get("ok") is True
            if step == -1:
                loaded = good
            else:
                ok[step] = good
            if not good:
                errors[step] = str(rec.get("error", ""))
    if calls is not None:
        passed = tuple(ok.get(i, False) for i in range(len(calls)))
    else:
        passed = tuple(ok.get(i, False) for i, (_, is_test) in enumerate(steps) if is_test)
    status = _status(mode, code, cpu, timed_out, limits, list(errors.values()))
    return RunResult(loaded=loaded, passed=passed, status=status, seconds=seconds, mode=mode,
                     errors=errors, output=raw[-2000:], verdict=verdict, cpu_seconds=cpu,
                     values=tuple(values.get(i) for i in range(len(calls or ()))))


def _run_shared(mode: Isolation, program: str, steps: list[tuple[str, bool]], limits: Limits,
                guard: bool) -> RunResult:
    nonce = secrets.token_hex(16)
    spec = json.dumps({"nonce": nonce, "program": program, "steps": steps, "guard": guard,
                       "processes": limits.processes})
    started = time.monotonic()
    with _workdir(mode) as workdir, tempfile.TemporaryFile() as out:
        box = _start_box(mode, workdir, limits, subprocess.PIPE, out, subprocess.STDOUT)
        try:
            assert box.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                box.stdin.write(spec.encode())
                box.stdin.close()
        finally:
            code, cpu, timed_out = _end_box(
                box, max(0.0, limits.wall_seconds - (time.monotonic() - started)))
        out.seek(0)
        raw = out.read(limits.output_kb * 1024).decode("utf-8", "replace")
    if code == SETUP_FAILED and "testtime-box: setup failed" in raw:
        raise SandboxError(raw.strip().splitlines()[-1])
    loaded = False
    ok: dict[int, bool] = {}
    errors: dict[int, str] = {}
    other: list[str] = []
    for line in raw.splitlines():
        if not line.startswith(nonce):
            other.append(line)
            continue
        try:
            rec = json.loads(line[len(nonce):])
            step, good = int(rec["step"]), rec["ok"] is True
        except (ValueError, KeyError, TypeError):
            continue
        if step == -1:
            loaded = good
        elif 0 <= step < len(steps):
            ok[step] = good
        if not good:
            errors[step] = str(rec.get("error", ""))
    passed = tuple(ok.get(i, False) for i, (_, is_test) in enumerate(steps) if is_test)
    status = _status(mode, code, cpu, timed_out, limits, list(errors.values()))
    return RunResult(loaded=loaded, passed=passed, status=status,
                     seconds=time.monotonic() - started, mode=mode, errors=errors,
                     output="\n".join(other)[-2000:], cpu_seconds=cpu)
