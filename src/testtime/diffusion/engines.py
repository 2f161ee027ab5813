"""Loading a diffusion model and its verifiers from spec strings, with errors before work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from testtime.diffusion.base import DiffusionError, DiffusionProblem, ImageVerifier, engines
from testtime.diffusion.base import verifiers as verifier_registry
from testtime.diffusion.sampler import Sampler
from testtime.registry import SpecError, build


class Engine(Protocol):
    """A loaded diffusion model: samplers over it, its own verifiers, its default task."""

    name: str
    default_steps: int
    task_kind: str | None

    def sampler(self, scheduler: str = ..., guidance: float = ...) -> Sampler:
        """A sampler with this scheduler and guidance scale."""
        ...

    def verifier(self, name: str) -> ImageVerifier | None:
        """A verifier the model ships (the digits pack's classifier and judge), if any."""
        ...

    def problems(self, limit: int, seed: int) -> list[DiffusionProblem]:
        """The model's default task."""
        ...


def make_engine(spec: str, progress: Any = None) -> Engine:
    """Load ``digits``, ``digits:recipe=large`` or ``diffusers:path=DIR|HUB_ID,...``."""
    _register()
    settings = build(engines, spec)
    engine: Engine = settings.load(progress=progress)
    return engine


def make_verifier(spec: str, engine: Engine,
                  problems: Sequence[DiffusionProblem] = ()) -> ImageVerifier:
    """The engine's own verifier by that name, else one from the verifier registry.

    A verifier that needs a field (a prompt) that one of ``problems`` lacks is refused
    before its model is loaded.
    """
    _register()
    own = engine.verifier(spec)
    if own is not None:
        return own
    name = spec.partition(":")[0]
    if name in ("classifier", "judge"):
        raise DiffusionError(f"verifier {name!r} belongs to the built-in digits model, not "
                             f"{engine.name!r}; use clip:path=… or aesthetic:path=…")
    try:
        built = build(verifier_registry, spec)
    except SpecError as exc:
        raise DiffusionError(f"{exc}; the digits model also has: classifier, judge") from None
    for problem in problems:
        for need in sorted(getattr(built, "needs", ())):
            if getattr(problem, need, None) is None:
                raise DiffusionError(f"verifier {name!r} needs a {need}, and problem "
                                     f"{problem.id!r} has none; give the task a {need} or "
                                     "pick another verifier")
    verifier: ImageVerifier = built.load()
    return verifier


def _register() -> None:
    from testtime.diffusion import builtin, hf  # noqa: F401
    from testtime.diffusion.verifiers import clip  # noqa: F401
