"""Policy files: the shipped ones, reading and checking, and hot reload while serving."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import ValidationError

from testtime.policy.choices import POLICY_STRATEGY
from testtime.policy.model import Policy
from testtime.registry import SpecError

POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
log = logging.getLogger("testtime.policy")


class PolicyError(ValueError):
    """A policy file that is missing or malformed."""


def shipped_policies() -> list[str]:
    """Names of the policies that ship with testtime (one per model)."""
    return sorted(p.stem for p in POLICY_DIR.glob("*.json"))


def policy_path(ref: str) -> Path:
    """The file of a policy reference: a shipped policy's name (a model id), else a path."""
    if "/" not in ref and not ref.endswith(".json"):
        shipped = POLICY_DIR / f"{ref}.json"
        if shipped.is_file():
            return shipped
        raise PolicyError(f"no shipped policy named {ref!r} (shipped: "
                          f"{', '.join(shipped_policies()) or 'none'}); give a policy file path")
    return Path(ref).expanduser()


def read_policy(ref: str) -> Policy:
    """Read and check a policy now (no cache); PolicyError if it is unusable."""
    p = policy_path(ref)
    if not p.is_file():
        raise PolicyError(f"policy file {ref!r} does not exist")
    try:
        policy = Policy.model_validate(json.loads(p.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValidationError, SpecError) as exc:
        first = str(exc).splitlines()[0]
        detail = str(exc).splitlines()[1:3] if isinstance(exc, ValidationError) else []
        raise PolicyError(f"policy file {ref!r} is not a valid policy: "
                          f"{' '.join([first, *[d.strip() for d in detail]])}") from None
    if not policy.budgets or any(len(row) != policy.bins for row in policy.budgets.values()):
        raise PolicyError(f"policy file {ref!r}: each budget needs one choice per bin")
    return policy


_loaded: dict[str, tuple[tuple[int, int], Policy]] = {}


def load_policy(ref: str) -> Policy:
    """The policy at ``ref``, reread whenever its file changes on disk.

    A file that changes into something unusable keeps the last good policy serving (with a
    warning in the log); with no good version yet, PolicyError.
    """
    p = policy_path(ref)
    try:
        st = p.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (-1, -1)
    held = _loaded.get(ref)
    if held is not None and held[0] == stamp:
        return held[1]
    try:
        policy = read_policy(ref)
    except PolicyError as exc:
        if held is None:
            raise
        log.warning("policy file changed but cannot be used; keeping the last good one",
                    extra={"error": str(exc)})
        _loaded[ref] = (stamp, held[1])
        return held[1]
    _loaded[ref] = (stamp, policy)
    return policy


def policy_spec(ref: str, budget: float) -> str:
    """The strategy spec that runs the policy ``ref`` at ``budget`` per problem."""
    return f"{POLICY_STRATEGY}:policy=[{ref}],budget={budget!r}"
