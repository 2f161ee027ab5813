"""The same sweep on Ray with 1 and then 2 backend replicas: units/s for each, and the speed-up.

Each replica is one actor holding one engine (``--cpus`` CPUs each). The clock starts after
every replica has loaded its model, so the figure is steady-state throughput of the sweep,
not model loading. Each run writes into a fresh result store. The last line is the speed-up.

    TESTTIME_CACHE=/tmp/ttcache python bench/ray_scaling.py --limit 6
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from testtime.distributed.cluster import RayClusterError, node_addresses, ray_session
from testtime.distributed.ray_sweep import run_sweep_ray
from testtime.eval.store import ResultStore
from testtime.eval.sweep import SweepConfig, TaskEntry


def main() -> int:
    """Run the sweep once per actor count and print units/s and the speed-up."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="embedded:smollm2-135m,slots=2,threads=1")
    ap.add_argument("--strategy", default="self-consistency:n=2,max_tokens=32")
    ap.add_argument("--task", default="arith")
    ap.add_argument("--limit", type=int, default=6)
    ap.add_argument("--actors", default="1,2", help="comma-separated replica counts")
    ap.add_argument("--cpus", type=float, default=1.0, help="CPUs Ray reserves per replica")
    ap.add_argument("--address", default=None, help="Ray address; default: local, loopback")
    args = ap.parse_args()
    try:
        counts = [int(x) for x in args.actors.split(",")]
    except ValueError:
        ap.error(f"--actors must be integers separated by commas, got {args.actors!r}")
    if args.limit < 1 or not counts or min(counts) < 1:
        ap.error("--limit and every --actors count must be at least 1")
    os.environ.setdefault("TESTTIME_CACHE", "/tmp/ttcache")
    config = SweepConfig(tasks=[TaskEntry(spec=args.task, limit=args.limit)],
                         strategies=[args.strategy], backends=[args.backend], store="unused")
    rates: dict[int, float] = {}
    try:
        with ray_session(args.address, num_cpus=int(max(counts) * args.cpus + 0.999)):
            print(f"ray nodes at {node_addresses()}; backend {args.backend}; "
                  f"{args.limit} units of {args.strategy}", flush=True)
            for k in counts:
                with tempfile.TemporaryDirectory() as tmp, \
                        ResultStore(Path(tmp) / "bench.db") as store:
                    report = run_sweep_ray(config, store=store, actors=k, num_cpus=args.cpus,
                                           progress=False)
                if report.failed:
                    print(f"actors={k}: {report.failed} units failed: "
                          f"{next(iter(report.failures.values()))}", file=sys.stderr)
                    return 1
                rates[k] = report.units_per_second
                print(f"actors={k} units={report.written} seconds={report.seconds:.2f} "
                      f"units/s={rates[k]:.3f}", flush=True)
    except (RayClusterError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    base, top = min(counts), max(counts)
    print(f"speed-up {top} vs {base} actors: {rates[top] / rates[base]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
