"""Diffusion sweeps: searches × NFE budgets over a diffusion task, curves, figures, report.

A point is one (search, budget multiple): ``steps`` spends the multiple on more denoising
steps, every other search on more samples at the base step count. Each problem's chosen sample
is scored by the verifier the search saw and by a judge it never saw.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from testtime.budget import Budget
from testtime.diffusion.base import DiffusionProblem, ImageVerifier
from testtime.diffusion.context import DiffusionContext
from testtime.diffusion.engines import Engine
from testtime.diffusion.sampler import Sampler
from testtime.diffusion.searches import make_search
from testtime.eval.stats import bootstrap_ci

STYLE = {"steps": ("black", "o", "--", "more denoising steps"),
         "random-search": ("tab:blue", "s", "-", "random search (best-of-N noises)"),
         "zero-order": ("tab:orange", "^", "-", "zero-order search"),
         "paths": ("tab:green", "D", "-", "search over paths"),
         "smc": ("tab:red", "v", "-", "SMC / FK steering"),
         "evolution": ("tab:purple", "P", "-", "evolutionary search")}


def unit_spec(search: str, multiple: int, base: int) -> str:
    """The spec a search runs at ``multiple`` × the base NFEs."""
    name, _, opts = search.partition(":")
    steps = base * multiple if name == "steps" else base
    extra = f",{opts}" if opts else ""
    return f"{name}:steps={steps}{extra}"


def run_unit(problem: DiffusionProblem, sampler: Sampler, verifier: ImageVerifier,
             judge: ImageVerifier | None, spec: str, budget: Budget) -> dict[str, Any]:
    """One search on one problem, as a flat record with the judge's score."""
    ctx = DiffusionContext(problem, sampler, verifier, budget=budget)
    result = make_search(spec).run(ctx)
    judged = None
    if judge is not None:
        with torch.no_grad():
            judged = float(judge.score(result.tensor()[None], problem)[0])
    u = result.usage
    return {"problem_id": problem.id, "seed": problem.seed, "label": problem.label,
            "prompt": problem.prompt, "strategy": result.strategy,
            "search": spec.partition(":")[0], "verifier": result.score, "judge": judged,
            "nfes": u.nfes, "calls": u.calls, "verifier_passes": u.verifier_passes,
            "flops": u.flops, "flops_known": u.flops_known, "seconds": u.seconds,
            "budget_nfes": budget.nfes, "budget_exhausted": result.budget_exhausted,
            "extra": result.extra}


@dataclass
class SweepSpec:
    """What a diffusion sweep runs: searches, budget multiples of one base denoising."""

    searches: Sequence[str] = ("steps", "random-search", "zero-order", "paths", "smc",
                               "evolution")
    multiples: Sequence[int] = (1, 2, 4, 8)
    base_steps: int = 10


