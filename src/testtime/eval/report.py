"""The sweep report: markdown summary, per-problem CSV, PNG figures and one HTML page."""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testtime.eval.crossfit import (
    CrossFit,
    CrossFitter,
    complete_problems,
    crossfit_markdown,
    headline,
)
from testtime.eval.curves import Point, all_points
from testtime.eval.difficulty import pass_rates, quantile_bins
from testtime.eval.plots import accuracy_figure, crossfit_figure, difficulty_figure
from testtime.eval.policy import FitRule, fit_policy, simulate
from testtime.eval.stats import METRICS, ConfigStats, summarise_points
from testtime.policy import Policy


def _ci(s: ConfigStats, m: str, fmt: str = "{:.3f}") -> str:
    lo, hi = s.ci[m]
    return f"{fmt.format(s.mean[m])} [{fmt.format(lo)}, {fmt.format(hi)}]"


def markdown_table(stats: Sequence[ConfigStats]) -> str:
    """One row per configuration: accuracy and compute with 95% bootstrap intervals."""
    head = ("| configuration | problems | accuracy [95% CI] | generated tok [95% CI] | prompt tok "
            "| cached tok | verifier tok | stopped traces (tok) | FLOPs | memory bytes | seconds |")
    lines = [head, "|" + "---|" * 11]
    for s in stats:
        lines.append(
            f"| {s.label} | {s.problems} | {_ci(s, 'correct')} | "
            f"{_ci(s, 'generated_tokens', '{:.0f}')} | {s.mean['prompt_tokens']:.0f} | "
            f"{s.mean['cached_tokens']:.0f} | {s.mean['verifier_tokens']:.0f} | "
            f"{s.mean['stopped_traces']:.2f} ({s.mean['stopped_tokens']:.0f}) | "
            f"{s.mean['flops']:.3g} | {s.mean['memory_bytes']:.3g} | {s.mean['seconds']:.1f} |")
    return "\n".join(lines)


@dataclass
class AdaptiveComparison:
    """Adaptive against self-consistency and best-of-N on held-out problems."""

    policy: Policy
    stats: list[ConfigStats]
    rows: list[dict[str, Any]] = field(default_factory=list)
    headline: str = ""
    spans: dict[str, list[str]] = field(default_factory=dict)


def compare_adaptive(records: Sequence[dict[str, Any]], points: Sequence[Point],
                     policy: Policy | None) -> AdaptiveComparison:
    """Replay the policy on its held-out problems next to every fixed configuration."""
    if policy is None:
        policy = fit_policy(records)
    held = set(policy.heldout)
    spans = budget_spans(policy)
    adaptive = [p for b in spans for p in simulate(policy, records, sorted(held), b)]
    base = [p for p in points if p.family in ("majority", "best-of", "weighted", "no-thinking",
                                              "run")
            and not p.config.startswith("adaptive")]
    stats = summarise_points([*base, *adaptive], problems=held)
    sc = [s for s in stats if s.family == "majority"]
    if not sc:
        return AdaptiveComparison(policy, stats, headline="no self-consistency curve to compare")
    full = max(sc, key=lambda s: s.k)
    bon = [s for s in stats if s.family == "best-of" and s.k == full.k]
    comp = AdaptiveComparison(policy, stats, spans=spans)
    stats.sort(key=lambda s: (s.family, _budget_of(s), s.k, s.config))
    for s in (s for s in stats if s.family == "adaptive"):
        matched = min(sc, key=lambda m: abs(m.mean["generated_tokens"]
                                            - s.mean["generated_tokens"]))
        comp.rows.append({
            "adaptive": s, "matched_sc": matched, "sc_full": full,
            "bon_full": bon[0] if bon else None,
            "token_ratio": s.mean["generated_tokens"] / max(full.mean["generated_tokens"], 1e-9),
        })
    reach = [r for r in comp.rows if r["adaptive"].accuracy >= full.accuracy]
    if reach:
        r = reach[0]
        comp.headline = (
            f"On {full.problems} held-out problems, {r['adaptive'].config} reaches "
            f"{r['adaptive'].accuracy:.3f} accuracy (self-consistency@{full.k}: "
            f"{full.accuracy:.3f}) with {r['adaptive'].mean['generated_tokens']:.0f} generated "
            f"tokens per problem against {full.mean['generated_tokens']:.0f}: "
            f"{r['token_ratio']:.2f}× the tokens ({1 / r['token_ratio']:.2f}× fewer).")
    elif comp.rows:
        best = max(comp.rows, key=lambda r: r["adaptive"].accuracy)["adaptive"]
        comp.headline = (
            f"On {full.problems} held-out problems no fitted budget reached "
            f"self-consistency@{full.k}'s accuracy {full.accuracy:.3f}; the best adaptive row "
            f"({best.config}) reached {best.accuracy:.3f}.")
    else:
        comp.headline = "the policy could not be replayed on any held-out problem"
    return comp


