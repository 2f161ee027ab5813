"""Schemathesis against the gateway's own OpenAPI schema: valid and invalid requests, no 5xx.

A bounded number of examples per operation keeps this a CI-speed check.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from testtime.backends.scripted import ScriptedBackend
from testtime.serve.app import create_app
from testtime.serve.config import ServeConfig

CONFIG = {"model_name": "scripted", "max_choices": 4, "request_budget": "tokens=64",
          "strategies": {"sc2": "self-consistency:n=2"},
          "api_keys": {"sk-fuzz": {"name": "fuzz", "rpm": 100_000}}}
MODELS = ["scripted", "sc2", "self-consistency:n=2@scripted", "best-of-n:n=2",
          "best-of-n:verifier=[judge:k=2,mode=sample]"]
schema = schemathesis.openapi.from_dict(
    create_app(ServeConfig(**CONFIG), ScriptedBackend()).openapi())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@pytest.fixture
def live(serve: Any) -> Iterator[Any]:
    with serve(ScriptedBackend(max_n=1_000_000), **CONFIG) as gw:
        yield gw


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_the_schema_allows_or_forbids_gets_a_5xx(case: Any, live: Any) -> None:
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("model"), str) and len(str(body)) % 2:
        # Half the bodies name a served model, so they get past routing into the strategies.
        body["model"] = MODELS[len(body["model"]) % len(MODELS)]
        if isinstance(body.get("n"), int) and not isinstance(body["n"], bool):
            body["n"] = 1 + body["n"] % 2
    response = case.call(base_url=live.url, headers={"Authorization": "Bearer sk-fuzz"},
                         timeout=30)
    assert response.status_code < 500, (case.method, case.path, case.body, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["message"] and error["code"] and error["type"]
    assert httpx.get(live.url + "/health", timeout=10).status_code == 200
