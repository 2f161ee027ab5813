"""Strategies: one file per technique, each reading like its paper."""

from testtime.strategies.adaptive import Adaptive
from testtime.strategies.agent import Agent
from testtime.strategies.base import (
    Context,
    Strategy,
    StrategySettings,
    make_strategy,
    strategies,
)
from testtime.strategies.beam import BeamSearch, LookaheadSearch
from testtime.strategies.best_of_n import BestOfN
from testtime.strategies.budget_forcing import BudgetForcing
from testtime.strategies.certainty_probe import CertaintyProbe
from testtime.strategies.cross_check import CrossCheck
from testtime.strategies.deepconf import DeepConf
from testtime.strategies.dvts import DVTS
from testtime.strategies.early_stop import EarlyStop
from testtime.strategies.first_finish import FirstFinish
from testtime.strategies.mcts import MCTS
from testtime.strategies.multi_temperature import MultiTemperature
from testtime.strategies.no_thinking import NoThinking
from testtime.strategies.particle_filter import ParticleFilter
from testtime.strategies.program import Program, ProgramThoughts
from testtime.strategies.revision import Revision
from testtime.strategies.self_consistency import SelfConsistency
from testtime.strategies.short_m import ShortM
from testtime.strategies.single import Single
from testtime.strategies.tool_integrated import ToolIntegrated
from testtime.strategies.voting import tally, vote
from testtime.strategies.weighted_vote import WeightedVote

__all__ = [
    "DVTS",
    "MCTS",
    "Adaptive",
    "Agent",
    "BeamSearch",
    "BestOfN",
    "BudgetForcing",
    "CertaintyProbe",
    "Context",
    "CrossCheck",
    "DeepConf",
    "EarlyStop",
    "FirstFinish",
    "LookaheadSearch",
    "MultiTemperature",
    "NoThinking",
    "ParticleFilter",
    "Program",
    "ProgramThoughts",
    "Revision",
    "SelfConsistency",
    "ShortM",
    "Single",
    "Strategy",
    "StrategySettings",
    "ToolIntegrated",
    "WeightedVote",
    "make_strategy",
    "strategies",
    "tally",
    "vote",
]