def cross_fitted(records: Sequence[dict[str, Any]], policy: Policy | None) -> CrossFit:
    """The policy's cross-fitted evaluation: fitted like ``policy`` at its budgets (else by
    the default rule on the shared grid), every problem scored while held out. ValueError when
    the records cannot be cross-fitted (no 16-sample pool, no greedy run, too few problems)."""
    rule = FitRule() if policy is None else FitRule.of(policy)
    budgets = None if policy is None else [float(b) for b in policy.budgets]
    return CrossFitter(records, lambda train, bs: rule.fit(records, train, bs), unit=rule.unit,
                       prep=rule.prepared(records)).run(complete_problems(records),
                                                        budgets=budgets)


def budget_spans(policy: Policy) -> dict[str, list[str]]:
    """Consecutive budgets that choose the same configurations, keyed by the smallest."""
    spans: dict[str, list[str]] = {}
    last: str | None = None
    for budget, row in policy.budgets.items():
        if last is not None and policy.budgets[last] == row:
            spans[last].append(budget)
        else:
            spans[budget] = [budget]
            last = budget
    return spans


def _budget_of(s: ConfigStats) -> float:
    return float(s.config.split("@")[1]) if s.family == "adaptive" else 0.0


def adaptive_markdown(comp: AdaptiveComparison) -> str:
    """Table of adaptive rows against matched-compute and full self-consistency, best-of-N."""
    lines = ["| adaptive budget | choices per bin (easy→hard) | accuracy [95% CI] | gen tok | "
             "SC at matched tokens | SC@N | BoN@N | tokens / SC@N |", "|" + "---|" * 8]
    for r in comp.rows:
        a, m, f, b = r["adaptive"], r["matched_sc"], r["sc_full"], r["bon_full"]
        budget = a.config.split("@")[1]
        picks = ", ".join(_cell(c.label) for c in comp.policy.budgets[budget])
        span = comp.spans.get(budget, [budget])
        shown = budget if len(span) == 1 else f"{span[0]} to {span[-1]}"
        lines.append(
            f"| {shown} | {picks} | {_ci(a, 'correct')} | {a.mean['generated_tokens']:.0f} | "
            f"{_cell(m.config)}: {m.accuracy:.3f} ({m.mean['generated_tokens']:.0f} tok) | "
            f"{f.accuracy:.3f} ({f.mean['generated_tokens']:.0f} tok) | "
            f"{(f'{b.accuracy:.3f}') if b else '-'} | {r['token_ratio']:.2f} |")
    return "\n".join(lines)


