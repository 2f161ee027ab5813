"""Hostile and reward-hacking candidates, run as root and as an unprivileged user.

Each run starts a fresh verifier process (tests/code/hostile_scenario.py) with a secret in
its real environment, a loopback listener waiting and a world-writable directory to attack.
Every cheating candidate must score 0 and grade incorrect, also with the audit hook off; the
secret must never come back; the listener must see no connection; and no process, file or
directory the candidates made may outlive the run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

SCENARIO = Path(__file__).with_name("hostile_scenario.py")
SRC = Path(__file__).parents[2] / "src"
NOBODY = 65534
MARKERS = (b"sleep\x0031337", b"sleep 31338", b"sleep\x0031338", b"sleep\x0031339",
           b"Plain data across the sandbox's channel")


class Listener:
    """A loopback TCP listener that counts every connection it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.close()


def leftovers() -> list[str]:
    """Command lines of processes a hostile run may have left anywhere on the machine."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if any(m in cmd for m in MARKERS):
                found.append(cmd[:80].decode(errors="replace"))
    return found


def box_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("testtime-box-*")}


def site_packages() -> list[str]:
    return [p for p in sys.path if p.endswith("site-packages")]


def unprivileged_python() -> str | None:
    """An interpreter uid 65534 can run (and start again from itself), if there is one."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for exe in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if not os.path.exists(exe):
            continue
        probe = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", exe, "-c",
             "import subprocess, sys; subprocess.run([sys.executable, '-c', 'pass'], check=True)"],
            capture_output=True, cwd="/", timeout=30, check=False)
        if probe.returncode == 0:
            return exe
    return None


def run_scenario(user: str, listener: Listener, target: Path, secret: str) -> dict:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOSTILE_TEST_SECRET": secret,
           "PYTHONPATH": os.pathsep.join([str(SRC), *site_packages()])}
    python = sys.executable
    prefix: list[str] = []
    if user == "unprivileged" and os.geteuid() == 0:
        found = unprivileged_python()
        if found is None or not shutil.which("setpriv"):
            pytest.skip("no interpreter that uid 65534 can run")
        python = found
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    proc = subprocess.run([*prefix, python, str(SCENARIO), str(listener.port), str(target),
                           secret], capture_output=True, env=env, cwd="/", timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("user", ["root", "unprivileged"])
def test_hostile_candidates_are_contained_and_score_zero(user: str, listener: Listener) -> None:
    if user == "root" and os.geteuid() != 0:
        pytest.skip("needs root")
    secret = f"hunter2-{os.getpid()}-{user}"
    before = box_dirs()
    target = Path(tempfile.mkdtemp(prefix="testtime-hostile-"))
    target.chmod(0o777)
    try:
        result = run_scenario(user, listener, target, secret)
        written = sorted(p.name for p in target.iterdir())
        outside = list(target.parent.glob(f"{target.name}-home.txt"))
    finally:
        shutil.rmtree(target, ignore_errors=True)
    assert result["euid"] == (0 if user == "root" else NOBODY)
    assert result["mode"] == ("namespace" if user == "root" else "userns")
    attacks = result["attacks"]
    honest = attacks.pop("honest")
    assert honest["score"] == 1.0 and honest["correct"] and honest["bare_passed"]
    assert len(attacks) == 15
    for name, got in attacks.items():
        assert got["score"] == 0.0, (name, got)
        assert got["correct"] is False, (name, got)
        assert got["bare_passed"] is False, (name, got)
        assert not got["leak"], (name, got)
        assert got["bare_verdict"] == "channel", (name, got)
    assert secret not in json.dumps(result)
    assert "LEAK []" in attacks["proc_environ"]["bare_output"]
    spawned = [int(w) for w in attacks["three_hundred_processes"]["bare_output"].split()
               if w.isdigit()]
    assert spawned and spawned[0] < 300
    assert attacks["infinite_loop"]["bare_status"] == "cpu limit"
    assert attacks["cpu_burn_in_call"]["bare_status"] == "cpu limit"
    assert "cpu limit" in attacks["cpu_burn_in_call"]["detail"]
    assert attacks["memory_bomb"]["bare_status"] == "memory limit"
    assert listener.connections == 0
    assert written == [] and outside == []
    assert leftovers() == []
    assert box_dirs() <= before
