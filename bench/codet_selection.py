"""CodeT selection on recorded best-of-n candidates against single-sample accuracy.

The model writes tests from the prompt only (the hidden tests only grade); dual agreement
picks one candidate per problem. Usage:
PYTHONPATH=src python bench/codet_selection.py RUN.jsonl  (records of a humaneval run)
"""

import asyncio
import json
import sys
import time

from testtime.backends import make_backend
from testtime.code import grade
from testtime.tasks import make_task
from testtime.types import Candidate, Completion
from testtime.verifiers import VerifyContext, make_verifier


async def main() -> None:
    probs = {p.id: p for p in make_task("humaneval").problems()}
    backend = make_backend("embedded:qwen2.5-coder-0.5b")
    verifier = make_verifier("codet:samples=1,count=8,max_tokens=300")
    with open(sys.argv[1]) as fh:
        recs = [json.loads(line) for line in fh]
    ctx = VerifyContext(backend=backend)
    picked: list[bool] = []
    single: list[bool] = []
    started = time.monotonic()

    async def one(r: dict) -> tuple[str, bool, list[bool], str | None]:
        p = probs[r["problem_id"]]
        cands = [Candidate(text=c["text"], answer=c["text"], completion=Completion(text=c["text"]))
                 for c in r["candidates"]]
        scores = await verifier.score(p, cands, ctx)
        best = max(range(len(cands)), key=lambda i: scores[i].value)
        return (p.id, grade(p, cands[best].text), [grade(p, c.text) for c in cands],
                scores[best].detail)

    for pid, ok, oks, detail in await asyncio.gather(*(one(r) for r in recs)):
        picked.append(ok)
        single.extend(oks)
        print(pid, "codet pick correct:", ok, "candidates:", oks, "|", detail, flush=True)
    u = ctx.ledger.usage
    print(f"problems {len(recs)}  codet accuracy {sum(picked) / len(picked):.3f}  "
          f"single-sample accuracy {sum(single) / len(single):.3f}  "
          f"test-writing tokens {u.verifier_tokens}  sandbox runs {u.sandbox_runs} "
          f"({u.sandbox_seconds_per_run:.2f} s each)  wall {time.monotonic() - started:.0f} s")


asyncio.run(main())
