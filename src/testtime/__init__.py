"""testtime: test-time scaling strategies, verifiers and honest compute accounting."""

from testtime.backends import Backend, EmbeddedBackend, OpenAIBackend, ScriptedBackend, make_backend
from testtime.budget import Budget, CostModel, Ledger
from testtime.eval.runner import run_problems, solve
from testtime.strategies import Context, make_strategy
from testtime.tasks import make_task
from testtime.types import (
    Candidate,
    Completion,
    Generation,
    GenerationRequest,
    Message,
    Problem,
    Prompt,
    Result,
    Score,
    Usage,
)
from testtime.verifiers import make_verifier

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "Budget",
    "Candidate",
    "Completion",
    "Context",
    "CostModel",
    "EmbeddedBackend",
    "Generation",
    "GenerationRequest",
    "Ledger",
    "Message",
    "OpenAIBackend",
    "Problem",
    "Prompt",
    "Result",
    "Score",
    "ScriptedBackend",
    "Usage",
    "make_backend",
    "make_strategy",
    "make_task",
    "make_verifier",
    "run_problems",
    "solve",
]
