"""The one path every model call takes: planned by the Ledger, cut at its deadline, recorded.

Policy calls (through the strategy's Context) and verifier calls (through the VerifyContext)
both go through ``metered_generate``, token streams (the gateway's ``single``) through
``metered_stream``, so no caller can spend outside the budget: the call is planned at its worst
case, shrunk or refused, cancelled in flight at the ``seconds`` deadline (a stream: at the
gateway's request deadline), and recorded with what it really cost — also when it is stopped
part way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

from testtime.backends.base import BackendError
from testtime.budget import BudgetExhausted, Ledger, on_stopped
from testtime.types import Generation, GenerationRequest, Piece, Prompt


def prompt_estimate(prompt: Prompt) -> int:
    """A prompt's size in tokens, planned high: one token per two bytes, plus the template's."""
    text = "".join(f"{m.role}: {m.content}\n" for m in prompt.messages) + prompt.prefix
    return len(text.encode("utf-8", "surrogatepass")) // 2 + 8 * (len(prompt.messages) + 1)


async def metered_generate(ledger: Ledger, backend: Any, req: GenerationRequest, *,
                           verifier: bool = False) -> Generation:
    """Run one budget-planned call of ``backend`` and record what it cost.

    The request is shrunk (fewer samples, fewer tokens) to fit; when nothing fits, or the
    deadline passes while it runs, an empty Generation is returned and the ledger names the
    limit that was met. Work the engine did before a stop is recorded as a cut call.
    """
    if ledger.budget.flops is not None and not backend.cost.known:
        await backend.ready()  # a server's model shape is learnt when it is first reached
    try:
        plan = ledger.plan(req.n, req.max_tokens, prompt_estimate(req.prompt),
                           verifier=verifier, cost=backend.cost)
    except BudgetExhausted:
        return Generation(completions=())
    if (plan.n, plan.max_tokens) != (req.n, req.max_tokens):
        req = req.model_copy(update={"n": plan.n, "max_tokens": plan.max_tokens})

    def stopped(gen: Generation) -> None:
        ledger.record(gen, verifier=verifier, cut=True, cost=backend.cost)

    gen: Generation | None = None
    deadline = asyncio.timeout(ledger.seconds_left())
    try:
        with on_stopped(stopped):
            async with deadline:
                gen = await backend.generate(req)
    except TimeoutError:
        if not deadline.expired():
            raise
        ledger.meet("seconds")
        return Generation(completions=())
    finally:
        ledger.settle(plan, gen, cost=backend.cost)
    ledger.check_after()
    return gen


async def metered_stream(ledger: Ledger, backend: Any, req: GenerationRequest, *,
                         verifier: bool = False,
                         on_cut: Callable[[Generation], None] | None = None,
                         ) -> AsyncGenerator[Piece | Generation, None]:
    """``backend.stream(req)`` planned and recorded like :func:`metered_generate`.

    Yields the pieces, then the Generation (recorded before it is yielded); only an empty
    Generation when the budget refuses the call. A stream stopped part way is recorded with
    the work the engine reported, which ``on_cut`` also receives; one its consumer closed
    (``aclose``) counts as a stopped trace, one cancelled or timed out only as a cut call.
    """
    try:
        plan = ledger.plan(req.n, req.max_tokens, prompt_estimate(req.prompt),
                           verifier=verifier, cost=backend.cost)
    except BudgetExhausted:
        yield Generation(completions=())
        return
    if (plan.n, plan.max_tokens) != (req.n, req.max_tokens):
        req = req.model_copy(update={"n": plan.n, "max_tokens": plan.max_tokens})

    closed = False

    def stopped(gen: Generation) -> None:
        ledger.record(gen, verifier=verifier, cut=True, stopped=closed, cost=backend.cost)
        if on_cut is not None:
            on_cut(gen)

    settled = False
    pieces = backend.stream(req)
    try:
        while True:
            with on_stopped(stopped):
                try:
                    item = await anext(pieces)
                except StopAsyncIteration:
                    raise BackendError("the backend's stream ended without a result") from None
            if isinstance(item, Generation):
                ledger.settle(plan, item, cost=backend.cost)
                settled = True
                yield item
                return
            try:
                yield item
            except GeneratorExit:
                closed = True
                raise
    finally:
        await pieces.aclose()
        if not settled:
            ledger.settle(plan, cost=backend.cost)
