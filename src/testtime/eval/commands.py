"""CLI commands of the eval layer, added to the main `testtime` app."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperCommand

from testtime.cli_errors import USER_ERRORS, err, fail
from testtime.eval.store import ResultStore
from testtime.eval.sweep import SweepConfig, SweepReport, expand, load_config, run_sweep

SWEEP_HELP = ("Run a sweep (tasks × strategies × budgets × seeds × backends); resumes where it "
              "stopped.")
RemoteSweep = Callable[[SweepConfig, ResultStore, str | None], SweepReport]
"""Runs a sweep on a cluster at an address (None: a local one); given by a layer above."""


def sweep_command(remote: RemoteSweep | None) -> Callable[..., None]:
    """The ``sweep`` command; ``--ray`` runs it through ``remote`` (absent: not offered)."""

    def sweep(
        config: Annotated[Path, typer.Argument(help="sweep config (.yaml, .yml or .toml)")],
        ray: Annotated[str | None, typer.Option(
            "--ray", help="run on Ray; optional cluster ADDRESS ('local' starts one here)",
            metavar="[ADDRESS]")] = None,
        store: Annotated[Path | None, typer.Option(help="result store; default: the config's")]
        = None,
        quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    ) -> None:
        """Run a sweep; its help is ``SWEEP_HELP``."""
        run_sweep_command(config, ray, store, quiet, remote)

    return sweep


def run_sweep_command(config: Path, ray: str | None, store: Path | None, quiet: bool,
                      remote: RemoteSweep | None) -> None:
    """Run the sweep in ``config`` locally, or with ``ray`` set through ``remote``."""
    try:
        cfg = load_config(config)
        the_store = ResultStore(store or cfg.store)
    except USER_ERRORS as exc:
        fail(str(exc))
    try:
        if ray is not None:
            if remote is None:
                fail("--ray needs the Ray executor (testtime.distributed)")
            report = remote(cfg, the_store, None if ray == "local" else ray)
        else:
            err.print(f"{len(expand(cfg))} units in {config.name}; store {the_store.path}",
                      highlight=False)
            report = asyncio.run(run_sweep(cfg, store=the_store, progress=not quiet))
    except ImportError as exc:
        fail(f"--ray needs the Ray executor and ray installed (pip install 'testtime[ray]'): "
             f"{exc}")
    except USER_ERRORS as exc:
        fail(str(exc))
    finally:
        the_store.close()
    summary = report.as_dict()
    sys.stdout.write(json.dumps(summary) + "\n")
    if summary.get("errors"):
        err.print(f"[red]{summary['errors']} units failed[/]; first: "
                  f"{escape(str(summary.get('first_error')))}", highlight=False)
        raise typer.Exit(1)


def export_cmd(
    store: Annotated[Path, typer.Argument(help="result store (SQLite) of a sweep")],
    out: Annotated[Path, typer.Option(help="output file: .csv or .parquet")],
    errors: Annotated[bool, typer.Option(help="include failed units")] = False,
) -> None:
    """Export a sweep's records, one row per (problem, configuration), to CSV or Parquet."""
    from testtime.eval.export import export

    try:
        with ResultStore(store, create=False) as s:
            n = export(s.records(include_errors=errors), out)
    except USER_ERRORS as exc:
        fail(str(exc))
    typer.echo(f"{n} rows → {out}")


class _OptionalRayAddress(TyperCommand):
    """Lets ``--ray`` stand alone: a bare ``--ray`` means a local Ray cluster."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Insert ``local`` after a ``--ray`` not followed by an address."""
        out = list(args)
        for i, a in enumerate(out):
            nxt = out[i + 1] if i + 1 < len(out) else None
            if a == "--ray" and (nxt is None or nxt.startswith("-")
                                 or nxt.endswith((".yaml", ".yml", ".toml"))):
                out.insert(i + 1, "local")
                break
        return super().parse_args(ctx, out)


def report_cmd(
    store: Annotated[Path, typer.Argument(help="result store (SQLite) of a sweep")],
    out: Annotated[Path | None, typer.Option(help="report directory; default: STORE's name")]
    = None,
    policy: Annotated[Path | None, typer.Option(
        help="policy.json from fit-policy (default: fit one on the store's training split)")]
    = None,
    bins: Annotated[int, typer.Option(min=1, help="oracle difficulty bins")] = 3,
    title: Annotated[str | None, typer.Option(help="report title")] = None,
) -> None:
    """Write an HTML report, PNG figures, a markdown summary and per-problem CSV for a sweep."""
    from testtime.eval.report import build_report
    from testtime.policy import load_policy

    target = out or store.with_suffix("").with_name(store.stem + "-report")
    try:
        with ResultStore(store, create=False) as s:
            records = s.records()
        the_policy = load_policy(str(policy)) if policy else None
        summary = build_report(records, target, title=title or f"sweep report: {store.name}",
                               policy=the_policy, bins=bins)
    except USER_ERRORS as exc:
        fail(str(exc))
    typer.echo((target / "report.md").read_text(encoding="utf-8"))
    typer.echo(f"\nreport: {target / 'report.html'}")
    for path in summary["files"].values():
        typer.echo(f"figure: {path}")


