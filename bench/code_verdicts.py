"""Do channel verdicts agree with the in-box (shared) verdicts on recorded candidates?

Usage: PYTHONPATH=src python bench/code_verdicts.py RUN.jsonl  (records of a humaneval run)
"""

import json
import sys

from testtime.code import sandbox
from testtime.code.problems import program_for, split_check
from testtime.code.sandbox import Limits, resolve_mode
from testtime.tasks import make_task

probs = {p.id: p for p in make_task("humaneval").problems()}
same = total = 0
for path in sys.argv[1:]:
    with open(path) as fh:
        records = [json.loads(line) for line in fh]
    for r in records:
        p = probs[r["problem_id"]]
        entry = p.metadata["entry_point"]
        steps = split_check(p.metadata["test"], entry)
        for c in r["candidates"]:
            prog = program_for(p, c["text"])
            new = sandbox.run_tests(prog, steps, trusted=p.metadata["prompt"], entry_point=entry)
            old = sandbox._run_shared(resolve_mode(), prog, list(steps), Limits(), True)
            total += 1
            same += new.passed == old.passed and new.loaded == old.loaded
            if new.passed != old.passed:
                print("DIFF", p.id, new.passed, old.passed, new.errors, old.errors)
print(f"{same}/{total} candidates: channel verdict == in-box verdict, every test")
