"""Strategies: one file per technique, each reading like its paper."""

from testtime.strategies.base import (
    Context,
    Strategy,
    StrategySettings,
    make_strategy,
    strategies,
)
from testtime.strategies.best_of_n import BestOfN
from testtime.strategies.self_consistency import SelfConsistency
from testtime.strategies.single import Single
from testtime.strategies.voting import tally, vote
from testtime.strategies.weighted_vote import WeightedVote

__all__ = [
    "BestOfN",
    "Context",
    "SelfConsistency",
    "Single",
    "Strategy",
    "StrategySettings",
    "WeightedVote",
    "make_strategy",
    "strategies",
    "tally",
    "vote",
]