def fit_policy_cmd(
    store: Annotated[Path, typer.Argument(help="result store (SQLite) of a sweep")],
    out: Annotated[Path, typer.Option(help="where to write the policy JSON")] = Path(
        "policy.json"),
    probe_k: Annotated[int, typer.Option(min=1, help="probe samples")] = 2,
    bins: Annotated[int, typer.Option(min=1, help="predicted difficulty bins")] = 3,
    features: Annotated[str, typer.Option(
        help="difficulty features, comma-separated, of agreement, confidence, prompt_tokens; "
             "auto: the set inner folds of the training problems pick")] = "auto",
    budgets: Annotated[str | None, typer.Option(
        help="comma-separated budgets per problem in --unit (default: shares of the most "
             "expensive sampling configuration's cost, from costs alone)")] = None,
    unit: Annotated[str, typer.Option(
        help="what a budget counts: tokens (generated + verifier), flops or seconds")]
    = "tokens",
    folds: Annotated[int, typer.Option(min=2, help="cross-fitting folds of the evaluation")]
    = 5,
    inner: Annotated[int, typer.Option(
        min=0, help="inner folds choosing each fold's headline budget (0: the largest)")] = 4,
    seed: Annotated[int, typer.Option(help="fold assignment seed")] = 0,
    prior: Annotated[float | None, typer.Option(
        min=0.0, help="pseudo-problems shrinking each bin's accuracies toward all problems' "
        "[default: 4]")] = None,
    probe: Annotated[str | None, typer.Option(
        help="spec the probe draws like, e.g. no-thinking:max_tokens=16 (its pool must be in "
             "the sweep) [default: the pool with the cheapest samples]")] = None,
) -> None:
    """Fit, per difficulty bin and budget, the best configuration of every strategy the sweep
    ran (sampling at each k, early-stop, beam, revision, ...) on every problem; write policy
    JSON; then judge the same fit rule by cross-fitting (each problem scored once while held
    out, paired intervals against SC@16 and greedy decoding)."""
    from testtime.eval.crossfit import (
        CrossFitter,
        budget_grid,
        complete_problems,
        headline,
        report_lines,
    )
    from testtime.eval.policy import PRIOR, FitRule
    from testtime.policy import FEATURES

    chosen = None if features == "auto" else tuple(f.strip() for f in features.split(","))
    if chosen is not None and (not chosen or any(f not in FEATURES for f in chosen)
                               or len(set(chosen)) != len(chosen)):
        fail(f"--features must be auto or distinct names among {', '.join(FEATURES)}, not "
             f"{features!r}")
    if unit not in ("tokens", "flops", "seconds"):
        fail(f"--unit must be tokens, flops or seconds, not {unit!r}")
    try:
        levels = [float(b) for b in budgets.split(",")] if budgets else None
    except ValueError:
        fail(f"--budgets must be numbers separated by commas, not {budgets!r}")
    rule = FitRule(probe_k=probe_k, bins=bins, features=chosen,  # type: ignore[arg-type]
                   prior=PRIOR if prior is None else prior, probe=probe,
                   unit=unit)  # type: ignore[arg-type]
    try:
        with ResultStore(store, create=False) as s:
            records = s.records()
        problems = complete_problems(records)
        if not problems:
            raise ValueError("the store has no problem with every pool of the sweep yet")
        grid = levels or budget_grid(records, problems, rule.unit, rule.prepared(records))
        policy = rule.fit(records, problems, grid, source=str(store))
        policy.save(out)
    except USER_ERRORS as exc:
        fail(str(exc))
    from testtime.eval.report import describe_bins

    typer.echo(f"features: {', '.join(policy.features)}"
               + (f" (chosen by {rule.inner} inner folds: " + ", ".join(
                   f"{k} {v:.3f}" for k, v in policy.feature_sets.items()) + ")"
                  if policy.feature_sets else ""))
    typer.echo(f"probe: {describe_bins(policy)}")
    if policy.greedy:
        typer.echo(f"greedy decoding ({policy.greedy}) runs wherever the training problems do "
                   "not show something beats it, at budgets at or above its cost")
    for budget, row in policy.budgets.items():
        typer.echo(f"budget {budget:>8} {policy.unit}: " + ", ".join(
            f"bin {i + 1}: {c.label}" for i, c in enumerate(row)))
    typer.echo(f"fitted on all {len(policy.train)} problems → {out}")
    try:
        result = CrossFitter(records, lambda train, bs: rule.fit(records, train, bs),
                             unit=rule.unit, prep=rule.prepared(records)).run(
            problems, folds=folds, seed=seed, budgets=grid, inner=inner)
    except ValueError as exc:
        typer.echo(f"cross-fitted evaluation skipped: {exc}")
        return
    typer.echo("cross-fitted evaluation of this fit rule at these budgets:")
    typer.echo("\n".join(report_lines(result)))
    typer.echo(headline(result))


def register(app: typer.Typer, *, remote_sweep: RemoteSweep | None = None) -> None:
    """Add this layer's commands to app; ``remote_sweep`` backs ``sweep --ray``."""
    app.command("sweep", cls=_OptionalRayAddress, help=SWEEP_HELP)(sweep_command(remote_sweep))
    app.command("export")(export_cmd)
    app.command("report")(report_cmd)
    app.command("fit-policy")(fit_policy_cmd)
