"""The trust boundary of the spec parser, checked over every registered component.

Nothing here lists components: a new strategy, verifier or backend is walked like the others,
so one that exposes a URL, path, model or code switch to clients fails this file.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

import testtime.backends
import testtime.strategies
import testtime.verifiers
from testtime.registry import (
    _REGISTRIES,
    CLIENT,
    OPERATOR,
    Bound,
    ClientRules,
    Nested,
    Registry,
    SpecError,
    SpecForbidden,
    build,
    field_trust,
    settings_class,
)

REGISTRIES = [testtime.strategies.strategies, testtime.verifiers.verifiers,
              testtime.backends.backends]
OPEN = ClientRules(allowed={"strategy": None, "verifier": None})
NESTED_REFUSED = {
    "verifier": "judge:backend=[openai:http://127.0.0.1:9/v1]",
    "strategy": "self-consistency:verifier=[judge:backend=[openai:http://127.0.0.1:9/v1]]"}
"""A nested spec of each kind that names what only the operator may (a backend, inside)."""
OPERATOR_LOOKING = re.compile(
    r"(^|_)(backend|url|uri|host|endpoint|model|path|policy|file|dir|source|trust_remote_code|"
    r"api_key|key|token|secret|device|dtype|sandbox|cpu|memory_mb|parallel|parts|spec|command|"
    r"cmd|script|code)($|_)")


def components() -> list[tuple[Registry[Any], str, str, Any]]:
    """(registry, component name, field name, FieldInfo) of every registered option."""
    out = []
    for reg in REGISTRIES:
        assert reg.names(), f"no {reg.kind} registered"
        for name in reg.names():
            for key, info in settings_class(reg, name).model_fields.items():
                out.append((reg, name, key, info))
    return out


FIELDS = components()


def ids(item: tuple[Registry[Any], str, str, Any]) -> str:
    return f"{item[0].kind}:{item[1]}.{item[2]}"


@pytest.mark.parametrize("item", FIELDS, ids=[ids(f) for f in FIELDS])
def test_every_option_is_classified(item: tuple[Registry[Any], str, str, Any]) -> None:
    reg, name, key, info = item
    trust = field_trust(info)
    assert trust in (CLIENT, OPERATOR) or isinstance(trust, Nested)
    if isinstance(trust, Nested):
        assert trust.kind in _REGISTRIES
    if OPERATOR_LOOKING.search(key):
        assert trust is OPERATOR or isinstance(trust, Nested), (
            f"{reg.kind} {name!r}: option {key!r} looks operator-only but is {trust}")


@pytest.mark.parametrize("item", FIELDS, ids=[ids(f) for f in FIELDS])
def test_operator_options_are_refused_in_client_mode(
        item: tuple[Registry[Any], str, str, Any]) -> None:
    reg, name, key, info = item
    trust = field_trust(info)
    if trust is CLIENT and reg.kind == "backend":
        with pytest.raises(SpecForbidden, match="may not name a backend"):
            build(reg, f"{name}:{key}=1", client=OPEN)
        return
    if trust is CLIENT:
        default = info.get_default(call_default_factory=False)
        if default is None or callable(default):
            return
        try:
            build(reg, f"{name}:{key}={default}", client=OPEN)
        except SpecForbidden as exc:
            pytest.fail(f"client-settable {key!r} of {reg.kind} {name!r} refused: {exc}")
        except SpecError:
            pass  # e.g. a required operator-only option is missing: not a trust refusal
        return
    value = f"[{NESTED_REFUSED[trust.kind]}]" if isinstance(trust, Nested) \
        else "http://127.0.0.1:9/x"
    with pytest.raises(SpecForbidden) as refused:
        build(reg, f"{name}:{key}={value}", client=OPEN)
    assert refused.value.option in (key, "backend", reg.kind)


@pytest.mark.parametrize("name", testtime.backends.backends.names())
def test_no_backend_can_be_named_by_a_client(name: str) -> None:
    with pytest.raises(SpecForbidden, match="may not name a backend"):
        build(testtime.backends.backends, name, client=OPEN)


def test_nested_verifiers_only_from_the_allowed_list_with_client_options() -> None:
    policy = ClientRules(allowed={"strategy": None, "verifier": ["confidence", "judge"]})
    strategies = testtime.strategies.strategies
    built = build(strategies, "best-of-n:n=2,verifier=[judge:k=3,mode=sample]", client=policy)
    assert built.n == 2 and built.verifier == "judge:k=3,mode=sample"
    with pytest.raises(SpecForbidden, match="'tests' is not enabled") as e:
        build(strategies, "best-of-n:verifier=tests", client=policy)
    assert e.value.code == "verifier_not_allowed"
    for nested in ("[judge:backend=[openai:http://127.0.0.1:9/v1,model=x]]",
                   "[[judge:backend=scripted]]", "judge:backend=embedded:x"):
        with pytest.raises(SpecForbidden, match="'backend'"):
            build(strategies, f"best-of-n:verifier={nested}", client=policy)
    with pytest.raises(SpecForbidden, match="'policy'"):
        build(strategies, "adaptive:policy=/etc/passwd,budget=100", client=policy)
    everything = ClientRules(allowed={"strategy": None, "verifier": None})
    with pytest.raises(SpecForbidden, match="'trust_remote_code'"):
        build(strategies, "best-of-n:verifier=[prm:trust_remote_code=true]", client=everything)
    with pytest.raises(SpecForbidden, match="'parts'"):
        build(strategies, "best-of-n:verifier=[combo:parts=[1*confidence]]", client=everything)
    operator = build(strategies, "best-of-n:verifier=[judge:backend=scripted]")
    assert operator.verifier == "judge:backend=scripted"


def test_client_limits_bound_client_options() -> None:
    policy = ClientRules(allowed={"strategy": None, "verifier": None},
                          limits={"n": Bound(high=4), "beam.width": Bound(1, 2),
                                  "k": Bound(high=3)})
    strategies = testtime.strategies.strategies
    assert build(strategies, "self-consistency:n=4", client=policy).n == 4
    with pytest.raises(SpecForbidden, match="'n' of strategy 'self-consistency' must be at "
                       "most 4") as e:
        build(strategies, "self-consistency:n=5", client=policy)
    assert e.value.code == "option_out_of_bounds" and e.value.option == "n"
    with pytest.raises(SpecForbidden, match="between 1 and 2"):
        build(strategies, "beam:width=3", client=policy)
    assert build(strategies, "dvts:width=3", client=policy).width == 3
    with pytest.raises(SpecForbidden, match="'k' of verifier 'judge'"):
        build(strategies, "best-of-n:verifier=[judge:k=9]", client=policy)
    assert build(strategies, "self-consistency:n=9").n == 9


def test_a_new_component_is_safe_without_being_listed() -> None:
    gadgets: Registry[Any] = Registry("gadget")

    @gadgets.register("thing")
    class Thing(BaseModel):
        model_config = ConfigDict(extra="forbid")

        top_p: float = Field(default=1.0, ge=0, le=1)
        top_k: int = 0
        maybe: float | None = None
        style: Literal["a", "b"] = "a"
        where: str = "here"
        files: list[str] = Field(default_factory=list)
        label: Annotated[str, CLIENT] = "x"
        depth: Annotated[int, OPERATOR] = 1

    policy = ClientRules(allowed={"gadget": None}, limits={"top_k": Bound(high=50)})
    ok = build(gadgets, "thing:top_p=0.5,top_k=40,maybe=1,style=b,label=y", client=policy)
    assert (ok.top_p, ok.top_k, ok.style, ok.label) == (0.5, 40, "b", "y")
    for option in ("where=/etc/passwd", "files=[a]", "depth=3"):
        with pytest.raises(SpecForbidden, match="operator only"):
            build(gadgets, f"thing:{option}", client=policy)
    with pytest.raises(SpecForbidden, match="at most 50"):
        build(gadgets, "thing:top_k=51", client=policy)
    assert build(gadgets, "thing:where=/tmp,depth=3").where == "/tmp"