def winners_markdown(policy: Policy) -> str:
    """Per budget (numeric order) the configuration each bin runs, and its family; budgets
    with the same choices share a row."""
    head = " | ".join(f"bin {b}{' (easiest)' if b == 1 else ''}"
                      f"{' (hardest)' if b == policy.bins and b > 1 else ''}"
                      for b in range(1, policy.bins + 1))
    lines = [f"| budget ({policy.unit}) | {head} |", "|" + "---|" * (policy.bins + 1)]
    for first, budgets in budget_spans(policy).items():
        row = policy.budgets[first]
        cells = []
        for b, c in enumerate(row, start=1):
            acc = policy.measured(b, c)
            measured = f" (acc {acc[0]:.2f}, cost {acc[1]:.4g})" if acc else ""
            cells.append(f"**{c.family}**: {_cell(c.label)}{measured}")
        span = budgets[0] if len(budgets) == 1 else f"{budgets[0]} to {budgets[-1]}"
        lines.append(f"| {span} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def describe_feature(policy: Policy, feature: str) -> str:
    """One difficulty feature of ``policy`` in words."""
    drawn = f"{policy.probe_k} samples drawn as {policy.prober_spec}"
    if feature == "agreement":
        return f"agreement of {drawn}"
    if feature == "confidence":
        verifier = policy.probe_verifier or policy.verifier or "confidence"
        return f"mean {verifier} score of {drawn}"
    return "prompt length in the model's tokens"


def describe_score(policy: Policy) -> str:
    """The difficulty score in words: one feature as it is, or the fitted combination."""
    if policy.features and len(policy.features) == 1 and policy.coef == [1.0] \
            and policy.intercept == 0.0:
        return describe_feature(policy, policy.features[0])
    terms = " ".join(f"{c:+.4g}·{f}" for f, c in zip(policy.features, policy.coef, strict=True))
    return f"difficulty score {policy.intercept:.4g} {terms}"


def describe_bins(policy: Policy) -> str:
    """The policy's difficulty bins in words, e.g. ``2 bins by agreement: bin 1 ≥ 0.75, ...``."""
    stat = describe_score(policy)
    combined = stat.startswith("difficulty score")
    where = "; ".join(f"{f}: {describe_feature(policy, f)}" for f in policy.features) \
        if combined else ""
    if combined:
        stat += f" (a logistic fit of training pass rates; higher: easier; {where})"
    chosen = ""
    if policy.feature_sets:
        chosen = "; features chosen by inner folds of the training problems (accuracy at the " \
            "budgets: " + ", ".join(f"{k} {v:.3f}" for k, v in policy.feature_sets.items()) + ")"
    if not policy.edges:
        text = (f"one probe bin: {stat} did not separate the training problems, so no cut "
                "was fitted")
        if policy.feature_cut is None:
            return text + " and every problem gets the same configuration per budget" + chosen
        return (text + f"; split by question length at {policy.feature_cut:.0f} characters "
                "into bin 1 (short) and bin 2 (long)")
    bounds = [float("inf"), *policy.edges, float("-inf")]
    parts = []
    for b in range(1, len(policy.edges) + 2):
        hi, lo = bounds[b - 1], bounds[b]
        if hi == float("inf"):
            parts.append(f"bin {b} (easiest) {stat} ≥ {lo:.3g}")
        elif lo == float("-inf"):
            parts.append(f"bin {b} (hardest) < {hi:.3g}")
        else:
            parts.append(f"bin {b} {lo:.3g} to {hi:.3g}")
    text = f"{len(parts)} bins cut at {', '.join(f'{e:.3g}' for e in policy.edges)}: " + \
        "; ".join(parts)
    if policy.feature_cut is not None:
        text += (f"; each split by question length at {policy.feature_cut:.0f} characters "
                 f"into {policy.bins} bins (probe bin p gives bin 2p-1 when short, 2p when "
                 "long)")
    return text + chosen


def write_per_problem(points: Sequence[Point], path: Path) -> None:
    """Per problem and configuration: expected correctness and cost (averaged over seeds)."""
    groups: dict[tuple[str, str, str, str | None], list[Point]] = {}
    for p in points:
        groups.setdefault((p.problem, p.config, p.backend, p.budget), []).append(p)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["problem", "configuration", "backend", "budget", *METRICS])
        for (prob, config, backend, budget), ps in sorted(groups.items(), key=str):
            w.writerow([prob, config, backend, budget or "",
                        *[round(sum(getattr(p, m) for p in ps) / len(ps), 6) for m in METRICS]])


