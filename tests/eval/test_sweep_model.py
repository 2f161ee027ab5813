"""A real-model sweep unit on SmolLM2-135M: records, usage and the store round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from testtime.backends.embedded import EmbeddedBackend
from testtime.eval.curves import derived_points
from testtime.eval.store import ResultStore
from testtime.eval.sweep import SweepConfig, expand, run_unit


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.ci
async def test_sweep_units_on_smollm(smollm: EmbeddedBackend, tmp_path: Path) -> None:
    cfg = SweepConfig(tasks=[{"spec": "arith:level=1", "limit": 2}],
                      strategies=["self-consistency:n=4,max_tokens=48"],
                      backends=["embedded:smollm2-135m"], store=str(tmp_path / "s.db"))
    with ResultStore(cfg.store) as store:
        for unit in expand(cfg):
            rec = await run_unit(unit, smollm)
            assert store.put(unit, rec) and not store.put(unit, rec)
        recs = store.records()
    assert len(recs) == 2
    for rec in recs:
        assert len(rec["candidates"]) == 4
        assert rec["usage"]["generated_tokens"] == sum(
            c["generated_tokens"] for c in rec["candidates"]) > 0
        assert rec["usage"]["flops"] > 0
    curves = {p.config for p in derived_points(recs)}
    assert {"majority@1", "majority@4", "pass@2"} <= curves
