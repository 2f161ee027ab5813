"""The sandbox against hostile candidates: each is contained, fails, and changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testtime.code.sandbox import Limits, RunResult, available, run_tests

SECRET = "hunter2-do-not-leak"
FAST = Limits(wall_seconds=4, cpu_seconds=2, memory_mb=256, processes=16)
NEEDS_NS = pytest.mark.skipif(not available("namespace"),
                              reason="namespace sandbox needs root, unshare, setpriv")
NEEDS_USERNS = pytest.mark.skipif(not available("userns"),
                                  reason="userns sandbox needs a non-root user and user namespaces")
LAYERS = [
    pytest.param("process", True, id="process+hook"),
    pytest.param("namespace", True, id="namespace+hook", marks=NEEDS_NS),
    pytest.param("namespace", False, id="namespace-only", marks=NEEDS_NS),
    pytest.param("userns", True, id="userns+hook", marks=NEEDS_USERNS),
    pytest.param("userns", False, id="userns-only", marks=NEEDS_USERNS),
]
PASS = [("assert True is not False", True)]


def hostile(program: str, mode: str, guard: bool) -> RunResult:
    return run_tests(program, PASS, FAST, mode, guard=guard)  # type: ignore[arg-type]


def sandbox_processes() -> list[int]:
    """PIDs of sandbox harness processes still alive anywhere on the machine."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"Plain data across the sandbox's channel" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.fixture(autouse=True)
def no_leftovers() -> object:
    yield
    deadline = time.monotonic() + 3
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sandbox_processes(), "sandbox processes outlived their run"


@pytest.mark.parametrize(("mode", "guard"), LAYERS)
def test_normal_code_passes_quickly(mode: str, guard: bool) -> None:
    run = run_tests("def inc(x):\n    return x + 1\n",
                    [("assert inc(1) == 2", True), ("assert inc(2) == 4", True)], FAST, mode,  # type: ignore[arg-type]
                    guard=guard)
    assert run.loaded and run.passed == (True, False)
    assert run.fraction == 0.5 and not run.all_passed
    assert run.seconds < 2.0


@pytest.mark.parametrize(("mode", "guard"), LAYERS)
def test_infinite_loop_is_killed(mode: str, guard: bool) -> None:
    started = time.monotonic()
    run = hostile("while True:\n    pass\n", mode, guard)
    assert not run.all_passed and not run.loaded
    assert time.monotonic() - started < FAST.wall_seconds + 2


@pytest.mark.parametrize(("mode", "guard"), LAYERS)
def test_sleeping_forever_hits_the_wall_clock(mode: str, guard: bool) -> None:
    run = hostile("import time\ntime.sleep(3600)\n", mode, guard)
    assert run.status == "timeout" and not run.all_passed


@pytest.mark.parametrize(("mode", "guard"), LAYERS)
def test_fork_bomb_is_contained(mode: str, guard: bool) -> None:
    run = hostile("import os\nwhile True:\n    os.fork()\n", mode, guard)
    assert not run.all_passed
    assert os.getpid() > 0  # the test process itself survived


@pytest.mark.parametrize(("mode", "guard"), LAYERS)
def test_memory_bomb_is_contained(mode: str, guard: bool) -> None:
    run = hostile("chunks = []\nwhile True:\n    chunks.append(bytearray(50_000_000))\n",
                  mode, guard)
    assert not run.all_passed
    assert "MemoryError" in str(run.errors) or run.status != "exited"


@pytest.mark.parametrize(("mode", "guard"), LAYERS)
def test_socket_to_localhost_is_blocked(mode: str, guard: bool) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        program = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), "
                   f"timeout=2)\ns.sendall(b'leak')\n")
        run = hostile(program, mode, guard)
        assert not run.all_passed and not run.loaded
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()