def build_report(records: Sequence[dict[str, Any]], out: Path, *, title: str = "sweep report",
                 policy: Policy | None = None, bins: int = 3) -> dict[str, Any]:
    """Write report.md, report.html, per_problem.csv and PNGs into ``out``; return a summary."""
    if not records:
        raise ValueError("the store has no finished records to report on")
    out.mkdir(parents=True, exist_ok=True)
    points = all_points(records)
    stats = summarise_points(points)
    files: dict[str, Path] = {}
    files["tokens"] = accuracy_figure(stats, "generated_tokens", "Accuracy against generated "
                                      "tokens", out / "accuracy_tokens.png")
    if any(s.mean["flops"] > 0 for s in stats):
        files["flops"] = accuracy_figure(stats, "flops", "Accuracy against FLOPs",
                                         out / "accuracy_flops.png")
    rates = pass_rates(records)
    oracle = quantile_bins(rates, min(bins, max(len(rates), 1)))
    by_bin, ranges = {}, {}
    for b in sorted(set(oracle.values())):
        members = {p for p, v in oracle.items() if v == b}
        by_bin[b] = [s for s in summarise_points(points, problems=members, reps=300)
                     if s.family != "run"]
        vals = [rates[p] for p in members]
        ranges[b] = f"pass rate {min(vals):.2f}–{max(vals):.2f}, {len(members)} problems"
    if by_bin:
        files["difficulty"] = difficulty_figure(by_bin, out / "accuracy_by_difficulty.png",
                                                edges=ranges)
    write_per_problem(points, out / "per_problem.csv")
    md = [f"# {title}", "", f"{len(records)} records, {len(rates)} problems.", "",
          "## Configurations", "", markdown_table(stats), ""]
    md += ["## Oracle difficulty bins", ""] + [f"- bin {b}: {ranges[b]}" for b in ranges] + [""]
    md += ["## Adaptive policy on held-out problems (cross-fitted)", ""]
    try:
        crossfit = cross_fitted(records, policy)
    except ValueError as exc:
        crossfit_note = f"cross-fitting skipped: {exc}"
        md += [crossfit_note, ""]
    else:
        crossfit_note = f"cross-fitted on {len(crossfit.problems)} held-out problems: " + \
            headline(crossfit)
        md += [*crossfit_markdown(crossfit), ""]
        files["adaptive"] = crossfit_figure(crossfit, out / "adaptive_heldout.png")
    comp: AdaptiveComparison | None = None
    adaptive_note = ""
    if policy is not None and policy.heldout:
        try:
            comp = compare_adaptive(records, points, policy)
        except ValueError as exc:
            adaptive_note = f"adaptive comparison skipped: {exc}"
    if comp is not None:
        held = [s for s in comp.stats]
        files["policy_split"] = accuracy_figure(
            held, "generated_tokens",
            f"Held-out problems ({len(comp.policy.heldout)}): adaptive vs fixed strategies",
            out / "policy_split_heldout.png")
        md += ["## The policy file's own held-out split", "", comp.headline, "",
               f"Difficulty bins: {describe_bins(comp.policy)}. Fitted on "
               f"{len(comp.policy.train)} problems, evaluated on {len(comp.policy.heldout)}; "
               f"budgets count {comp.policy.unit} per problem, probe included.", "",
               "### Which configuration wins per bin at each budget", "",
               winners_markdown(comp.policy), "",
               "### Adaptive against matched compute", "", adaptive_markdown(comp), "",
               "### Every configuration on the held-out problems", "",
               markdown_table(comp.stats), ""]
    elif adaptive_note:
        md += ["## Adaptive policy", "", adaptive_note, ""]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    (out / "report.html").write_text(_html(title, md, files), encoding="utf-8")
    return {"dir": str(out), "files": {k: str(v) for k, v in files.items()},
            "configurations": len(stats), "headline": crossfit_note}


def _html(title: str, md: Sequence[str], files: dict[str, Path]) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render("\n".join(md))
    imgs = "".join(f'<figure><img src="{p.name}" alt="{k}"><figcaption>{k}</figcaption></figure>'
                   for k, p in files.items())
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}"
             "img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>{body}{imgs}</body></html>")
