"""Verifiers: one file per kind behind one async protocol."""

from testtime.verifiers.base import Verifier, VerifyContext, make_verifier, verifiers
from testtime.verifiers.confidence import ConfidenceVerifier
from testtime.verifiers.reference import ReferenceVerifier

__all__ = [
    "ConfidenceVerifier",
    "ReferenceVerifier",
    "Verifier",
    "VerifyContext",
    "make_verifier",
    "verifiers",
]