def sweep(engine: Engine, sampler: Sampler, verifier: ImageVerifier,
          judge: ImageVerifier | None, problems: Sequence[DiffusionProblem], spec: SweepSpec,
          on_unit: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Every search at every multiple on every problem; one record each."""
    records = []
    for search in spec.searches:
        for m in spec.multiples:
            unit = unit_spec(search, m, spec.base_steps)
            budget = Budget(nfes=m * spec.base_steps * sampler.passes())
            for problem in problems:
                rec = run_unit(problem, sampler, verifier, judge, unit, budget)
                rec["multiple"] = m
                records.append(rec)
                if on_unit:
                    on_unit(rec)
    return records


@dataclass
class CurvePoint:
    """One search at one multiple: means over problems, with 95% bootstrap intervals."""

    search: str
    multiple: int
    problems: int
    nfes: float
    judge: float | None
    judge_ci: tuple[float, float] | None
    verifier: float
    verifier_ci: tuple[float, float]
    seconds: float
    per_problem: dict[str, float] = field(default_factory=dict)


def curves(records: Sequence[dict[str, Any]]) -> dict[str, list[CurvePoint]]:
    """Per search, its points in order of multiple."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["search"], int(r["multiple"])), []).append(r)
    out: dict[str, list[CurvePoint]] = {}
    for (search, m), rows in sorted(groups.items(), key=lambda kv: kv[0]):
        judged = [r["judge"] for r in rows if r["judge"] is not None]
        ver = [r["verifier"] for r in rows]
        out.setdefault(search, []).append(CurvePoint(
            search=search, multiple=m, problems=len(rows),
            nfes=float(np.mean([r["nfes"] for r in rows])),
            judge=float(np.mean(judged)) if judged else None,
            judge_ci=bootstrap_ci(judged) if judged else None,
            verifier=float(np.mean(ver)), verifier_ci=bootstrap_ci(ver),
            seconds=float(np.mean([r["seconds"] for r in rows])),
            per_problem={r["problem_id"]: r["judge"] for r in rows if r["judge"] is not None}))
    return out


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(by_search: dict[str, list[CurvePoint]], path: Path, *, metric: str = "judge",
                title: str = "") -> Path:
    """Judge (or verifier) score against denoiser NFEs, one line per search, 95% bands."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for search, pts in by_search.items():
        color, marker, line, label = STYLE.get(search, ("tab:gray", "x", "-", search))
        ys = [getattr(p, metric) for p in pts]
        if any(y is None for y in ys):
            continue
        cis = [getattr(p, f"{metric}_ci") for p in pts]
        xs = [p.nfes for p in pts]
        ax.plot(xs, ys, marker=marker, linestyle=line, color=color, label=label)
        ax.fill_between(xs, [c[0] for c in cis], [c[1] for c in cis], color=color, alpha=0.12)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("denoiser NFEs per sample (log scale)")
    ax.set_ylabel(f"{metric} score (mean, 95% CI)")
    ax.set_title(title or f"{metric} score against compute")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_hacking(by_search: dict[str, list[CurvePoint]], path: Path, *, title: str = "") -> Path:
    """Verifier score (what search optimised) beside judge score (held out), per search."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for search, pts in by_search.items():
        color, marker, _, label = STYLE.get(search, ("tab:gray", "x", "-", search))
        xs = [p.nfes for p in pts]
        ax.plot(xs, [p.verifier for p in pts], marker=marker, linestyle="-", color=color,
                label=f"{label}: verifier")
        if all(p.judge is not None for p in pts):
            ax.plot(xs, [p.judge for p in pts], marker=marker, linestyle=":", color=color,
                    alpha=0.8, label=f"{label}: judge")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("denoiser NFEs per sample (log scale)")
    ax.set_ylabel("score (mean)")
    ax.set_title(title or "verifier (searched, solid) vs judge (held out, dotted)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _ci(ci: tuple[float, float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def markdown(by_search: dict[str, list[CurvePoint]]) -> str:
    """A table of every point: NFEs, verifier and judge means with intervals."""
    lines = ["| search | × base | NFEs | verifier | 95% CI | judge | 95% CI | s/problem |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for search, pts in by_search.items():
        for p in pts:
            judge = "-" if p.judge is None else f"{p.judge:.3f}"
            lines.append(f"| {search} | {p.multiple} | {p.nfes:.1f} | {p.verifier:.3f} | "
                         f"{_ci(p.verifier_ci)} | {judge} | {_ci(p.judge_ci)} | "
                         f"{p.seconds:.2f} |")
    return "\n".join(lines)


def write_report(records: Sequence[dict[str, Any]], out: Path, *, title: str) -> dict[str, Path]:
    """records.jsonl, the two figures and report.md in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"records": out / "records.jsonl", "curves": out / "curves.png",
             "hacking": out / "hacking.png", "report": out / "report.md"}
    with files["records"].open("w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    by = curves(records)
    plot_curves(by, files["curves"], title=title)
    plot_hacking(by, files["hacking"])
    files["report"].write_text(
        f"# {title}\n\n![judge vs NFEs](curves.png)\n\n![verifier vs judge](hacking.png)\n\n"
        f"{markdown(by)}\n")
    return files
