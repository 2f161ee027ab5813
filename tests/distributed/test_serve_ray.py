"""The gateway on Ray Serve (2 gateway and 2 engine replicas) on a loopback-only cluster."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from testtime.distributed.serve_ray import APP, Deployed, deploy
from testtime.serve.config import ServeConfig

pytestmark = pytest.mark.ci
ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
ENGINE_SLOTS = 3


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def replicas(backend: str, **keys: dict[str, Any]) -> ServeConfig:
    """Two gateway and two engine replicas over ``backend``."""
    return ServeConfig(
        port=free_port(), backend=backend, api_keys=keys, max_concurrency=32,
        ray={"gateway": {"num_replicas": 2, "num_cpus": 0},
             "engine": {"num_replicas": 2, "num_cpus": 0,
                        "max_ongoing_requests": ENGINE_SLOTS}})


@pytest.fixture(scope="module")
def app(ray_cluster: Any) -> Iterator[Deployed]:
    """The scripted gateway: each call takes 0.25 s per generated word (1 s per reply), so
    8 clients keep both engine replicas' slots full."""
    config = replicas("scripted:The answer is 4.,delay=0.25",
                      rpm={"name": "rpm", "rpm": 20}, open={"name": "open"})
    with deploy(config) as deployed:
        yield deployed


def ask(url: str, key: str, model: str = "single") -> httpx.Response:
    """One chat completion with bearer ``key``."""
    return httpx.post(url + "/v1/chat/completions", timeout=120,
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": "2+2?"}]})


def counter(url: str, name: str) -> float:
    """The sum of every series of counter ``name`` on ``/metrics``."""
    text = httpx.get(url + "/metrics", timeout=30).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def chat_requests(url: str) -> int:
    """Chat completion requests ``/metrics`` has counted, over every status."""
    text = httpx.get(url + "/metrics", timeout=30).text
    pattern = (r'testtime_gateway_requests_total\{endpoint="/v1/chat/completions",'
               r'status="\d+"\} (\S+)')
    return int(sum(float(v) for v in re.findall(pattern, text)))


def counted(url: str, expected: int) -> int:
    """What ``/metrics`` counts once the replicas' last reports have reached the hub."""
    deadline = time.monotonic() + 30
    seen = chat_requests(url)
    while seen < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = chat_requests(url)
    return seen


def test_rpm_holds_across_gateway_replicas_and_metrics_count_every_request(
        app: Deployed) -> None:
    before = chat_requests(app.url)
    served_before = ray.get(app.hub.requests_by_replica.remote())
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda _: ask(app.url, "rpm").status_code, range(60)))
    assert codes.count(200) == 20 and codes.count(429) == 40, codes
    served = ray.get(app.hub.requests_by_replica.remote())
    assert len(served) == 2, served
    assert all(served[r] > served_before.get(r, 0) for r in served), (served_before, served)
    assert counted(app.url, before + 60) == before + 60
    time.sleep(0.5)
    assert chat_requests(app.url) == before + 60


def engine_replica_actors() -> list[str]:
    """Names of the engine deployment's replica actors."""
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"SERVE_REPLICA::{APP}#engine#")]


def running_engines() -> int:
    """Engine replicas Serve reports as running."""
    status = serve.status().applications[APP].deployments["engine"]
    return int(status.replica_states.get("RUNNING", 0))


def restarted(killed: str) -> bool:
    """Whether Serve runs two engine replicas again, the killed one not among them."""
    names = engine_replica_actors()
    return len(names) == 2 and killed not in names and running_engines() == 2


def test_killing_an_engine_replica_fails_only_its_calls_and_charges_only_work_done(
        app: Deployed) -> None:
    spent_before = ray.get(app.counts.spent.remote()).get("open", 0)
    lost_before = counter(app.url, "testtime_gateway_engine_calls_lost_total")
    killed = engine_replica_actors()[0]
    results: list[httpx.Response] = []
    lock = threading.Lock()
    started = threading.Semaphore(0)

    def one(_: int) -> None:
        started.release()
        response = ask(app.url, "open")
        with lock:
            results.append(response)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(one, i) for i in range(40)]
        for _ in range(12):
            started.acquire()
        while len(results) < 4:
            time.sleep(0.01)
        time.sleep(0.5)  # the first replies came back together; kill mid-way through the next
        ray.kill(ray.get_actor(killed, namespace="serve"), no_restart=True)
        for f in futures:
            f.result()
    codes = [r.status_code for r in results]
    failed = [r for r in results if r.status_code != 200]
    assert set(codes) <= {200, 502, 503}
    assert len(failed) <= ENGINE_SLOTS
    for r in failed:
        assert r.headers.get("x-request-id") and "request" in r.json()["error"]["message"]
    charged = ray.get(app.counts.spent.remote())["open"] - spent_before
    assert charged == sum(r.json()["usage"]["total_tokens"] for r in results
                          if r.status_code == 200)
    deadline = time.monotonic() + 120
    while not restarted(killed) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert restarted(killed)
    assert ask(app.url, "open").status_code == 200
    lost = counter(app.url, "testtime_gateway_engine_calls_lost_total") - lost_before
    assert 1 <= lost <= ENGINE_SLOTS, (lost, codes)


def test_samples_spread_over_engine_replicas_report_exact_usage(app: Deployed) -> None:
    response = ask(app.url, "open", model="self-consistency:n=4")
    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["message"]["content"].endswith("4.")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] == 4 * 4


def stream_ends(url: str) -> str:
    """How one streamed request ends: 'done' ([DONE] arrived) or 'cut' (it ended early)."""
    body = {"model": "self-consistency:n=4", "stream": True,
            "messages": [{"role": "user", "content": "2+2?"}]}
    try:
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120,
                          headers={"Authorization": "Bearer open"}) as response:
            if response.status_code != 200:
                return f"status {response.status_code}"
            for line in response.iter_lines():
                if line.strip() == "data: [DONE]":
                    return "done"
    except httpx.HTTPError:
        return "cut"
    return "cut"


def test_killing_a_gateway_replica_ends_only_its_streams(app: Deployed) -> None:
    gateways = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                if a["name"].startswith(f"SERVE_REPLICA::{APP}#gateway#")]
    engines = set(engine_replica_actors())
    assert len(gateways) == 2
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(stream_ends, app.url) for _ in range(6)]
        time.sleep(0.5)  # every stream is open and waiting for its samples
        ray.kill(ray.get_actor(gateways[0], namespace="serve"), no_restart=True)
        ends = [f.result() for f in futures]
    assert set(ends) <= {"done", "cut"}
    assert ends.count("done") >= 1 and ends.count("cut") >= 1
    assert set(engine_replica_actors()) == engines
    assert ask(app.url, "open").status_code == 200
