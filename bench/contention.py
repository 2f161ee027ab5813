"""How the embedded engine shares a busy machine: self-consistency tokens/s alone vs beside a
CPU-bound process pinned to one core, in one run.

Phase 1 runs ``self-consistency`` over arith problems alone; phase 2 runs the same amount of
work on other problems of the same levels while a busy-looping process holds one core (pinned
with ``sched_setaffinity``). The last line is phase 2's generated tokens/s over phase 1's: with
one of C cores taken, (C-1)/C is ideal (0.5 on 2 cores). llama.cpp's threads meet at a
barrier after every operation, so a thread that shares its core with another process holds
all the others up; spinning threads (a high ``poll``) make it worse. At its defaults the engine
is governed: it notices the competitor within seconds and is rebuilt with fewer threads (the
thread counts and rebuilds are printed per phase); ``threads=N`` fixes the count instead.

    python bench/contention.py --backend embedded:qwen2.5-coder-0.5b --problems 8
    python bench/contention.py --backend embedded:qwen2.5-coder-0.5b,poll=50  # the old default
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

from testtime.backends.base import make_backend
from testtime.backends.threads import cores
from testtime.eval.runner import run_problems
from testtime.strategies import make_strategy
from testtime.tasks.arith import ArithTask

SPIN = "import os; os.sched_setaffinity(0, {%d}); exec('while True: pass')"


def parse(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="embedded:qwen2.5-coder-0.5b,slots=16")
    ap.add_argument("--strategy", default="self-consistency:n=8,max_tokens=96")
    ap.add_argument("--problems", type=int, default=8, help="problems per phase")
    ap.add_argument("--level", default="2+3+4")
    ap.add_argument("--core", type=int, default=None,
                    help="core the competitor is pinned to (default: the last one)")
    args = ap.parse_args(argv)
    if args.problems < 1:
        ap.error("--problems must be >= 1")
    return args


async def phase(backend: object, spec: str, problems: list, label: str) -> float:
    """Solve ``problems`` and return generated tokens per second of wall time."""
    records, wall = await run_problems(problems, make_strategy(spec), backend,
                                       spec=spec, concurrency=len(problems))
    tokens = sum(r["usage"]["generated_tokens"] for r in records)
    errors = sum(1 for r in records if r.get("error"))
    print(f"{label}: {tokens} tokens in {wall:.1f} s = {tokens / wall:.1f} tok/s  "
          f"(engine threads now {getattr(backend, 'threads', '?')}, "
          f"rebuilds so far {getattr(backend, 'rebuilds', 0)})"
          f"{f'  ({errors} errors)' if errors else ''}", flush=True)
    return tokens / wall


async def main(args: argparse.Namespace) -> float:
    """Run both phases and return the ratio."""
    backend = make_backend(args.backend)
    await backend.ready()
    task = ArithTask(level=args.level)
    warm, alone_set, busy_set = (task.problems(args.problems, seed=s) for s in (101, 102, 103))
    core = args.core if args.core is not None else max(os.sched_getaffinity(0))
    print(f"backend {args.backend} (threads {getattr(backend, 'threads', '?')})  "
          f"strategy {args.strategy}  problems {args.problems}/phase  cores {cores()}  "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    await phase(backend, args.strategy, warm[:2], "warm-up")
    alone = await phase(backend, args.strategy, alone_set, "alone")
    spin = subprocess.Popen([sys.executable, "-c", SPIN % core])
    try:
        time.sleep(0.5)
        busy = await phase(backend, args.strategy, busy_set,
                           f"beside a busy loop pinned to core {core}")
    finally:
        spin.kill()
        spin.wait()
    await backend.close()
    ratio = busy / alone
    print(f"ratio busy/alone tokens/s: {ratio:.3f}")
    return ratio


if __name__ == "__main__":
    try:
        asyncio.run(main(parse(sys.argv[1:])))
    except KeyboardInterrupt:
        sys.exit(130)