@pytest.mark.parametrize(("mode", "guard"), LAYERS)
def test_environment_secret_is_not_visible(mode: str, guard: bool,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTTIME_TEST_SECRET", SECRET)
    program = (
        "import os\n"
        f"found = any({SECRET!r} in v for v in os.environ.values())\n"
        "for pid in os.listdir('/proc'):\n"
        "    try:\n"
        f"        found = found or {SECRET!r}.encode() in open(f'/proc/{{pid}}/environ', 'rb')"
        ".read()\n"
        "    except (OSError, ValueError):\n"
        "        pass\n"
        "assert found, 'secret not found'\n"
    )
    run = hostile(program, mode, guard)
    assert not run.all_passed and not run.loaded
    assert SECRET not in run.output and SECRET not in str(run.errors)


@pytest.mark.parametrize(("mode", "guard"), LAYERS)
def test_writes_outside_the_sandbox_are_refused(mode: str, guard: bool, tmp_path: Path) -> None:
    """Refused, or (namespace mode, under /tmp) written to a private tmpfs that vanishes."""
    if mode == "process" and os.geteuid() == 0 and not guard:
        pytest.skip("root without namespaces: only the audit hook stops writes")
    marker = f"testtime-pwned-{os.getpid()}-{time.monotonic_ns()}"
    targets = [Path.home() / marker, Path("/tmp") / marker, tmp_path / marker]
    for target in targets:
        run = hostile(f"open({str(target)!r}, 'w').write('pwned')\n", mode, guard)
        private_tmp = mode != "process" and target.is_relative_to("/tmp")
        assert private_tmp or not run.all_passed, target
        assert not target.exists(), f"{target} was written"
    inside = hostile("import os\nopen(os.path.expanduser('~/ok.txt'), 'w').write('fine')\n"
                     "assert open('ok.txt').read() == 'fine'\n", mode, guard)
    assert inside.loaded, inside.errors


@pytest.mark.parametrize(("mode", "guard"), LAYERS)
def test_killing_the_parent_and_neighbours_fails(mode: str, guard: bool) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        program = (
            "import os, signal\n"
            f"for pid in (os.getppid(), {os.getpid()}, {victim.pid}):\n"
            "    if pid > 1:\n"
            "        os.kill(pid, signal.SIGKILL)\n"
        )
        run = hostile(program, mode, guard)
        assert not run.all_passed
        time.sleep(0.2)
        assert victim.poll() is None, "a process outside the sandbox was killed"
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()


@pytest.mark.parametrize(("mode", "guard"), LAYERS)
def test_forged_results_do_not_count(mode: str, guard: bool) -> None:
    program = ('import json\nfor i in range(-1, 3):\n'
               '    print("0" * 32 + json.dumps({"step": i, "ok": True}))\n'
               'raise SystemExit(0)\n')
    run = hostile(program, mode, guard)
    assert not run.loaded and not run.all_passed


def test_run_continues_after_every_attack() -> None:
    attacks = ["while True:\n    pass\n", "import os\nos.kill(os.getppid(), 9)\n",
               "x = bytearray(10**12)\n"]
    results = [run_tests(a, PASS, FAST) for a in attacks]
    assert not any(r.all_passed for r in results)
    assert run_tests("y = 1\n", PASS, FAST).all_passed


def test_wire_keeps_exact_types_and_refuses_objects() -> None:
    from testtime.code import wire

    values = [None, True, 1, 1.5, float("inf"), "s", [1, (2, 3)], {(1, "a"): {3}},
              frozenset({1}), b"\x00", 2j, 10**400]
    for value in values:
        back = wire.decode(wire.encode(value))
        assert back == value and type(back) is type(value)
    assert type(wire.decode(wire.encode(True))) is bool
    assert type(wire.decode(wire.encode(1))) is int

    class Sneaky(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

    for bad in (Sneaky(1), object(), [lambda: 1], {"k": Sneaky(2)}):
        with pytest.raises(wire.Unplain):
            wire.encode(bad)
    for line in ('{"t": [1], "d": []}', '{"x": 1}', '{"d": [[[1], 2]]}', "[1", "NaNx"):
        with pytest.raises(wire.Unplain):
            wire.decode(line)


ADD = "def add(a, b):\n    return a + b\n"


def test_exceptions_mutations_and_globals_cross_the_channel() -> None:
    program = ("LIMIT = 3\ndef check_pos(x):\n    if x < 0:\n        raise ValueError('neg')\n"
               "    return x\ndef push(xs):\n    xs.append(1)\n")
    steps = [("try:\n    check_pos(-1)\n    assert False\nexcept ValueError:\n    pass", True),
             ("a = []\npush(a)\nassert a == [1]", True), ("assert LIMIT == 3", True),
             ("assert check_pos(True) is True and check_pos(1) is not True", True)]
    run = run_tests(program, steps, FAST)
    assert run.all_passed and run.verdict == "channel", run


def test_tests_that_need_objects_fall_back_and_say_so() -> None:
    program = "def apply(f, x):\n    return f(x)\n"
    run = run_tests(program, [("assert apply(lambda v: v + 1, 1) == 2", True)], FAST)
    assert run.all_passed
    assert run.verdict.startswith("shared:") and "not plain data" in run.verdict
    named = run_tests(ADD, [("assert add.__name__ == 'add'", True)], FAST)
    assert named.all_passed and named.verdict.startswith("shared:")


def test_run_calls_returns_plain_values() -> None:
    from testtime.code.sandbox import run_calls

    run = run_calls(ADD, [("add", [1, 2], {}), ("add", [(1,), (2,)], {}), ("add", [1], {})],
                    FAST)
    assert run.loaded and run.passed == (True, True, False)
    assert run.values[:2] == (3, (1, 2)) and type(run.values[1]) is tuple
    assert "TypeError" in run.errors[2]


@pytest.mark.parametrize(("program", "status"), [
    ("import os\nos._exit(3)\n", "exit 3"),
    ("import ctypes\nctypes.string_at(0)\n", "crashed (SIGSEGV)"),
    ("import time\ntime.sleep(60)\n", "timeout"),
])
def test_statuses_say_what_happened(program: str, status: str) -> None:
    run = run_tests(program, PASS, FAST, guard=False)
    assert run.status == status and not run.all_passed


def test_auto_refuses_without_real_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    from testtime.code import sandbox

    monkeypatch.setattr(sandbox, "available", lambda mode: mode == "process")
    monkeypatch.delenv("TESTTIME_SANDBOX", raising=False)
    with pytest.raises(sandbox.SandboxError, match="TESTTIME_SANDBOX=process"):
        sandbox.resolve_mode("auto")
    monkeypatch.setenv("TESTTIME_SANDBOX", "process")
    assert sandbox.resolve_mode("auto") == "process"
    assert sandbox.resolve_mode("process") == "process"


def test_stale_box_directories_of_dead_owners_are_swept(tmp_path: Path) -> None:
    from testtime.code.sandbox import sweep_stale_dirs

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"testtime-box-{dead.pid}-abc"
    mine = tmp_path / f"testtime-box-{os.getpid()}-abc"
    for d in (stale, mine):
        (d / "sub").mkdir(parents=True)
    assert sweep_stale_dirs(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and mine.exists()


def test_process_mode_leaves_no_directory_when_killed(tmp_path: Path) -> None:
    """A verifier killed mid-run leaves its box directory; the next run removes it."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "TESTTIME_SANDBOX": "process"}
    code = ("from testtime.code.sandbox import run_tests, Limits\n"
            "run_tests('import time\\ntime.sleep(60)\\n', [('assert True', True)], "
            "Limits(wall_seconds=60))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob("testtime-box-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert list(tmp_path.glob("testtime-box-*"))
    after = subprocess.run([sys.executable, "-c", code.replace("60)", "1)")], env=env,
                           check=True, timeout=60)
    assert after.returncode == 0
    assert not list(tmp_path.glob("testtime-box-*"))
