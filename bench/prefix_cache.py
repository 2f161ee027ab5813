"""How much of beam search's prompt the embedded engine serves from its prompt cache.

Runs step-level beam search (confidence as the process scorer) on ``arith`` problems
concurrently, twice in one run: with llama.cpp choosing each call's slot itself
(``affinity=false``), then with testtime's slot affinity (the default). It prints per-problem
usage and wall time for both, then, as its last line, the share of prompt tokens that llama.cpp
reported as cached (``timings.cache_n``) at the defaults. Children of a beam continue its
prompt byte for byte, so everything but the newest step should come from the cache.

    python bench/prefix_cache.py --problems 3 --n 8 --width 4
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from testtime.backends.embedded import EmbeddedBackend
from testtime.eval.runner import solve
from testtime.strategies import make_strategy
from testtime.tasks.arith import ArithTask
from testtime.types import Usage
from testtime.verifiers import make_verifier


def parse(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--problems", type=int, default=3)
    ap.add_argument("--level", default="1")
    ap.add_argument("--n", type=int, default=8, help="beams alive per step (N)")
    ap.add_argument("--width", type=int, default=4, help="children per beam (M)")
    ap.add_argument("--step-tokens", type=int, default=32)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--engine", default="", metavar="OPTS",
                    help="more embedded backend options, e.g. similarity=0.5")
    args = ap.parse_args(argv)
    if args.problems < 1 or args.n < 1 or not 1 <= args.width <= args.n:
        ap.error("need problems >= 1 and 1 <= width <= n")
    return args


async def search(args: argparse.Namespace, options: dict[str, str]) -> float:
    """Run the search on a fresh engine and return the cached share of prompt tokens."""
    backend = EmbeddedBackend(model=args.model, slots=max(args.n, 4), ctx=1024,
                              threads=args.threads, **options)
    await backend.ready()
    spec = (f"beam:n={args.n},width={args.width},max_tokens={args.step_tokens},"
            f"max_depth={args.depth}")
    problems = ArithTask(level=args.level).problems(args.problems)
    started = time.monotonic()
    results = await asyncio.gather(*(
        solve(p, make_strategy(spec), backend, verifier=make_verifier("confidence"), spec=spec)
        for p in problems))
    wall = time.monotonic() - started
    print(f"spec {spec}  model {args.model} {args.engine}  problems {len(problems)}  "
          f"wall {wall:.1f}s")
    for p, r in zip(problems, results, strict=True):
        u = r.usage
        print(f"{p.id}: answer={r.answer!r} reference={p.reference} calls={u.calls} "
              f"prompt={u.prompt_tokens} cached={u.cached_tokens} generated={u.generated_tokens}")
    total = Usage.total([r.usage for r in results])
    share = total.cached_tokens / total.prompt_tokens if total.prompt_tokens else 0.0
    print(f"total: calls={total.calls} prompt={total.prompt_tokens} "
          f"cached={total.cached_tokens} generated={total.generated_tokens}")
    print(f"cached prompt share: {share:.3f}", flush=True)
    await backend.close()
    return share


async def main(args: argparse.Namespace) -> float:
    """Search with the engine's own slot choice, then at the defaults; the defaults' share."""
    options = dict(kv.split("=", 1) for kv in args.engine.split(",") if kv)
    own = await search(args, {**options, "affinity": "false"})
    share = await search(args, options)
    print(f"engine's own slot choice {own:.3f}, slot affinity {share:.3f}")
    print(f"cached prompt share at the defaults: {share:.3f}")
    return share


if __name__ == "__main__":
    try:
        asyncio.run(main(parse(sys.argv[1:])))
    except KeyboardInterrupt:
        sys.exit(130)
