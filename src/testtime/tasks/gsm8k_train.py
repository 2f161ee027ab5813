"""GSM8K's 7,473 training problems, shipped with testtime (MIT, ``data/GSM8K-LICENSE``).

For fitting and development offline: policies are fitted and strategies tuned on these, never
on the test split a user reports. ``seed`` picks a seeded random order of the whole split, so
``limit=120`` and ``limit=200`` share their first 120 problems and a sweep can grow.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from importlib import resources

from testtime.tasks.base import LoadReport, tasks
from testtime.tasks.jsonl import record_to_problem
from testtime.types import Problem

DATA = "gsm8k-train.jsonl.gz"
SHA256 = "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"


def training_rows() -> list[dict[str, str]]:
    """The shipped rows in file order, checked against the split's sha256."""
    raw = gzip.decompress(resources.files("testtime.tasks").joinpath("data", DATA).read_bytes())
    if hashlib.sha256(raw).hexdigest() != SHA256:
        raise RuntimeError(f"{DATA} does not match its sha256: the installed package is damaged")
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]


@tasks.register("gsm8k-train")
class Gsm8kTrainTask:
    """GSM8K training problems (offline, shipped), in a seeded random order; ids ``train-N``
    name the problem's line in the original file."""

    name = "gsm8k-train"

    def __init__(self) -> None:
        self.report = LoadReport()

    def problems(self, limit: int | None = None, seed: int = 0) -> list[Problem]:
        """The first ``limit`` problems of the order ``seed`` picks."""
        rows = training_rows()
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
        picked = order if limit is None else order[:limit]
        return [record_to_problem(rows[i], f"train-{i + 1}", "question", "answer", "gsm8k")
                for i in picked]
