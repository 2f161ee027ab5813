"""The embedded llama.cpp backend on a real model: counts, logprobs, prefixes, slots, cancel."""

from __future__ import annotations

import asyncio
import threading

import pytest

from testtime.backends.embedded import EmbeddedBackend, SlotGate
from testtime.budget import on_stopped
from testtime.strategies.base import Context
from testtime.types import Generation, GenerationRequest, Piece, Prompt

pytestmark = pytest.mark.model

PROMPT = Prompt.chat("List three colours, one per line.")


async def test_n_samples_with_exact_per_choice_counts(smollm: EmbeddedBackend) -> None:
    gen = await smollm.generate(GenerationRequest(prompt=PROMPT, n=4, max_tokens=24,
                                                  temperature=0.9, seed=1, logprobs=True))
    assert len(gen.completions) == 4
    for c in gen.completions:
        assert c.logprobs is not None
        # The end-of-sequence token is computed (and counted) but streams no logprob.
        assert len(c.logprobs) <= c.generated_tokens <= len(c.logprobs) + 1
        assert c.generated_tokens > 0
        assert c.generated_tokens <= 24
        assert all(lp <= 0.0 for lp in c.logprobs)
    assert gen.prompt_tokens > 10
    assert gen.counted_by == "engine-timings"
    assert smollm.cost.shape is not None and smollm.cost.shape.n_layers == 30


async def test_max_tokens_and_stop_are_honoured(smollm: EmbeddedBackend) -> None:
    gen = await smollm.generate(GenerationRequest(
        prompt=Prompt.chat("Write a long story about a dragon."), n=2, max_tokens=8,
        temperature=0.8, seed=3))
    assert all(c.generated_tokens == 8 and c.finish_reason == "length"
               for c in gen.completions)
    stopped = await smollm.generate(GenerationRequest(
        prompt=PROMPT, n=1, max_tokens=64, temperature=0.0, stop=("\n",)))
    assert "\n" not in stopped.completions[0].text


async def test_prefix_is_continued_and_served_from_cache(smollm: EmbeddedBackend) -> None:
    base = Prompt.chat("What is 12 * 13? Solve step by step.").extend("Step 1: 12 * 13 = ")
    first = await smollm.generate(GenerationRequest(prompt=base, n=1, max_tokens=6,
                                                    temperature=0.0))
    text = first.completions[0].text
    assert not text.startswith("Step 1")
    second = await smollm.generate(GenerationRequest(prompt=base.extend(text), n=1,
                                                     max_tokens=6, temperature=0.0))
    assert second.cached_tokens >= first.prompt_tokens - 1
    assert second.prompt_tokens > first.prompt_tokens


async def test_every_sample_of_a_continuation_is_continued_from_cache(
        smollm: EmbeddedBackend) -> None:
    # A search keeps any child, not only the first: each one's continuation must find its KV.
    base = Prompt.chat("What is 17 * 23? Solve step by step.").extend("Step 1: ")
    children = await smollm.generate(GenerationRequest(prompt=base, n=4, max_tokens=12,
                                                       temperature=1.0, seed=5))
    nexts = await asyncio.gather(*(
        smollm.generate(GenerationRequest(prompt=base.extend(c.text), n=1, max_tokens=4,
                                          temperature=0.0))
        for c in children.completions))
    for child, nxt in zip(children.completions, nexts, strict=True):
        assert nxt.cached_tokens >= nxt.prompt_tokens - 3, (child.text, nxt)


async def test_more_samples_than_slots_do_not_deadlock(smollm: EmbeddedBackend) -> None:
    reqs = [GenerationRequest(prompt=Prompt.chat(f"Count to {i + 3}."), n=12, max_tokens=6,
                              temperature=0.8, seed=i) for i in range(3)]
    gens = await asyncio.wait_for(asyncio.gather(*(smollm.generate(r) for r in reqs)), 240)
    assert [len(g.completions) for g in gens] == [12, 12, 12]


async def test_n_above_slots_is_split(smollm: EmbeddedBackend) -> None:
    gen = await smollm.generate(GenerationRequest(prompt=PROMPT, n=smollm.settings.slots + 2,
                                                  max_tokens=4, temperature=0.8))
    assert len(gen.completions) == smollm.settings.slots + 2


