"""``testtime diffuse …``: run a search over a diffusion task, or sweep searches × NFEs."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from testtime.budget import Budget
from testtime.cli_errors import USER_ERRORS, err, fail

if TYPE_CHECKING:
    from testtime.diffusion.base import DiffusionProblem, ImageVerifier
    from testtime.diffusion.engines import Engine
    from testtime.diffusion.sampler import Sampler

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Test-time scaling for diffusion models: search over noises and paths.")

Model = Annotated[str, typer.Option(help="digits[:recipe=large] or diffusers:path=DIR|HUB_ID")]
Scheduler = Annotated[str | None, typer.Option(
    help="ddim, ddpm (DDPM-style models) or euler (flow); default: ddpm for digits, "
         "ddim otherwise")]
Guidance = Annotated[float, typer.Option(min=0.0, help="classifier-free guidance scale")]
VerifierOpt = Annotated[str, typer.Option(
    help="what search optimises: classifier (digits), clip:path=…, aesthetic:path=…,head=…")]
JudgeOpt = Annotated[str | None, typer.Option(
    help="a held-out scorer search never sees (digits: judge); 'none' for none")]
Prompts = Annotated[list[str] | None, typer.Option("--prompt", help="a prompt; repeatable")]
Labels = Annotated[list[int] | None, typer.Option("--label", help="a digit; repeatable")]


@dataclass
class Setup:
    """Everything a diffusion run needs, checked before any denoising."""

    engine: Engine
    sampler: Sampler
    verifier: ImageVerifier
    judge: ImageVerifier | None
    problems: list[DiffusionProblem]


def _bar(quiet: bool) -> Progress:

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, disable=quiet)


def _precheck(scheduler: str | None, steps: list[int], budget: Budget) -> None:
    """Refuse an unsearchable scheduler or a budget below one denoising before loading."""
    from testtime.diffusion.base import DiffusionError
    from testtime.diffusion.sampler import check_scheduler

    if scheduler is not None:
        check_scheduler(scheduler, None)
    for k in steps:
        if budget.nfes is not None and budget.nfes < k:
            raise DiffusionError(f"budget nfes={budget.nfes} is below one full denoising "
                                 f"({k} steps)")


def setup(model: str, scheduler: str | None, guidance: float, verifier: str,
          judge: str | None, prompts: list[str] | None, labels: list[int] | None, limit: int,
          seed: int, quiet: bool) -> Setup:
    """Load the model and verifiers and build the problems; DiffusionError on bad input."""
    from testtime.diffusion.base import DiffusionProblem
    from testtime.diffusion.context import check_verifier
    from testtime.diffusion.engines import make_engine, make_verifier

    with _bar(quiet) as bar:
        job = bar.add_task(f"loading {model}", total=None)

        def progress(name: str, done: int, total: int) -> None:
            bar.update(job, description=f"training {name} (first use; cached after)",
                       completed=done, total=total)

        engine = make_engine(model, progress=progress)
    default = "ddpm" if engine.name == "digits" else "ddim"
    sampler = engine.sampler(scheduler or default, guidance)
    if prompts:
        problems = [DiffusionProblem(id=f"p{i}-s{seed + j}", prompt=p, seed=seed + j)
                    for i, p in enumerate(prompts) for j in range(limit)]
    elif labels:
        problems = [DiffusionProblem(id=f"digit{lab}-s{seed + j}", label=lab, seed=seed + j)
                    for lab in labels for j in range(limit)]
    else:
        problems = engine.problems(limit, seed)
    the_verifier = make_verifier(verifier, engine, problems)
    the_judge = None if judge in (None, "none") else make_verifier(judge, engine, problems)
    for p in problems:
        check_verifier(the_verifier, p)
        if the_judge is not None:
            check_verifier(the_judge, p)
        if engine.task_kind == "label":
            sampler.denoiser.condition(p, guidance)
    return Setup(engine, sampler, the_verifier, the_judge, problems)


def run(
    strategy: Annotated[str, typer.Option(help="search spec, e.g. random-search:n=8,steps=10")]
    = "random-search:steps=10",
    model: Model = "digits",
    verifier: VerifierOpt = "classifier",
    judge: JudgeOpt = None,
    budget: Annotated[str, typer.Option(help="per problem, e.g. nfes=80")] = "nfes=80",
    scheduler: Scheduler = None,
    guidance: Guidance = 1.0,
    prompt: Prompts = None,
    label: Labels = None,
    limit: Annotated[int, typer.Option(min=1, help="problems (per prompt or label)")] = 10,
    seed: Annotated[int, typer.Option(help="first noise seed")] = 0,
    out: Annotated[Path | None, typer.Option(help="JSONL, one record per problem")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON last")]
    = False,
) -> None:
    """Run one search over a diffusion task and report verifier/judge scores and NFEs."""
    from testtime.diffusion.base import DiffusionError
    from testtime.diffusion.searches import make_search
    from testtime.eval.diffusion import run_unit

    try:
        search = make_search(strategy)
        the_budget = Budget.parse(budget)
        _precheck(scheduler, [search.steps], the_budget)
        s = setup(model, scheduler, guidance, verifier, judge or
                  ("judge" if model.startswith("digits") else None), prompt, label, limit,
                  seed, as_json)
        need = search.steps * s.sampler.passes()
        if the_budget.nfes is not None and the_budget.nfes < need:
            raise DiffusionError(f"budget nfes={the_budget.nfes} is below one full denoising "
                                 f"({search.steps} steps × {s.sampler.passes()} passes)")
    except USER_ERRORS as exc:
        fail(str(exc))
    records = []
    with _bar(as_json) as bar:
        job = bar.add_task(f"{search.spec()}", total=len(s.problems))
        for p in s.problems:
            records.append(run_unit(p, s.sampler, s.verifier, s.judge, search.spec(),
                                    the_budget))
            bar.advance(job)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = summarise(records)
    table = Table(title=escape(f"{search.spec()} on {model} ({len(records)} problems)"))
    table.add_column("metric")
    table.add_column("value")
    for k, v in summary.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    err.print(table)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over problems: scores, NFEs, verifier passes, FLOPs, seconds."""
    n = max(len(records), 1)
    judged = [r["judge"] for r in records if r["judge"] is not None]
    return {
        "problems": len(records),
        "verifier_score": sum(r["verifier"] for r in records) / n,
        "judge_score": sum(judged) / len(judged) if judged else None,
        "nfes_per_problem": sum(r["nfes"] for r in records) / n,
        "denoiser_calls_per_problem": sum(r["calls"] for r in records) / n,
        "verifier_passes_per_problem": sum(r["verifier_passes"] for r in records) / n,
        "flops_per_problem": sum(r["flops"] for r in records) / n,
        "flops_known": all(r["flops_known"] for r in records),
        "seconds_per_problem": sum(r["seconds"] for r in records) / n,
        "budget_exhausted": sum(bool(r["budget_exhausted"]) for r in records),
    }


