"""Figures of a sweep: accuracy against compute per strategy, Pareto front, per difficulty."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from testtime.eval.stats import ConfigStats, pareto

STYLE = {
    "majority": ("tab:blue", "o", "-", "self-consistency (majority@k)"),
    "weighted": ("tab:green", "s", "-", "weighted vote@k"),
    "best-of": ("tab:orange", "^", "-", "best-of-k (verifier)"),
    "pass": ("tab:gray", "v", "--", "pass@k (oracle bound)"),
    "adaptive": ("tab:red", "D", "-", "adaptive (policy)"),
    "run": ("black", "*", "", "strategy as run"),
    "early-stop": ("tab:brown", "P", ":", "early-stop (adaptive consistency)"),
    "deepconf": ("tab:purple", "X", ":", "deepconf"),
    "certainty-probe": ("tab:pink", "d", ":", "certainty-probe"),
    "short-m": ("tab:cyan", "h", ":", "short-m@k"),
}
COST_LABEL = {"generated_tokens": "generated tokens per problem (log scale)",
              "flops": "FLOPs per problem (log scale)"}


def short_name(spec: str) -> str:
    """A strategy spec without its sampling and verifier options, for labels."""
    name, _, opts = spec.partition(":")
    keep = [o for o in opts.split(",") if o.split("=")[0] in ("n", "budget", "k")]
    return f"{name}:{','.join(keep)}" if keep else name


def _ticks() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 11, "axes.titlesize": 13, "axes.labelsize": 12,
                         "legend.fontsize": 9})
    return plt


def draw_curves(ax: Any, stats: Sequence[ConfigStats], cost: str, *, label_runs: bool = True,
                front: bool = True, legend: bool = True) -> None:
    """Accuracy against ``cost``: one line per family, runs as stars, the Pareto front."""
    families: dict[str, list[ConfigStats]] = {}
    for s in stats:
        families.setdefault(s.family, []).append(s)
    for fam, rows in families.items():
        color, marker, line, name = STYLE.get(fam, ("tab:purple", "x", "-", fam))
        rows = sorted(rows, key=lambda s: s.mean[cost])
        xs = [max(s.mean[cost], 1e-9) for s in rows]
        ys = [s.accuracy for s in rows]
        err = [[s.accuracy - s.ci["correct"][0] for s in rows],
               [s.ci["correct"][1] - s.accuracy for s in rows]]
        ax.errorbar(xs, ys, yerr=err, color=color, marker=marker, linestyle=line or "none",
                    capsize=3, label=name, markersize=9 if fam == "run" else 6, alpha=0.9)
        if fam == "run" and label_runs:
            for s, x, y in zip(rows, xs, ys, strict=True):
                ax.annotate(short_name(s.config), (x, y), textcoords="offset points",
                            xytext=(-8, -14), fontsize=9, ha="right")
        elif fam == "pass":
            for s, x, y in zip(rows, xs, ys, strict=True):
                ax.annotate(f"k={s.k}", (x, y), textcoords="offset points", xytext=(0, 8),
                            fontsize=8, ha="center", color=color)
    if front:
        real = [s for s in stats if s.family != "pass" and s.mean[cost] > 0]
        pf = pareto(real, cost)
        if pf:
            ax.step([s.mean[cost] for s in pf], [s.accuracy for s in pf], where="post",
                    color="black", linewidth=2.5, alpha=0.3, zorder=0, label="Pareto front")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(_ticks())
    ax.margins(x=0.08)
    ax.set_ylim(-0.02, 1.08)
    ax.set_xlabel(COST_LABEL.get(cost, cost))
    ax.set_ylabel("accuracy (95% bootstrap CI)")
    ax.grid(True, which="both", alpha=0.3)
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def accuracy_figure(stats: Sequence[ConfigStats], cost: str, title: str, path: Path) -> Path:
    """One accuracy-against-compute figure."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11.5, 6))
    draw_curves(ax, stats, cost)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def difficulty_figure(by_bin: Mapping[int, Sequence[ConfigStats]], path: Path, *,
                      edges: dict[int, str]) -> Path:
    """One panel per oracle difficulty bin, same axes for all."""
    plt = _plt()
    n = len(by_bin)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.8), sharey=True, squeeze=False)
    for ax, (b, stats) in zip(axes[0], sorted(by_bin.items()), strict=True):
        draw_curves(ax, stats, "generated_tokens", label_runs=False, front=False,
                    legend=False)
        ax.set_title(f"bin {b}: {edges.get(b, '')}")
        ax.set_xlabel("generated tokens (log)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle("Accuracy against generated tokens per oracle difficulty bin (1 = easiest)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def crossfit_figure(result: Any, path: Path) -> Path:
    """Held-out accuracy against cost of a cross-fit (:class:`testtime.eval.crossfit.CrossFit`):
    the policy and the best fixed configuration per budget, SC@n and greedy decoding, with the
    non-inferiority band under SC@n."""
    plt = _plt()
    ps = result.problems
    fig, ax = plt.subplots(figsize=(8, 5))
    for scores, fam, label in ((result.policy, "adaptive", "adaptive (policy)"),
                               (result.fixed, "weighted", "best fixed configuration")):
        xs = [max(scores[b].mean_cost(ps), 1e-9) for b in result.budgets]
        ys = [scores[b].accuracy(ps) for b in result.budgets]
        color, marker, _, _ = STYLE[fam]
        ax.plot(xs, ys, marker=marker, color=color, label=label)
    sc_acc = result.sc.accuracy(ps)
    ax.axhspan(sc_acc - 0.05, sc_acc, color="tab:blue", alpha=0.1,
               label="within 0.05 of SC@n (the margin)")
    for scores, marker, label in ((result.sc, "o", f"SC@{result.sc_n}"),
                                  (result.greedy, "*", "greedy decoding")):
        ax.plot([max(scores.mean_cost(ps), 1e-9)], [scores.accuracy(ps)], marker=marker,
                color="black", linestyle="", markersize=10, label=label)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_ticks())
    ax.set_xlabel(f"{result.unit} per problem (log scale)")
    ax.set_ylabel("accuracy on held-out folds")
    ax.set_title(f"Cross-fitted: {len(ps)} problems, {result.folds} folds")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

