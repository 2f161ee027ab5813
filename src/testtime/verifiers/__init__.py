"""Verifiers: one file per kind behind one async protocol."""

from testtime.verifiers.base import Verifier, VerifyContext, verifiers
from testtime.verifiers.cache import CachedVerifier
from testtime.verifiers.combo import ComboVerifier
from testtime.verifiers.confidence import ConfidenceVerifier
from testtime.verifiers.generated_tests import GeneratedTestsVerifier
from testtime.verifiers.judge import JudgeVerifier
from testtime.verifiers.judge_select import JudgeSelectVerifier
from testtime.verifiers.make import make_verifier
from testtime.verifiers.orm import ORMVerifier
from testtime.verifiers.prm import PRMVerifier
from testtime.verifiers.reference import ReferenceVerifier
from testtime.verifiers.reward_http import RewardHTTPVerifier
from testtime.verifiers.rpc import RPCWeights
from testtime.verifiers.steps import aggregate, split_steps
from testtime.verifiers.tests import TestsVerifier

__all__ = [
    "CachedVerifier",
    "ComboVerifier",
    "ConfidenceVerifier",
    "GeneratedTestsVerifier",
    "JudgeSelectVerifier",
    "JudgeVerifier",
    "ORMVerifier",
    "PRMVerifier",
    "RPCWeights",
    "ReferenceVerifier",
    "RewardHTTPVerifier",
    "TestsVerifier",
    "Verifier",
    "VerifyContext",
    "aggregate",
    "make_verifier",
    "split_steps",
    "verifiers",
]
