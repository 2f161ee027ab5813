"""The gateway on Ray Serve over embedded SmolLM2: 2 gateway and 2 engine replicas."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from testtime.distributed.serve_ray import Deployed, deploy
from testtime.models import resolve
from testtime.serve.config import ServeConfig

pytestmark = [pytest.mark.ci, pytest.mark.model]
pytest.importorskip("ray.serve")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def app(ray_cluster: Any) -> Iterator[Deployed]:
    """Two engine replicas, each SmolLM2-135M on one thread."""
    resolve("smollm2-135m")
    config = ServeConfig(
        port=free_port(), backend="embedded:smollm2-135m,slots=2,threads=1,ctx=512",
        api_keys={"few": {"name": "few", "rpm": 3}},
        ray={"gateway": {"num_replicas": 2, "num_cpus": 0},
             "engine": {"num_replicas": 2, "num_cpus": 0, "max_ongoing_requests": 2}})
    with deploy(config) as deployed:
        yield deployed


def generated(url: str) -> float:
    """Generated tokens ``/metrics`` has counted."""
    text = httpx.get(url + "/metrics", timeout=30).text
    found = re.search(r'^testtime_gateway_tokens_total\{kind="generated"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_smollm_behind_replicas_keeps_rpm_and_exact_usage(app: Deployed) -> None:
    before = generated(app.url)
    body = {"model": "self-consistency:n=2,max_tokens=12",
            "messages": [{"role": "user", "content": "What is 2+3?"}]}

    def ask(_: int) -> httpx.Response:
        return httpx.post(app.url + "/v1/chat/completions", json=body, timeout=120,
                          headers={"Authorization": "Bearer few"})

    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(ask, range(6)))
    ok = [r for r in responses if r.status_code == 200]
    assert len(ok) == 3 and all(r.status_code == 429 for r in responses if r not in ok)
    completion = sum(r.json()["usage"]["testtime"]["generated_tokens"] for r in ok)
    assert completion > 0
    assert counted_generated(app.url, before + completion) == before + completion


def counted_generated(url: str, expected: float) -> float:
    """Generated tokens on ``/metrics`` once every replica's report has arrived."""
    deadline = time.monotonic() + 30
    seen = generated(url)
    while seen < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = generated(url)
    return seen
