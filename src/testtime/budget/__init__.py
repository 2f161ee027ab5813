"""Budget (limits), Ledger (what was spent) and the cost model (FLOPs, memory traffic).

One module each: :mod:`~testtime.budget.limits` (Budget, BudgetExhausted),
:mod:`~testtime.budget.cost` (ModelShape, CostModel), :mod:`~testtime.budget.ledger` (Plan,
Ledger) and :mod:`~testtime.budget.stopped` (where stopped work is reported).
"""

from testtime.budget.cost import CostModel, ModelShape, forward_flops, token_flops
from testtime.budget.ledger import Ledger, Plan
from testtime.budget.limits import LIMITS, Budget, BudgetExhausted
from testtime.budget.stopped import on_stopped, stopped_sink

__all__ = [
    "LIMITS",
    "Budget",
    "BudgetExhausted",
    "CostModel",
    "Ledger",
    "ModelShape",
    "Plan",
    "forward_flops",
    "on_stopped",
    "stopped_sink",
    "token_flops",
]
