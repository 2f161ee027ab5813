"""A generated family of arithmetic word-free problems with difficulty levels and a seed.

For demos and tests: cheap to generate, exactly graded, and hard enough at higher levels that
a 0.5B model errs often while its samples still contain the right answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from testtime.tasks.base import MATH_INSTRUCTION, MATH_SYSTEM, LoadReport, TaskError, tasks
from testtime.types import Problem


def _level1(r: random.Random) -> tuple[str, int]:
    a, b = r.randint(10, 99), r.randint(10, 99)
    return f"{a} + {b}", a + b


def _level2(r: random.Random) -> tuple[str, int]:
    a, b = r.randint(11, 49), r.randint(3, 19)
    return f"{a} * {b}", a * b


def _level3(r: random.Random) -> tuple[str, int]:
    a, b, c = r.randint(11, 39), r.randint(3, 15), r.randint(10, 99)
    return f"{a} * {b} + {c}", a * b + c


def _level4(r: random.Random) -> tuple[str, int]:
    a, b, c, d = r.randint(10, 60), r.randint(10, 60), r.randint(3, 12), r.randint(10, 99)
    return f"({a} + {b}) * {c} - {d}", (a + b) * c - d


def _level5(r: random.Random) -> tuple[str, int]:
    a, b, c = r.randint(101, 499), r.randint(11, 39), r.randint(100, 999)
    d = r.randint(2, 9)
    return f"{a} * {b} - {c} * {d}", a * b - c * d


LEVELS: dict[int, Callable[[random.Random], tuple[str, int]]] = {
    1: _level1, 2: _level2, 3: _level3, 4: _level4, 5: _level5}


@tasks.register("arith")
class ArithTask:
    """Arithmetic expressions at levels 1-5; ``level=mixed`` cycles 2..5 (the default)."""

    def __init__(self, level: str | int = "mixed", seed: str | int = 0) -> None:
        self.report = LoadReport()
        if str(level) == "mixed":
            self.levels = [2, 3, 4, 5]
        else:
            try:
                self.levels = [int(x) for x in str(level).split("+")]
            except ValueError:
                raise TaskError(f"arith level must be 1-5, '2+3' or 'mixed', not {level!r}")\
                    from None
            if not set(self.levels) <= set(LEVELS):
                raise TaskError(f"arith level must be in 1-5, not {level!r}")
        self.base_seed = int(seed)
        self.name = "arith" if str(level) == "mixed" else f"arith:level={level}"

    def problems(self, limit: int | None = None, seed: int = 0) -> list[Problem]:
        """Generate ``limit`` problems (default 100) reproducibly from the seed."""
        r = random.Random(f"arith:{self.base_seed}:{seed}")
        out = []
        for i in range(limit if limit is not None else 100):
            level = self.levels[i % len(self.levels)]
            expr, value = LEVELS[level](r)
            out.append(Problem(
                id=f"arith-{self.base_seed}-{seed}-{i}", question=f"What is {expr}?",
                reference=str(value), system=MATH_SYSTEM, instruction=MATH_INSTRUCTION,
                metadata={"level": level, "expression": expr}))
        return out
