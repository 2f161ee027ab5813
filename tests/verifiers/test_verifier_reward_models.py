"""PRM formats and ORMs through transformers, on tiny local models with seeded random weights.

The expected step scores are computed independently here (token ids of each family's marker,
the raw model output, the family's head) and must equal what the verifier reports.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from verifier_helpers import cand

from testtime.budget import Budget, Ledger
from testtime.types import Problem
from testtime.verifiers import VerifyContext, make_verifier
from testtime.verifiers.hf import RewardModelError
from testtime.verifiers.prm_formats import FORMATS, get_format

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

Q = Problem(id="q", question="What is 2 + 3 ?")
SOLUTION = "Step 1: add the numbers first multiply\nStep 2: then check the answer is 5 ."


def _model(path: Path, cls: str) -> tuple[object, object]:
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = getattr(transformers, cls).from_pretrained(path).eval()
    return tok, model


def _run(model: object, ids: list[int]) -> object:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]  # type: ignore[operator]


async def _steps(spec: str, text: str = SOLUTION) -> tuple[float, ...]:
    scores = await make_verifier(spec).score(Q, [cand(text, "5")], VerifyContext())
    assert scores[0].steps is not None
    return scores[0].steps


async def test_qwen_prm_reads_class_one_at_each_extra_0(tiny_models: dict[str, Path]) -> None:
    path = tiny_models["qwen-prm"]
    steps = await _steps(f"prm:model={path},family=qwen-prm,split=step,agg=last")
    tok, model = _model(path, "AutoModelForTokenClassification")
    fmt = get_format("qwen-prm")
    body = ("Step 1: add the numbers first multiply<extra_0>"
            "Step 2: then check the answer is 5 .<extra_0>")
    text = tok.apply_chat_template(  # type: ignore[attr-defined]
        [{"role": "system", "content": fmt.system}, {"role": "user", "content": Q.question},
         {"role": "assistant", "content": body}], tokenize=False)
    ids = tok(text, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    tag = tok.convert_tokens_to_ids("<extra_0>")  # type: ignore[attr-defined]
    logits = _run(model, ids)
    want = [float(torch.softmax(logits[i], -1)[1]) for i, t in enumerate(ids) if t == tag]
    assert len(want) == 2
    assert steps == pytest.approx(want, abs=1e-6)


async def test_math_shepherd_reads_plus_against_minus_at_each_tag(
        tiny_models: dict[str, Path]) -> None:
    path = tiny_models["math-shepherd"]
    steps = await _steps(f"prm:model={path},family=math-shepherd,split=step")
    tok, model = _model(path, "AutoModelForCausalLM")
    text = (f"{Q.question} Step 1: add the numbers first multiply ки\n"
            "Step 2: then check the answer is 5 . ки")
    ids = tok(text)["input_ids"]  # type: ignore[operator]
    tag = tok.encode(" ки", add_special_tokens=False)[-1]  # type: ignore[attr-defined]
    good, bad = tok.encode("+ -", add_special_tokens=False)  # type: ignore[attr-defined]
    logits = _run(model, ids)
    want = [float(torch.softmax(logits[i][[good, bad]], -1)[0])
            for i, t in enumerate(ids) if t == tag]
    assert len(want) == 2
    assert steps == pytest.approx(want, abs=1e-6)


async def test_skywork_value_head_at_each_step_newline(tiny_models: dict[str, Path]) -> None:
    path = tiny_models["skywork-prm"]
    steps = await _steps(f"prm:model={path},family=skywork-prm,split=step")
    tok, model = _model(path, "AutoModelForTokenClassification")
    text = f"{Q.question}\n{SOLUTION}\n"
    ids = tok(text)["input_ids"]  # type: ignore[operator]
    ends = [len(tok(text[:text.index(w) + len(w)])["input_ids"]) - 1  # type: ignore[operator]
            for w in ("multiply\n", "5 .\n")]
    logits = _run(model, ids)
    want = [float(torch.sigmoid(logits[i][0])) for i in ends]
    assert steps == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("family", sorted(FORMATS))
async def test_partial_solution_keeps_the_scores_of_its_steps(
        tiny_models: dict[str, Path], family: str) -> None:
    spec = f"prm:model={tiny_models[family]},family={family},split=step"
    full = await _steps(spec)
    partial = await _steps(spec, SOLUTION.split("\n")[0])
    assert len(full) == 2 and len(partial) == 1
    assert partial[0] == pytest.approx(full[0], abs=1e-6)


async def test_prm_aggregation_and_value(tiny_models: dict[str, Path]) -> None:
    base = f"prm:model={tiny_models['qwen-prm']},family=qwen-prm,split=step"
    for how, fn in [("min", min), ("last", lambda s: s[-1]), ("product", math.prod),
                    ("mean", lambda s: sum(s) / len(s))]:
        scores = await make_verifier(f"{base},agg={how}").score(
            Q, [cand(SOLUTION, "5")], VerifyContext())
        assert scores[0].value == pytest.approx(fn(scores[0].steps))


async def test_orm_sigmoid_and_softmax_heads(tiny_models: dict[str, Path]) -> None:
    for name, positive in (("orm", 0), ("orm2", 1)):
        path = tiny_models[name]
        scores = await make_verifier(f"orm:model={path},positive={positive}").score(
            Q, [cand(SOLUTION, "5")], VerifyContext())
        tok, model = _model(path, "AutoModelForSequenceClassification")
        text = tok.apply_chat_template(  # type: ignore[attr-defined]
            [{"role": "user", "content": Q.question},
             {"role": "assistant", "content": SOLUTION}], tokenize=False)
        enc = tok(text, return_tensors="pt", add_special_tokens=False)  # type: ignore[operator]
        with torch.no_grad():
            logits = model(**enc).logits[0]  # type: ignore[operator]
        want = (torch.sigmoid(logits[0]) if name == "orm"
                else torch.softmax(logits, -1)[positive])
        assert scores[0].value == pytest.approx(float(want), abs=1e-6)


async def test_reward_models_bill_their_passes_and_are_refused_when_unaffordable(
        tiny_models: dict[str, Path]) -> None:
    prm = f"prm:model={tiny_models['qwen-prm']},family=qwen-prm,split=step"
    for spec in (prm, f"orm:model={tiny_models['orm']}"):
        ledger = Ledger()
        await make_verifier(spec).score(Q, [cand(SOLUTION, "5"), cand("Step 1: 5", "5")],
                                        VerifyContext(ledger=ledger))
        u = ledger.usage
        assert (u.verifier_passes, u.verifier_calls, u.calls, u.generated_tokens) == (2, 2, 0, 0)
        assert u.verifier_prompt_tokens == u.verifier_tokens > 10
        assert u.flops_known and u.verifier_flops == u.flops > 0 and u.verifier_seconds > 0
        _, model = _model(tiny_models["orm"], "AutoModelForSequenceClassification")
        if spec.startswith("orm"):
            params = model.num_parameters(exclude_embeddings=True)  # type: ignore[attr-defined]
            assert u.flops >= 2 * params * u.verifier_tokens
        # A budget that cannot afford a pass refuses it before the model runs.
        tight = Ledger(budget=Budget(verifier_tokens=5))
        scores = await make_verifier(spec).score(Q, [cand(SOLUTION, "5")],
                                                 VerifyContext(ledger=tight))
        assert scores[0].value == 0.5 and "verifier_tokens" in (scores[0].detail or "")
        assert tight.usage.verifier_passes == 0 and tight.limit == "verifier_tokens"


async def test_reward_model_errors_are_clear(tiny_models: dict[str, Path],
                                             tmp_path: Path) -> None:
    with pytest.raises(RewardModelError, match="cannot load reward model"):
        await make_verifier(f"prm:model={tmp_path / 'missing'}").score(
            Q, [cand("x")], VerifyContext())
    with pytest.raises(ValueError, match="2 classes"):
        await make_verifier(f"orm:model={tiny_models['orm2']},positive=5").score(
            Q, [cand("x")], VerifyContext())
