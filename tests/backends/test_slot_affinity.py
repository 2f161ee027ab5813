"""Slot affinity: a call goes to the idle slot holding the longest prefix of its prompt."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from testtime.backends.slot_affinity import SlotAffinity, common_prefix


@given(st.text(max_size=40), st.text(max_size=40))
def test_common_prefix_is_the_longest_shared_start(a: str, b: str) -> None:
    n = common_prefix(a, b)
    assert a[:n] == b[:n]
    assert n == min(len(a), len(b)) or a[n] != b[n]


def test_a_continuation_goes_back_to_the_slot_holding_its_parent() -> None:
    slots = SlotAffinity(3)
    first, second = slots.take("question A"), slots.take("question B")
    assert first != second
    slots.give_back(first, "question A step 1")
    slots.give_back(second, "question B step 1")
    assert slots.take("question B step 1 step 2") == second
    assert slots.take("question A step 1 step 2") == first


def test_busy_slots_are_skipped_and_ties_go_to_the_least_recently_used() -> None:
    slots = SlotAffinity(3)
    a = slots.take("x")
    b = slots.take("y")
    slots.give_back(b, "")
    slots.give_back(a, "")
    c = slots.take("z")  # never used: least recent of all
    assert c not in (a, b)
    assert slots.take("q") == a  # taken before b: the least recently used
    assert slots.take("r") == b
    assert slots.take("s") == -1  # every slot occupied
