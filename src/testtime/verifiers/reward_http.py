"""Reward models served over HTTP by vLLM: the pooling (PRM/reward) and classify (ORM) APIs."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any, Literal

import httpx
from pydantic import Field, PrivateAttr

from testtime.budget import BudgetExhausted, forward_flops
from testtime.types import Candidate, Problem, Score
from testtime.verifiers.base import VerifierSettings, VerifyContext, verifiers
from testtime.verifiers.hf import RewardModelError
from testtime.verifiers.prm_formats import get_format, steps_of
from testtime.verifiers.steps import aggregate


@verifiers.register("reward-http")
class RewardHTTPVerifier(VerifierSettings):
    """Score candidates with a reward model behind vLLM (``vllm serve M --task reward|classify``).

    ``api=pooling`` posts to ``/pooling``; with ``family`` set (e.g. ``qwen-prm``) the solution
    is split into steps and laid out with the family's marker, and the reply's per-step rows
    become ``Score.steps`` (column ``positive`` of each row), aggregated by ``agg``.
    ``api=classify`` posts to ``/classify`` and reads ``probs[positive]``. Raw values outside
    [0, 1] are read as logits (sigmoid).
    """

    url: str = Field(description="server root, e.g. http://127.0.0.1:8000")
    model: str | None = None
    api: Literal["pooling", "classify"] = "pooling"
    family: str | None = Field(default=None, description="PRM layout; none: outcome reward")
    split: str = "blank"
    agg: Literal["min", "last", "product", "mean"] = "min"
    positive: int = Field(default=1, ge=0)
    timeout: float = Field(default=120.0, gt=0)
    max_steps: int = Field(default=64, ge=1)
    params: float | None = Field(default=None, gt=0,
                                 description="the reward model's parameters, for FLOPs")
    layers: int = Field(default=0, ge=0, description="its layers (attention FLOPs)")
    width: int = Field(default=0, ge=0, description="its hidden size (attention FLOPs)")
    _transport: httpx.AsyncBaseTransport | None = PrivateAttr(default=None)

    def model_post_init(self, __context: Any) -> None:
        """Check the family now, so a bad spec fails before any request."""
        if self.family:
            get_format(self.family)

    def use_transport(self, transport: httpx.AsyncBaseTransport) -> None:
        """Send requests through ``transport`` (tests, custom clients)."""
        self._transport = transport

    def body(self, problem: Problem, c: Candidate) -> tuple[dict[str, Any], int]:
        """The request body and the number of steps it lays out (1 for an outcome reward)."""
        body: dict[str, Any] = {"model": self.model} if self.model else {}
        if not self.family:
            body["input"] = f"{problem.question}\n\n{c.text}"
            return body, 1
        fmt = get_format(self.family)
        steps = steps_of(c.text, self.split, self.max_steps)
        if fmt.chat:
            user, assistant = fmt.layout(problem.question, steps)
            sys = [{"role": "system", "content": fmt.system}] if fmt.system else []
            body["messages"] = [*sys, {"role": "user", "content": user},
                                {"role": "assistant", "content": assistant}]
        else:
            body["input"] = fmt.render(problem.question, steps)
        return body, len(steps)

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """One request per candidate, concurrently."""
        base = self.url.rstrip("/").removesuffix("/v1")
        async with httpx.AsyncClient(base_url=base, timeout=self.timeout,
                                     transport=self._transport) as client:
            return list(await asyncio.gather(
                *(self._one(client, problem, c, ctx) for c in candidates)))

    async def _one(self, client: httpx.AsyncClient, problem: Problem, c: Candidate,
                   ctx: VerifyContext) -> Score:
        body, n_steps = self.body(problem, c)
        estimate = len(json.dumps(body).encode()) // 2 + 8
        try:
            with ctx.forward(estimate, self.flops(estimate), "estimate") as done:
                resp = await self._post(client, body)
                data = self._data(resp)
                usage = data.get("usage") or {}
                if usage.get("prompt_tokens") is not None:
                    done.tokens = int(usage["prompt_tokens"])
                    done.flops = self.flops(done.tokens)
                    done.counted_by = "server-usage"
        except BudgetExhausted as exc:
            return Score(value=0.5, detail=str(exc))
        item = data["data"][0]
        values = self.values(item)
        if self.family and len(values) != n_steps:
            raise RewardModelError(f"sent {n_steps} steps but the server scored {len(values)}; "
                                   "is the pooler set to STEP with the family's step token?")
        if len(values) == 1 and not self.family:
            return Score(value=values[0], detail="outcome reward")
        return Score(value=aggregate(values, self.agg), steps=tuple(values),
                     detail=f"{len(values)} steps, {self.agg}")

    def flops(self, tokens: int) -> float | None:
        """FLOPs of one pass over ``tokens`` inputs, when the model's size was given."""
        return forward_flops(self.params, tokens, self.layers, self.width)

    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
        try:
            resp = await client.post(f"/{self.api}", json=body)
        except httpx.HTTPError as exc:
            raise RewardModelError(f"reward server {self.url} unreachable: {exc}") from None
        if resp.status_code >= 400:
            raise RewardModelError(f"reward server {self.url}/{self.api} answered "
                                   f"HTTP {resp.status_code}: {resp.text[:300]}")
        return resp

    def _data(self, resp: httpx.Response) -> dict[str, Any]:
        try:
            data = resp.json()
            data["data"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise RewardModelError(f"unexpected reply from {self.url}: {resp.text[:300]}") from None
        if not isinstance(data, dict):
            raise RewardModelError(f"unexpected reply from {self.url}: {resp.text[:300]}")
        return data

    def values(self, item: dict[str, Any]) -> list[float]:
        """Per-step (or single) values in [0, 1] from one reply item."""
        field = "probs" if self.api == "classify" else "data"
        raw = item.get(field)
        if raw is None:
            raise RewardModelError(f"reply item has no {field!r}: {str(item)[:200]}")
        if self.api == "classify":
            raw = [raw]
        rows = raw if isinstance(raw, list) else [raw]
        out = []
        for row in rows:
            if isinstance(row, list):
                if self.positive >= len(row):
                    raise RewardModelError(f"positive={self.positive} but rows have {len(row)}")
                x = float(row[self.positive]) if len(row) > 1 else float(row[0])
            else:
                x = float(row)
            out.append(x if 0.0 <= x <= 1.0 else 1.0 / (1.0 + math.exp(-x)))
        return out
