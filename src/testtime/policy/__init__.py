"""The fitted compute-optimal policy: files, choices, difficulty features and spec algebra.

Used alike by the ``adaptive`` strategy, ``testtime fit-policy``, reports and the gateway. It
builds strategies only through the strategy registry, by spec, so it imports none.
"""

from testtime.policy.choices import POLICY_STRATEGY, Choice, distinct_labels
from testtime.policy.loading import (
    POLICY_DIR,
    PolicyError,
    load_policy,
    policy_path,
    policy_spec,
    read_policy,
    shipped_policies,
)
from testtime.policy.model import Policy, Statistic, Unit
from testtime.policy.pools import (
    DRAW_FIELDS,
    Pool,
    draw_spec,
    pooled_families,
    pools,
    probe_draw,
    sampler_options,
    sampling_spec,
    spec_of_family,
)
from testtime.policy.probe import (
    FEATURES,
    Feature,
    agreement,
    candidate_features,
    compared_answers,
    features,
    mean_score,
    probe_answers,
    stored_features,
)

__all__ = [
    "DRAW_FIELDS",
    "FEATURES",
    "POLICY_DIR",
    "POLICY_STRATEGY",
    "Choice",
    "Feature",
    "Policy",
    "PolicyError",
    "Pool",
    "Statistic",
    "Unit",
    "agreement",
    "candidate_features",
    "compared_answers",
    "distinct_labels",
    "draw_spec",
    "features",
    "load_policy",
    "mean_score",
    "policy_path",
    "policy_spec",
    "pooled_families",
    "pools",
    "probe_answers",
    "probe_draw",
    "read_policy",
    "sampler_options",
    "sampling_spec",
    "shipped_policies",
    "spec_of_family",
    "stored_features",
]
