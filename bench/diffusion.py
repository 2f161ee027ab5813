"""Judge score against NFEs on the built-in digits model: more steps vs five searches.

    PYTHONPATH=src python bench/diffusion.py [--select 30] [--report 80] [--base 10]

Every search optimises the MLP verifier; the CNN judge (other half of the data, other seed)
scores the chosen samples. The best search is chosen by its judge gain at 8× the base NFEs on
*selection* seeds and reported on disjoint *report* seeds. Writes docs/img/diffusion-scaling.png
and docs/img/diffusion-hacking.png; the last line is the ratio of judge gain (best search at 8×)
over the gain from spending the same NFEs on more denoising steps, with a 95% interval.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress

from testtime.diffusion.engines import make_engine
from testtime.eval.diffusion import (
    SweepSpec,
    curves,
    markdown,
    plot_curves,
    plot_hacking,
    sweep,
)

SEARCHES = ("steps", "random-search", "zero-order", "paths", "smc", "evolution")
TARGET = 1.5


def gains(records: list[dict], search: str, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Per problem: judge gain of ``search`` at ``top``× and of more steps at ``top``×."""
    def at(s: str, m: int) -> dict[str, float]:
        return {r["problem_id"]: r["judge"] for r in records
                if r["search"] == s and r["multiple"] == m}

    base, steps, found = at("steps", 1), at("steps", top), at(search, top)
    ids = sorted(base)
    return (np.array([found[i] - base[i] for i in ids]),
            np.array([steps[i] - base[i] for i in ids]))


def ratio_ci(a: np.ndarray, b: np.ndarray, reps: int = 2000) -> tuple[float, float]:
    """Paired bootstrap 95% interval of mean(a) / mean(b) over problems."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(a), size=(reps, len(a)))
    num, den = a[idx].mean(1), b[idx].mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(den > 0, num / den, np.inf)
    lo, hi = np.quantile(r, [0.025, 0.975])
    return float(lo), float(hi)


def mean_ci(x: np.ndarray, reps: int = 2000) -> str:
    rng = np.random.default_rng(1)
    m = x[rng.integers(0, len(x), size=(reps, len(x)))].mean(1)
    lo, hi = np.quantile(m, [0.025, 0.975])
    return f"{x.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]"


def main() -> None:
    """Run the sweep on selection and report seeds, pick on one, report on the other."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--select", type=int, default=30, help="selection problems (seeds 0…)")
    ap.add_argument("--report", type=int, default=80, help="report problems (seeds 10000…)")
    ap.add_argument("--base", type=int, default=10, help="steps of the base denoising")
    ap.add_argument("--recipe", default="default", choices=("default", "large"))
    ap.add_argument("--img", type=Path, default=Path("docs/img"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    con = Console(stderr=True)
    engine = make_engine(f"digits:recipe={args.recipe}")
    sampler = engine.sampler("ddpm")
    verifier, judge = engine.verifier("classifier"), engine.verifier("judge")
    spec = SweepSpec(searches=SEARCHES, multiples=(1, 2, 4, 8), base_steps=args.base)
    top = max(spec.multiples)
    runs = {}
    with Progress(console=con) as bar:
        for name, n, seed in (("select", args.select, 0), ("report", args.report, 10000)):
            problems = engine.problems(n, seed)
            job = bar.add_task(f"{name} seeds", total=len(SEARCHES) * 4 * n)
            runs[name] = sweep(engine, sampler, verifier, judge, problems, spec,
                               on_unit=lambda _, job=job: bar.advance(job))
    print(f"digits model ({args.recipe}), DDPM sampler, base {args.base} steps = "
          f"{args.base} NFEs; verifier: MLP classifier (half A); judge: CNN (half B)")
    for name in ("select", "report"):
        print(f"\n## {name} seeds ({len({r['problem_id'] for r in runs[name]})} problems)\n")
        print(markdown(curves(runs[name])))
    picks = {s: gains(runs["select"], s, top)[0].mean() for s in SEARCHES if s != "steps"}
    best = max(picks, key=lambda s: picks[s])
    print(f"\nselection seeds: judge gain at {top}x by search: "
          + ", ".join(f"{s} {g:+.4f}" for s, g in picks.items()) + f" -> best: {best}")
    by = curves(runs["report"])
    plot_curves(by, args.img / "diffusion-scaling.png",
                title=f"digits: judge score vs NFEs (report seeds, n={args.report})")
    plot_hacking(by, args.img / "diffusion-hacking.png")
    g_search, g_steps = gains(runs["report"], best, top)
    print(f"report seeds: judge gain at {top}x base NFEs: {best} {mean_ci(g_search)}; "
          f"more steps ({args.base * top} steps) {mean_ci(g_steps)}")
    print(f"figures: {args.img / 'diffusion-scaling.png'}, {args.img / 'diffusion-hacking.png'}")
    lo, hi = ratio_ci(g_search, g_steps)
    if g_steps.mean() <= 0:
        print(f"ratio of judge gain at {top}x NFEs: undefined — more steps gained "
              f"{g_steps.mean():+.4f} (<= 0) while {best} gained {g_search.mean():+.4f}; "
              f"target >= {TARGET}: not measurable as a ratio")
        return
    ratio = g_search.mean() / g_steps.mean()
    met = "met" if ratio >= TARGET else "MISSED"
    print(f"ratio of judge gain at {top}x NFEs, {best} / more steps: {ratio:.2f} "
          f"(95% CI {lo:.2f}-{hi:.2f}; target >= {TARGET}: {met})")


if __name__ == "__main__":
    main()