async def test_cancel_stops_generation(smollm: EmbeddedBackend) -> None:
    stopped: list[Generation] = []
    before = smollm.engine_metrics()
    with on_stopped(stopped.append):
        task = asyncio.ensure_future(smollm.generate(GenerationRequest(
            prompt=Prompt.chat("Write a very long essay."), n=1, max_tokens=2000,
            temperature=0.0)))
    while smollm.engine_metrics()["n_decode_total"] < before["n_decode_total"] + 8:
        await asyncio.sleep(0.1)  # decoding has begun
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The cancelled call has reported what the engine produced before it stopped ...
    assert len(stopped) == 1 and stopped[0].completions[0].finish_reason == "cancelled"
    reported = stopped[0].generated_tokens
    assert 0 < reported < 2000 and stopped[0].prompt_tokens > 0
    # ... and the engine has stopped: no decoding goes on, and its own count is what was
    # reported (plus at most the one token it decoded while the cancel reached it).
    await asyncio.sleep(0.3)
    first = smollm.engine_metrics()
    await asyncio.sleep(0.7)
    later = smollm.engine_metrics()
    assert later["n_decode_total"] == first["n_decode_total"]
    engine = later["tokens_predicted_total"] - before["tokens_predicted_total"]
    assert reported <= engine <= reported + 1
    quick = await asyncio.wait_for(smollm.generate(GenerationRequest(
        prompt=PROMPT, n=1, max_tokens=4)), 60)
    assert quick.completions


async def test_stream_yields_pieces_then_generation(smollm: EmbeddedBackend) -> None:
    pieces: list[str] = []
    final = None
    async for item in smollm.stream(GenerationRequest(prompt=PROMPT, max_tokens=12,
                                                      temperature=0.0)):
        if isinstance(item, Piece):
            pieces.append(item.text)
        else:
            final = item
    assert final is not None
    assert "".join(pieces) == final.completions[0].text
    assert len(pieces) >= 2


def test_slot_gate_gives_free_slots_in_fifo_order_and_never_more() -> None:
    gate = SlotGate(4)
    assert gate.acquire(3) == 3
    assert gate.acquire(4) == 1  # first in line takes what is free now, not what it wants
    got: list[tuple[str, int]] = []

    def take(name: str, n: int) -> None:
        got.append((name, gate.acquire(n)))

    waiting = [threading.Thread(target=take, args=args) for args in (("b", 1), ("c", 2))]
    for t in waiting:
        t.start()
        t.join(0.2)
    assert got == [] and gate.free == 0
    gate.release(2)
    for t in waiting:
        t.join(5)
    assert got == [("b", 1), ("c", 1)]  # c was behind b, and took only the one slot left
    assert gate.free == 0


def test_slot_gate_cancelled_waiter_leaves_the_line() -> None:
    gate = SlotGate(1)
    assert gate.acquire(1) == 1
    cancel = threading.Event()
    got: list[int] = []
    first = threading.Thread(target=lambda: got.append(gate.acquire(1, cancel)))
    first.start()
    first.join(0.2)
    second = threading.Thread(target=lambda: got.append(gate.acquire(1)))
    second.start()
    second.join(0.2)
    cancel.set()
    gate.wake()
    first.join(5)
    assert got == [0]
    gate.release(1)
    second.join(5)
    assert got == [0, 1] and gate.free == 0


async def test_a_request_divided_over_few_slots_draws_the_same_distinct_samples() -> None:
    """However many slots are free, sample i is seeded seed + i: no repeats, same samples."""
    req = GenerationRequest(prompt=Prompt.chat("Name a random animal and a colour."), n=6,
                            max_tokens=10, temperature=1.2, seed=100)
    texts = []
    for slots in (2, 8):
        backend = EmbeddedBackend(model="smollm2-135m", slots=slots, ctx=256, cache=False)
        try:
            gen = await backend.generate(req)
            assert backend._gate.free == slots
        finally:
            await backend.close()
        texts.append(sorted(c.text for c in gen.completions))
    assert texts[0] == texts[1]
    assert len(set(texts[0])) >= 5  # distinct seeds; two may still say the same words


async def test_successive_calls_of_one_context_draw_fresh_samples(
        smollm: EmbeddedBackend) -> None:
    """Calls of one problem get seeds far apart, so their samples do not repeat each other."""
    ctx = Context(backend=smollm, seed=7)
    prompt = Prompt.chat("Name a random animal and a colour.")
    first = await ctx.sample(prompt, 4, temperature=1.2, max_tokens=10)
    second = await ctx.sample(prompt, 4, temperature=1.2, max_tokens=10)
    assert len({c.text for c in first} & {c.text for c in second}) <= 1
