"""Run untrusted Python with tests in an isolated, resource-limited, throw-away process.

Layers, strongest first (see docs/code-verification.md for what each one guarantees):

1. ``namespace`` (root with util-linux ``unshare`` and ``setpriv``): new mount, network, PID,
   IPC and UTS namespaces; fresh tmpfs over /tmp, /var/tmp, /run/lock and /dev/shm; the code
   runs as a fresh unprivileged uid with no capabilities and ``no_new_privs``.
2. ``process`` (always): ``python -I`` in a new session with a scrubbed environment, HOME and
   the working directory in a fresh temporary directory, rlimits on address space, CPU time,
   processes, file size and open files, and a wall-clock limit that kills the process group.
3. An audit hook installed inside the child before the candidate runs, which refuses sockets,
   process creation, signals, ctypes, frame inspection and writes outside the working dir.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
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
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["auto", "namespace", "process"]
HARNESS = (Path(__file__).with_name("harness.py")).read_text(encoding="utf-8")
_SETUP = r"""
set -e
mount --make-rprivate /
for d in /tmp /var/tmp /run/lock /dev/shm; do
  [ -d "$d" ] && mount -t tmpfs -o size="$TT_DISK",mode=1777,nosuid,nodev tmpfs "$d"
done
mkdir -p /tmp/.python /tmp/box
mount --bind -o ro "$TT_PREFIX" /tmp/.python
chown "$TT_UID:$TT_UID" /tmp/box
cd /tmp/box
exec setpriv --reuid="$TT_UID" --regid="$TT_UID" --clear-groups --inh-caps=-all \
  --bounding-set=-all --no-new-privs env -i HOME=/tmp/box TMPDIR=/tmp/box PATH=/usr/bin:/bin \
  LANG=C.UTF-8 "/tmp/.python/$TT_PYTHON" -I -S -c "$TT_HARNESS"
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
    """What one sandboxed run gave: which test steps passed, and how the process ended."""

    loaded: bool
    passed: tuple[bool, ...]
    status: str
    seconds: float
    mode: str
    errors: dict[int, str] = field(default_factory=dict)
    output: str = ""

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


@functools.lru_cache(maxsize=1)
def namespace_available() -> bool:
    """Whether the namespace layer works here (root, unshare, setpriv, and a probe run)."""
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")):
        return False
    if _python_layout() is None:
        return False
    try:
        probe = _run("namespace", "", [("assert 1 + 1 == 2", True)], Limits())
    except (OSError, SandboxError):
        return False
    return probe.all_passed


def resolve_mode(mode: Mode = "auto") -> Literal["namespace", "process"]:
    """The isolation mode a run gets; ``TESTTIME_SANDBOX`` overrides ``auto``."""
    if mode == "auto":
        env = os.environ.get("TESTTIME_SANDBOX", "auto")
        if env not in ("auto", "namespace", "process"):
            raise SandboxError(f"TESTTIME_SANDBOX must be auto, namespace or process, not {env!r}")
        mode = env  # type: ignore[assignment]
    if mode == "auto":
        return "namespace" if namespace_available() else "process"
    if mode == "namespace" and not namespace_available():
        raise SandboxError("namespace sandbox unavailable: needs root, unshare and setpriv")
    return mode


def run_tests(program: str, steps: Sequence[tuple[str, bool]], limits: Limits | None = None,
              mode: Mode = "auto", *, guard: bool = True) -> RunResult:
    """Run ``program`` then each step (``(source, is_test)``) in one namespace, isolated.

    ``guard=False`` leaves out the audit hook, to test what the OS layers hold on their own.

    A test step passes when it raises nothing. A failing setup step (``is_test`` false) stops
    the run; every test not reported as passed (timeout, crash, kill) counts as failed.
    """
    return _run(resolve_mode(mode), program, list(steps), limits or Limits(), guard)


def _limit_resources(limits: Limits) -> None:
    mb = 1024 * 1024
    pairs = [
        (resource.RLIMIT_AS, limits.memory_mb * mb, limits.memory_mb * mb),
        (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),
        (resource.RLIMIT_NPROC, limits.processes, limits.processes),
        (resource.RLIMIT_FSIZE, limits.file_mb * mb, limits.file_mb * mb),
        (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    for which, soft, hard in pairs:
        resource.setrlimit(which, (soft, hard))


def _command(mode: str, workdir: str, limits: Limits) -> tuple[list[str], dict[str, str]]:
    if mode == "process":
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
        return [sys.executable, "-I", "-S", "-c", HARNESS], env
    layout = _python_layout()
    if layout is None:
        raise SandboxError("the Python interpreter is not under its base prefix")
    prefix, python = layout
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TT_PREFIX": str(prefix),
           "TT_PYTHON": python, "TT_HARNESS": HARNESS, "TT_DISK": f"{limits.file_mb * 4}m",
           "TT_UID": str(200_000 + secrets.randbelow(60_000))}
    cmd = ["unshare", "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
           "--mount-proc", "sh", "-c", _SETUP]
    return cmd, env


def _run(mode: str, program: str, steps: list[tuple[str, bool]], limits: Limits,
         guard: bool = True) -> RunResult:
    nonce = secrets.token_hex(16)
    spec = json.dumps({"nonce": nonce, "program": program, "steps": steps, "guard": guard})
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="testtime-box-") as workdir, \
            tempfile.TemporaryFile() as out:
        cmd, env = _command(mode, workdir, limits)
        status = "exited"
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=workdir, env=env,
                                    start_new_session=True, close_fds=True,
                                    preexec_fn=lambda: _limit_resources(limits))
        except OSError as exc:
            raise SandboxError(f"cannot start the sandbox: {exc}") from exc
        try:
            proc.communicate(spec.encode(), timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            status = "timeout"
        except BrokenPipeError:
            pass
        finally:
            _kill_group(proc)
        if status != "timeout" and proc.returncode:
            code = proc.returncode
            status = f"signal {signal.Signals(-code).name}" if code < 0 and -code in \
                signal.valid_signals() else f"exit {code}"
        out.seek(0)
        raw = out.read(limits.output_kb * 1024).decode("utf-8", "replace")
    return _parse(raw, nonce, steps, status, time.monotonic() - started, mode)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _parse(raw: str, nonce: str, steps: list[tuple[str, bool]], status: str, seconds: float,
           mode: str) -> RunResult:
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
            step, good = int(rec["step"]), bool(rec["ok"])
        except (ValueError, KeyError, TypeError):
            continue
        if step == -1:
            loaded = good
        elif 0 <= step < len(steps):
            ok[step] = good
        if not good:
            errors[step] = str(rec.get("error", ""))
    passed = tuple(ok.get(i, False) for i, (_, is_test) in enumerate(steps) if is_test)
    return RunResult(loaded=loaded, passed=passed, status=status, seconds=seconds, mode=mode,
                     errors=errors, output="\n".join(other)[-2000:])