def sweep(
    out: Annotated[Path, typer.Option(help="directory for records, figures and report")],
    search: Annotated[list[str] | None, typer.Option(
        "--search", help="a search spec (steps = more steps); repeatable; default: all")] = None,
    multiples: Annotated[str, typer.Option(help="NFE budgets as multiples of one denoising")]
    = "1,2,4,8",
    base_steps: Annotated[int, typer.Option(min=1, help="steps of one base denoising")] = 10,
    model: Model = "digits",
    verifier: VerifierOpt = "classifier",
    judge: JudgeOpt = None,
    scheduler: Scheduler = None,
    guidance: Guidance = 1.0,
    prompt: Prompts = None,
    label: Labels = None,
    limit: Annotated[int, typer.Option(min=1, help="problems (per prompt or label)")] = 20,
    seed: Annotated[int, typer.Option(help="first noise seed")] = 0,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Sweep searches × NFE budgets; write records.jsonl, curves.png, hacking.png, report.md."""
    from testtime.diffusion.base import DiffusionError
    from testtime.diffusion.searches import make_search
    from testtime.eval.diffusion import SweepSpec, write_report
    from testtime.eval.diffusion import sweep as run_sweep

    try:
        ms = [int(m) for m in multiples.split(",") if m.strip()]
        if not ms or min(ms) < 1:
            raise DiffusionError(f"multiples must be positive integers, not {multiples!r}")
        spec = SweepSpec(searches=tuple(search) if search else SweepSpec.searches,
                         multiples=tuple(ms), base_steps=base_steps)
        for sp in spec.searches:
            make_search(sp)
        _precheck(scheduler, [], Budget())
        s = setup(model, scheduler, guidance, verifier, judge or
                  ("judge" if model.startswith("digits") else None), prompt, label, limit,
                  seed, quiet)
    except USER_ERRORS as exc:
        fail(str(exc))
    total = len(spec.searches) * len(spec.multiples) * len(s.problems)
    with _bar(quiet) as bar:
        job = bar.add_task("sweeping", total=total)
        records = run_sweep(s.engine, s.sampler, s.verifier, s.judge, s.problems, spec,
                            on_unit=lambda _: bar.advance(job))
    files = write_report(records, out, title=f"{model}: score against NFEs")
    sys.stdout.write(json.dumps({k: str(v) for k, v in files.items()}) + "\n")


app.command("run")(run)
app.command("sweep")(sweep)


def register(root: typer.Typer) -> None:
    """Add ``testtime diffuse`` to the main app."""
    root.add_typer(app, name="diffuse")
